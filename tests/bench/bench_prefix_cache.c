/* bench_prefix_cache.c - what the prompt prefix cache buys: events/s of a
 * multi-turn workload and of single-turn events, with the cache (default
 * budget) and with cache_max_bytes = 0, in one run on one loaded model.
 *
 *   bench_prefix_cache [--model DIR] [--threads N] [--conversations 16]
 *                      [--turns 8] [--single 64] [--batch 16] [--reps 2]
 *                      [--write-events PREFIX]
 *
 * Model: --model, else $GUARDD_BENCH_SMALL_MODEL (tools/bench.sh: a random
 * checkpoint with the real vocabulary and tokenizer, 4 layers of width 512,
 * so a run takes seconds on 2 cores; the full-shape 1B takes ~10 minutes per
 * pass here). Tokenizer: $GUARDD_TOKENIZER unless the model directory has one.
 *
 * Multi-turn workload: C conversations x T turns; turn t's event carries the
 * whole history (t messages, user and agent alternating, 30-90 words each,
 * ~40-120 tokens), and events arrive in conversation order the way a chat
 * product interleaves them: turn 1 of every conversation, then turn 2, ...;
 * micro-batches of --batch events (the daemon's default 16). Single-turn
 * workload: one user message per event, same batches. Each workload is
 * timed with the cache off and on, alternating --reps times, best time kept;
 * reported: events/s, the speed-up, prompt tokens prefilled vs reused.
 * "Off" still computes a prefix the events of one batch share once (the
 * policy preamble). Reuse is exact, so it needs an identical token prefix:
 * the role word (User/Agent) sits in the instructions and alternates, so a
 * turn reuses the turn before last and prefills its last two messages plus
 * the closing instructions; the prefilled-tokens ratio is that bound.
 * --write-events PREFIX also writes PREFIX-multi.jsonl and PREFIX-single.jsonl
 * (guardctl classify input, same order) to compare other builds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "classifier.h"
#include "gemm.h"
#include "transformer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *const words[] = {
    "the", "weather", "today", "recipe", "how", "do", "I", "make", "bread", "cake", "please",
    "explain", "step", "by", "kitchen", "chemistry", "why", "never", "mind", "okay", "thanks",
    "story", "about", "cats", "travel", "plans", "for", "next", "week", "could", "you", "help",
    "with", "my", "homework", "history", "question", "answer", "detail", "example", "simple",
    "words", "garden", "tomatoes", "water", "sunlight", "budget", "spreadsheet", "formula", "error"};
#define N_WORDS (int)(sizeof words / sizeof words[0])

/* Message k of conversation id, deterministic. */
static char *message(int id, int k) {
    unsigned x = 2654435761u * (unsigned)(id * 131 + k * 7 + 1);
    int n = 30 + (int)(x % 61);
    char *s = malloc((size_t)n * 16 + 32);
    size_t w = 0;
    for (int i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        w += (size_t)sprintf(s + w, "%s%s", i ? " " : "", words[(x >> 16) % N_WORDS]);
        if (i % 12 == 11) w += (size_t)sprintf(s + w, ".");
    }
    sprintf(s + w, "?");
    return s;
}

typedef struct { Conversation *convs; int n; } Workload;

static Workload multi_turn(int n_conv, int turns) {
    Workload w = {calloc((size_t)n_conv * turns, sizeof(Conversation)), n_conv * turns};
    for (int t = 0; t < turns; t++)
        for (int c = 0; c < n_conv; c++) {
            Conversation *cv = &w.convs[t * n_conv + c];
            for (int k = 0; k <= t; k++) {
                char *m = message(c, k);
                conversation_add(cv, k % 2 ? ROLE_ASSISTANT : ROLE_USER, m);
                free(m);
            }
        }
    return w;
}

static Workload single_turn(int n) {
    Workload w = {calloc((size_t)n, sizeof(Conversation)), n};
    for (int i = 0; i < n; i++) {
        char *m = message(1000 + i, 0);
        conversation_add(&w.convs[i], ROLE_USER, m);
        free(m);
    }
    return w;
}

static void write_jsonl(const Workload *w, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(1); }
    for (int i = 0; i < w->n; i++) {
        fputs("{\"messages\": [", f);
        for (int k = 0; k < w->convs[i].n_msgs; k++)
            fprintf(f, "%s{\"role\": \"%s\", \"content\": \"%s\"}", k ? ", " : "",
                    w->convs[i].msgs[k].role == ROLE_USER ? "user" : "assistant",
                    w->convs[i].msgs[k].parts[0]);  /* words only: no JSON escaping needed */
        fputs("]}\n", f);
    }
    fclose(f);
}

typedef struct { double secs; long prompt, reused; } Timing;

static Timing run(Classifier *c, const Workload *w, int batch) {
    Timing t = {0};
    char err[512];
    ClassifyJob **jobs = calloc((size_t)batch, sizeof *jobs);
    ClassifyResult *res = calloc((size_t)batch, sizeof *res);
    double t0 = now();
    for (int i0 = 0; i0 < w->n; i0 += batch) {
        int n = w->n - i0 < batch ? w->n - i0 : batch;
        for (int i = 0; i < n; i++) {
            ClassifyRequest req = {.conv = &w->convs[i0 + i]};
            if (!(jobs[i] = classifier_prepare(c, &req, err, sizeof err))) {
                fprintf(stderr, "bench_prefix_cache: %s\n", err);
                exit(1);
            }
        }
        if (classifier_run(c, jobs, n, res, err, sizeof err) < 0) {
            fprintf(stderr, "bench_prefix_cache: %s\n", err);
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            t.prompt += res[i].prompt_tokens;
            t.reused += res[i].cached_tokens;
            classify_result_free(&res[i]);
            classify_job_free(jobs[i]);
        }
    }
    t.secs = now() - t0;
    free(jobs);
    free(res);
    return t;
}

