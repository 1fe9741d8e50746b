/* bench_prefix_cache.c - what the prompt prefix cache buys: events/s of two
 * multi-turn workloads and of single-turn events, with the cache (default
 * budget) and with cache_max_bytes = 0, in one run on one loaded model, next
 * to the bound that exact prefix reuse sets.
 *
 *   bench_prefix_cache [--model DIR] [--threads N] [--conversations 16]
 *                      [--turns 8] [--single 64] [--batch 16] [--reps 2]
 *                      [--write-events PREFIX]
 *
 * Model: --model, else $GUARDD_BENCH_SMALL_MODEL (tools/bench.sh: a random
 * checkpoint with the real vocabulary and tokenizer, 4 layers of width 512,
 * so a run takes seconds on 2 cores; the full-shape 1B takes ~10 minutes per
 * pass of the default workload here: use fewer conversations with it, e.g.
 * --conversations 4 --batch 4, which keeps one turn of every conversation
 * per batch).
 * Tokenizer: $GUARDD_TOKENIZER unless the model directory has one.
 *
 * Multi-turn workload: C conversations x T turns; turn t's event carries the
 * whole history (t messages, user and agent alternating, 30-90 words each,
 * ~40-120 tokens), and events arrive in conversation order the way a chat
 * product interleaves them: turn 1 of every conversation, then turn 2, ...;
 * micro-batches of --batch events (the daemon's default 16). Agent-turn
 * workload: the same conversations, but only the agent's turns are events
 * (turns 2, 4, ...: every prompt has the role word Agent), so each event
 * continues the conversation's previous event exactly. Single-turn
 * workload: one user message per event, same batches. Each workload is
 * timed with the cache off and on, alternating --reps times, best time kept;
 * reported: events/s, the speed-up, prompt tokens prefilled vs reused.
 * "Off" still computes a prefix the events of one batch share once (the
 * policy preamble).
 *
 * The bound: reuse is exact, so a prompt can only skip its longest start
 * that an earlier prompt shares token for token (its last token is always
 * computed). Summed over the workload with unlimited memory that gives the
 * fewest tokens any exact prefix cache must prefill; "without the cache"
 * counts only the starts shared within a batch (what "off" does). Their
 * ratio bounds the prefilled-tokens ratio, and so, roughly, the speed-up.
 * The role word (User/Agent) sits in the instructions, near the start of
 * the prompt, and alternates with the turns of the multi-turn workload, so
 * there a turn shares only the turn before last's prompt: it prefills its
 * last two messages plus the closing instructions. To show what the template
 * costs, the bound is also printed for the same events rendered with one
 * role word (arithmetic only: such prompts would judge the wrong party).
 * --write-events PREFIX also writes PREFIX-multi.jsonl, PREFIX-agent.jsonl
 * and PREFIX-single.jsonl (guardctl classify input, same order) to compare
 * other builds.
 */
#include <math.h>
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

/* Turn t (1-based) of every conversation is an event, for every turn, or
 * with agent_only for the even turns (the conversation up to an agent
 * message) only. */
