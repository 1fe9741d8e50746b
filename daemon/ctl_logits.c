/* ctl_logits.c - guardctl logits: run token sequences as one batch and write
 * each one's last-position logits.
 *
 *   guardctl logits --model DIR --out FILE [--threads N] [--arch NAME]
 *                   [--precision auto|bf16|int8|f32] IDS...
 *
 * Each IDS argument is one sequence, token ids separated by commas. All
 * sequences go through one transformer_forward() call (so this also exercises
 * the batching); FILE receives, for each sequence in argument order,
 * vocab_size little-endian float32 values. --precision is the weights' stored
 * form (default f32, the reference). A one-line summary (sizes, precision and
 * kernels, BLIS kernel set, timings) goes to stderr. Used by tests/t_numerics.sh against
 * the numpy reference.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ctl.h"
#include "model.h"
#include "transformer.h"

#define MAX_SEQS 4096
#define MAX_TOTAL_TOKENS 65536

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "1,2,3" -> ids (malloc'd); returns count or -1 with a message. */
static int parse_ids(const char *arg, int **out, long budget) {
    long n = 1;
    for (const char *p = arg; *p; p++) n += *p == ',';
    if (n > budget) {
        fprintf(stderr, "guardctl logits: more than %d tokens in total\n", MAX_TOTAL_TOKENS);
        return -1;
    }
    int *ids = malloc(sizeof(int) * (size_t)n);
    if (!ids) return -1;
    const char *p = arg;
    for (long i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || (*end != ',' && *end) || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "guardctl logits: bad token list '%.40s' (want ids like 1,2,3)\n", arg);
            free(ids);
            return -1;
        }
        ids[i] = (int)v;
        p = end + 1;
    }
    *out = ids;
    return (int)n;
}

static int write_logits(const char *path, float *const *logits, int n, int vocab) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "guardctl logits: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < vocab; j++) {
            uint32_t u;
            memcpy(&u, &logits[i][j], 4);
            unsigned char b[4] = {u & 255, (u >> 8) & 255, (u >> 16) & 255, u >> 24};
            fwrite(b, 1, 4, f);
        }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "guardctl logits: error writing %s\n", path);
        return -1;
    }
    return 0;
}

typedef struct {
    const char *model, *out, *arch;
    Precision precision;
    int threads;
    int first_ids;   /* argv index of the first IDS argument */
} Args;

static int parse_args(int argc, char **argv, Args *a) {
    *a = (Args){0};
    a->precision = PREC_F32;
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        const char *o = argv[i];
        if (i + 1 >= argc) { fprintf(stderr, "guardctl logits: %s needs a value\n", o); return -1; }
        if (!strcmp(o, "--model")) a->model = argv[++i];
        else if (!strcmp(o, "--out")) a->out = argv[++i];
        else if (!strcmp(o, "--arch")) a->arch = argv[++i];
        else if (!strcmp(o, "--precision")) {
            if (precision_parse(argv[++i], &a->precision) < 0) {
                fprintf(stderr, "guardctl logits: --precision must be auto, bf16, int8 or f32\n");
                return -1;
            }
        }
        else if (!strcmp(o, "--threads")) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 1024) { fprintf(stderr, "guardctl logits: bad --threads\n"); return -1; }
            a->threads = (int)v;
        } else { fprintf(stderr, "guardctl logits: unknown option %s\n", o); return -1; }
    }
    a->first_ids = i;
    if (!a->model || !a->out || i >= argc) {
        fprintf(stderr, "usage: guardctl logits --model DIR --out FILE [--threads N] [--arch NAME]\n"
                        "       [--precision auto|bf16|int8|f32] IDS...\n"
                        "  IDS: one sequence of comma-separated token ids per argument\n");
        return -1;
    }
    if (argc - i > MAX_SEQS) { fprintf(stderr, "guardctl logits: over %d sequences\n", MAX_SEQS); return -1; }
    return 0;
}

/* Runs the batch and writes the file; everything it allocates is freed. */
static int run(const Args *a, Model *m, int n, char **argv) {
    int rc = 1, vocab = m->cfg.vocab_size;
    long budget = MAX_TOTAL_TOKENS;
    SeqInput *s = calloc((size_t)n, sizeof *s);
    float **logits = calloc((size_t)n, sizeof *logits);
    int **ids = calloc((size_t)n, sizeof *ids);
    Transformer *t = transformer_new(m, a->threads);
    char err[256] = "";
    if (!s || !logits || !ids || !t) { fprintf(stderr, "guardctl logits: out of memory\n"); goto out; }
    long total = 0;
    for (int i = 0; i < n; i++) {
        int len = parse_ids(argv[i], &ids[i], budget);
        if (len < 0) goto out;
        budget -= len;
        total += len;
        logits[i] = malloc(sizeof(float) * (size_t)vocab);
        s[i] = (SeqInput){ids[i], len, kv_new(&m->cfg, len, NULL), 1, logits[i]};
        if (!logits[i] || !s[i].kv) {
            fprintf(stderr, "guardctl logits: sequence %d: cannot make a KV cache of %d positions "
                    "(model max %d)\n", i, len, m->cfg.max_pos);
            goto out;
        }
    }
    double t0 = now();
    if (transformer_forward(t, s, n, err, sizeof err) != 0) {
        fprintf(stderr, "guardctl logits: %s\n", err);
        goto out;
    }
    double secs = now() - t0;
    if (write_logits(a->out, logits, n, vocab) != 0) goto out;
    fprintf(stderr, "guardctl logits: %d sequences, %ld tokens, vocab %d, %s weights "
            "(%s), BLIS %s, load %.2fs, forward %.3fs\n", n, total, vocab,
            precision_name(m->precision), m->kernels, blis_arch_name(), m->load_seconds, secs);
    rc = 0;
out:
    for (int i = 0; i < n && s; i++) kv_free(s[i].kv);
    for (int i = 0; i < n && logits; i++) free(logits[i]);
    for (int i = 0; i < n && ids; i++) free(ids[i]);
    free(s);
    free(logits);
    free(ids);
    transformer_free(t);
    return rc;
}

int ctl_logits(int argc, char **argv) {
    Args a;
    if (parse_args(argc, argv, &a) != 0) return 2;
    blis_setup(a.threads, a.arch);
    char err[512] = "";
    Model *m = model_load_precision(a.model, a.precision, err, sizeof err);
    if (!m) {
        fprintf(stderr, "guardctl logits: %s\n", err);
        return 1;
    }
    int rc = run(&a, m, argc - a.first_ids, argv + a.first_ids);
    model_free(m);
    return rc;
}