/* Alternating off/on reps times (off, on, on, off, ...), best of each. */
static void compare(Classifier *c, const Workload *w, int batch, int reps, const char *name) {
    Timing best[2] = {{1e30, 0, 0}, {1e30, 0, 0}};
    size_t held = 0;   /* most the cache held in an "on" run */
    for (int r = 0; r < 2 * reps; r++) {
        int on = (r % 4 == 1 || r % 4 == 2);
        classifier_set_cache_max_bytes(c, -1);          /* empties the cache */
        if (on) classifier_set_cache_max_bytes(c, 0);   /* default budget, starting cold */
        Timing t = run(c, w, batch);
        if (t.secs < best[on].secs) best[on] = t;
        ClassifierCacheStats now_st;
        classifier_cache_stats(c, &now_st);
        if (on && now_st.peak_bytes > held) held = now_st.peak_bytes;
    }
    for (int on = 0; on < 2; on++) {
        Timing *t = &best[on];
        printf("%-11s cache %-3s %7.2f s  %7.2f events/s  prompt tokens %ld: prefilled %ld, reused %ld (%.0f%%)\n",
               name, on ? "on" : "off", t->secs, w->n / t->secs, t->prompt, t->prompt - t->reused, t->reused,
               100.0 * t->reused / (t->prompt ? t->prompt : 1));
    }
    printf("%-11s speed-up with the cache: %.2fx (events/s on / off); prefilled tokens off / on: %.2fx; "
           "cache held %.1f MiB\n", name, best[0].secs / best[1].secs,
           (double)(best[0].prompt - best[0].reused) / (double)(best[1].prompt - best[1].reused),
           held / 1048576.0);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *dir = getenv("GUARDD_BENCH_SMALL_MODEL"), *tok = getenv("GUARDD_TOKENIZER"), *out = NULL;
    int threads = 0, n_conv = 16, turns = 8, single = 64, batch = 16, reps = 2;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "--model")) dir = v;
        else if (!strcmp(o, "--threads")) threads = atoi(v);
        else if (!strcmp(o, "--conversations")) n_conv = atoi(v);
        else if (!strcmp(o, "--turns")) turns = atoi(v);
        else if (!strcmp(o, "--single")) single = atoi(v);
        else if (!strcmp(o, "--batch")) batch = atoi(v);
        else if (!strcmp(o, "--reps")) reps = atoi(v);
        else if (!strcmp(o, "--write-events")) out = v;
        else { fprintf(stderr, "bench_prefix_cache: unknown option %s\n", o); return 2; }
    }
    if (!dir) { fprintf(stderr, "bench_prefix_cache: no model (--model DIR or GUARDD_BENCH_SMALL_MODEL)\n"); return 2; }
    if (n_conv < 1 || turns < 1 || single < 0 || batch < 1 || reps < 1) {
        fprintf(stderr, "bench_prefix_cache: counts must be positive\n");
        return 2;
    }
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
    FILE *f = fopen(tpath, "r");
    if (f) { fclose(f); tok = tpath; }
    ClassifierOptions o = {.model_dir = dir, .tokenizer_path = tok, .threads = threads, .threshold = 2.0f};
    char err[512];
    double t0 = now();
    Classifier *c = classifier_open(&o, err, sizeof err);
    if (!c) { fprintf(stderr, "bench_prefix_cache: %s\n", err); return 1; }
    const Model *m = classifier_model(c);
    printf("bench_prefix_cache: model %s (%d layers, dim %d, %d/%d heads, MLP %d), load %.2f s; BLIS %s, "
           "%d threads; batches of %d; threshold above 1 (every verdict safe: prefill only)\n",
           dir, m->cfg.n_layers, m->cfg.dim, m->cfg.n_heads, m->cfg.n_kv_heads, m->cfg.hidden_dim, now() - t0,
           blis_arch_name(), blis_threads(), batch);
    Workload mt = multi_turn(n_conv, turns), st = single_turn(single);
    if (out) {
        char p[4096];
        snprintf(p, sizeof p, "%s-multi.jsonl", out);
        write_jsonl(&mt, p);
        snprintf(p, sizeof p, "%s-single.jsonl", out);
        write_jsonl(&st, p);
    }
    run(c, &st, batch < st.n ? batch : st.n);   /* warm-up: weights paged in, BLIS set up */
    char name[64];
    snprintf(name, sizeof name, "%dx%d turns", n_conv, turns);
    compare(c, &mt, batch, reps, name);
    if (single > 0) compare(c, &st, batch, reps, "single-turn");
    for (int i = 0; i < mt.n; i++) conversation_free(&mt.convs[i]);
    for (int i = 0; i < st.n; i++) conversation_free(&st.convs[i]);
    free(mt.convs);
    free(st.convs);
    classifier_close(c);
    return 0;
}