static Workload multi_turn(int n_conv, int turns, int agent_only) {
    int step = agent_only ? 2 : 1, per = turns / step;
    Workload w = {calloc((size_t)n_conv * (per ? per : 1), sizeof(Conversation)), n_conv * per};
    for (int e = 0; e < per; e++)
        for (int c = 0; c < n_conv; c++) {
            Conversation *cv = &w.convs[e * n_conv + c];
            int t = (e + 1) * step - 1;     /* 0-based index of the event's last message */
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

/* ---- the bound set by exact reuse --------------------------------------- */

typedef struct { long prompt, off, exact; } Bound;

static int lcp(const int *a, int na, const int *b, int nb) {
    int k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* Tokens to prefill for w's events in order (batches of `batch`), with the
 * prompts rendered for role: without the cache (a prompt skips only what it
 * shares with an earlier one of its batch) and with exact reuse of anything
 * computed before (unlimited memory, token granular: no block rounding). */
static Bound bound(Classifier *c, const Workload *w, int batch, ForceRole role) {
    Bound b = {0};
    char err[512];
    const int **ids = calloc((size_t)w->n, sizeof *ids);
    int *n = calloc((size_t)w->n, sizeof *n);
    ClassifyJob **jobs = calloc((size_t)w->n, sizeof *jobs);
    for (int i = 0; i < w->n; i++) {
        ClassifyRequest req = {.conv = &w->convs[i], .role = role};
        if (!(jobs[i] = classifier_prepare(c, &req, err, sizeof err))) {
            fprintf(stderr, "bench_prefix_cache: %s\n", err);
            exit(1);
        }
        ids[i] = classify_job_tokens(jobs[i], &n[i]);
    }
    for (int i = 0; i < w->n; i++) {
        int in_batch = 0, any = 0, limit = n[i] - 1;    /* the last token is always computed */
        for (int j = 0; j < i; j++) {
            int k = lcp(ids[i], limit, ids[j], n[j]);
            if (k > any) any = k;
            if (j / batch == i / batch && k > in_batch) in_batch = k;
        }
        b.prompt += n[i];
        b.off += n[i] - in_batch;
        b.exact += n[i] - any;
    }
    for (int i = 0; i < w->n; i++) classify_job_free(jobs[i]);
    free(jobs);
    free(ids);
    free(n);
    return b;
}

/* Alternating off/on reps times (off, on, on, off, ...), best of each; the
 * bound (if given) next to the measured ratios. Returns the speed-up. */
static double compare(Classifier *c, const Workload *w, int batch, int reps, const char *name,
                      const Bound *bd) {
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
    long pre_off = best[0].prompt - best[0].reused, pre_on = best[1].prompt - best[1].reused;
    printf("%-11s speed-up with the cache: %.2fx (events/s on / off); prefilled tokens off / on: %.2fx; "
           "cache held %.1f MiB\n", name, best[0].secs / best[1].secs, (double)pre_off / (double)pre_on,
           held / 1048576.0);
    if (bd)
        printf("%-11s bound: exact reuse must prefill %ld of %ld prompt tokens, %ld without the cache: "
               "at most %.2fx fewer (measured %.2fx: %ld on, %ld off)\n", name, bd->exact, bd->prompt,
               bd->off, (double)bd->off / (double)bd->exact, (double)pre_off / (double)pre_on, pre_on, pre_off);
    fflush(stdout);
    return best[0].secs / best[1].secs;
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
    Workload mt = multi_turn(n_conv, turns, 0), at = multi_turn(n_conv, turns, 1), st = single_turn(single);
    if (out) {
        char p[4096];
        snprintf(p, sizeof p, "%s-multi.jsonl", out);
        write_jsonl(&mt, p);
        snprintf(p, sizeof p, "%s-agent.jsonl", out);
        write_jsonl(&at, p);
        snprintf(p, sizeof p, "%s-single.jsonl", out);
        write_jsonl(&st, p);
    }
    run(c, &st, batch < st.n ? batch : st.n);   /* warm-up: weights paged in, BLIS set up */
    char name[64];
    Bound bm = bound(c, &mt, batch, FORCE_ROLE_AUTO), ba = bound(c, &at, batch, FORCE_ROLE_AUTO);
    Bound one = bound(c, &mt, batch, FORCE_ROLE_USER);
    snprintf(name, sizeof name, "%dx%d turns", n_conv, turns);
    compare(c, &mt, batch, reps, name, &bm);
    printf("%-11s bound if the role word did not alternate (every prompt rendered User, not timed): "
           "exact reuse must prefill %ld of %ld, %ld without the cache: at most %.2fx fewer\n", name, one.exact,
           one.prompt, one.off, (double)one.off / (double)one.exact);
    if (at.n > 0) {
        snprintf(name, sizeof name, "%dx%d agent", n_conv, turns / 2);
        compare(c, &at, batch, reps, name, &ba);
    }
    if (single > 0) {
        double sp = compare(c, &st, batch, reps, "single-turn", NULL);
        printf("single-turn with the cache is %s (%.1f%% %s; the goal allows 3%% slower)\n",
               sp >= 1 / 1.03 ? "within the goal" : "over the goal", fabs(sp - 1) * 100,
               sp >= 1 ? "faster" : "slower");
    }
    Workload *all[] = {&mt, &at, &st};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < all[k]->n; i++) conversation_free(&all[k]->convs[i]);
        free(all[k]->convs);
    }
    classifier_close(c);
    return 0;
}
