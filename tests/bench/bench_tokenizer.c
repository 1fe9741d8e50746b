/* bench_tokenizer.c - single-thread encode speed of the Llama 3 tokenizer.
 *
 * usage: bench_tokenizer [TOKENIZER_JSON [TEXT_FILE]]
 *        (TOKENIZER_JSON default: $GUARDD_TOKENIZER)
 *
 * Builds ~1 MB of mixed text from a fixed pseudo-random generator (English
 * prose, source code, CJK, Cyrillic/Arabic/Devanagari, emoji, numbers), then
 * times encode on one thread two ways: the whole buffer in one call, and in
 * ~2 KB pieces (the size of a typical conversation turn). Prints MB/s and
 * tokens/s (per second of this thread's CPU time) for the best of a few runs,
 * and decode speed for reference.
 * With TEXT_FILE (valid UTF-8, at most 64 MB) that file is timed instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tokenizer.h"

#define TARGET_BYTES (1u << 20)
#define PIECE_BYTES 2048
#define RUNS 5

static const char *english[] = {
    "the", "model", "classifies", "each", "conversation", "as", "safe", "or", "unsafe", "and",
    "reports", "which", "categories", "were", "violated", "Kafka", "events", "arrive", "in",
    "micro-batches", "we're", "don't", "it's", "they'll", "I've", "hello", "world", "because",
    "however", "tokenization", "internationalization", "throughput", "latency", "p99", "daemon",
    "Please", "explain", "how", "to", "bake", "bread", "without", "yeast", "quickly", "today",
};
static const char *code[] = {
    "int main(void) {\n", "    return 0;\n", "}\n", "for (size_t i = 0; i < n; i++)\n",
    "    if (x->ids[i] != 42) continue;\n", "def f(a, b=None):\n", "    return {'k': [1, 2, 3]}\n",
    "SELECT id, name FROM users WHERE age >= 21;\n", "const x = await fetch(`/api/v1/${id}`);\n",
    "\t// TODO: handle EINTR\n", "#include <stdio.h>\n", "    printf(\"%d\\n\", y);\n",
};
static const char *other[] = {
    "机器学习", "模型", "安全", "分类器", "你好世界", "東京都", "ありがとう", "ございます", "한국어",
    "привет", "мир", "безопасность", "مرحبا", "بالعالم", "नमस्ते", "दुनिया", "Ελληνικά", "Größe",
    "naïve", "café",
};
static const char *emoji[] = {
    "😀", "👍🏽", "🚀", "❤️", "👨‍👩‍👧‍👦", "🇫🇷", "✅", "🔥🔥", "…", "—", "€", "½",
};

static unsigned long long rng_state = 0x243F6A8885A308D3ull;
static unsigned rnd(unsigned n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)((rng_state >> 33) % n);
}
#define PICK(a) (a[rnd(sizeof a / sizeof a[0])])

/* Appends one segment of a randomly chosen kind; returns the new length. */
static size_t add_segment(char *buf, size_t n, size_t cap)
{
    char tmp[512];
    size_t k = 0;
    unsigned kind = rnd(100), words = 5 + rnd(20);
    for (unsigned w = 0; w < words && k < sizeof tmp - 64; w++) {
        if (kind < 60)
            k += (size_t)snprintf(tmp + k, sizeof tmp - k, "%s%s", w ? " " : "", PICK(english));
        else if (kind < 75)
            k += (size_t)snprintf(tmp + k, sizeof tmp - k, "%s", PICK(code));
        else if (kind < 90)
            k += (size_t)snprintf(tmp + k, sizeof tmp - k, "%s%s", rnd(3) ? "" : " ", PICK(other));
        else
            k += (size_t)snprintf(tmp + k, sizeof tmp - k, " %s %u", PICK(emoji), rnd(100000));
    }
    k += (size_t)snprintf(tmp + k, sizeof tmp - k, "%s", rnd(4) ? ". " : ".\n\n");
    if (n + k >= cap)
        return n;
    memcpy(buf + n, tmp, k);
    return n + k;
}

/* Thread CPU time, not wall time: on a shared machine, time spent waiting
 * for a core would otherwise count against the tokenizer. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Encodes buf in pieces of at most piece bytes (cut at a space so no UTF-8
 * sequence is split); returns seconds, token count in *ntok. */
static double time_encode(const Tokenizer *t, const char *buf, size_t len, size_t piece, size_t *ntok)
{
    TokenVec v = {0};
    char err[256];
    double t0 = now();
    for (size_t off = 0; off < len;) {
        size_t end = off + piece < len ? off + piece : len;
        while (end < len && buf[end] != ' ')
            end++;
        v.n = 0;
        if (tokenizer_encode(t, buf + off, end - off, 1, &v, err, sizeof err) != 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", err);
            exit(1);
        }
        *ntok += v.n;
        off = end;
    }
    double dt = now() - t0;
    tokvec_free(&v);
    return dt;
}

static void report(const Tokenizer *t, const char *buf, size_t len, size_t piece, const char *label)
{
    double best = 1e30;
    size_t ntok = 0;
    for (int r = 0; r < RUNS; r++) {
        ntok = 0;
        double dt = time_encode(t, buf, len, piece, &ntok);
        if (dt < best)
            best = dt;
    }
    printf("encode %-14s %8.1f MB/s  %10.0f tokens/s  (%zu bytes -> %zu tokens, %.1f ms)\n", label,
           len / best / 1e6, ntok / best, len, ntok, best * 1e3);
}

static void report_decode(const Tokenizer *t, const char *buf, size_t len)
{
    TokenVec v = {0};
    char err[256];
    if (tokenizer_encode(t, buf, len, 1, &v, err, sizeof err) != 0)
        exit(1);
    double t0 = now();
    size_t out_len = 0;
    char *s = tokenizer_decode(t, v.ids, v.n, &out_len);
    double dt = now() - t0;
    printf("decode %-14s %8.1f MB/s  (round trip %s)\n", "whole buffer", out_len / dt / 1e6,
           s && out_len == len && memcmp(s, buf, len) == 0 ? "exact" : "MISMATCH");
    free(s);
    tokvec_free(&v);
}

static char *generate(size_t *len)
{
    char *buf = malloc(TARGET_BYTES + 1024);
    size_t n = 0, prev;
    if (!buf)
        return NULL;
    do {
        prev = n;
        n = add_segment(buf, n, TARGET_BYTES);
    } while (n < TARGET_BYTES - 600 || n != prev);
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 64u << 20;
    char *buf = f ? malloc(cap) : NULL;
    if (!buf) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", path);
        if (f)
            fclose(f);
        return NULL;
    }
    *len = fread(buf, 1, cap, f);
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("GUARDD_TOKENIZER");
    char err[512];
    if (!path) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_JSON (or set GUARDD_TOKENIZER)\n");
        return 2;
    }
    double t0 = now();
    Tokenizer *t = tokenizer_load(path, err, sizeof err);
    if (!t) {
        fprintf(stderr, "bench_tokenizer: %s\n", err);
        return 1;
    }
    printf("load %.0f ms\n", (now() - t0) * 1e3);
    size_t len = 0;
    char *buf = argc > 2 ? read_file(argv[2], &len) : generate(&len);
    if (!buf)
        return 1;
    report(t, buf, len, len, "whole buffer");
    report(t, buf, len, PIECE_BYTES, "2 KB pieces");
    report_decode(t, buf, len);
    free(buf);
    tokenizer_free(t);
    return 0;
}
