/* bench_prefill.c - prefill throughput of the batched forward pass, judged
 * against this machine's own BLIS GEMM rate measured in the same run.
 *
 *   bench_prefill [--model DIR] [--threads N] [--arch NAME] [--reps N]
 *                 [--batches 1x64,8x64,16x64]
 * Model directory: --model, else env GUARDD_BENCH_MODEL (tools/bench.sh sets
 * it to the full-shape Llama Guard 3 1B fixture).
 *
 * Prints: the reference sgemm rate (M=1024, K=2048, N=8192 through the same
 * gemm_xwt/rntm/kernel set as the engine), model load time, and per batch
 * shape BxL (B sequences of L new tokens, fresh caches, last-position logits
 * only): seconds, tokens/s and GFLOPS. FLOP counts (multiply-add = 2):
 *   nominal  = 2*P_layers*T + 2*vocab*dim*B + attention
 *   executed = nominal minus the last layer's Wo/MLP/attention work for the
 *              rows whose logits nobody asked for (the engine skips it)
 *   attention = 4*head_dim*n_heads*n_layers * sum over queries of keys seen
 * where P_layers = all per-layer weight elements (q,k,v,o,gate,up,down), T =
 * B*L. Ratio = executed GFLOPS / sgemm GFLOPS. Every timing is the best of
 * --reps runs after one warm-up run; the sgemm rate is measured before the
 * model loads and again after the prefill runs, and the better of the two is
 * the reference, so a busy moment cannot flatter the ratio. Last line: peak RSS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "gemm.h"
#include "model.h"
#include "transformer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double bench_sgemm(int reps) {
    const int M = 1024, K = 2048, N = 8192;
    float *X = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * (size_t)N * K);
    float *Y = malloc(sizeof(float) * (size_t)M * N);
    if (!X || !W || !Y) { fprintf(stderr, "bench_prefill: out of memory\n"); exit(1); }
    for (size_t i = 0; i < (size_t)M * K; i++) X[i] = (float)(i % 97) * 0.01f - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++) W[i] = (float)(i % 89) * 0.01f - 0.4f;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {   /* r == 0: warm-up */
        double t0 = now();
        gemm_xwt(M, N, K, X, K, W, K, Y, N, 0, 0);
        double dt = now() - t0;
        if (r && dt < best) best = dt;
    }
    free(X); free(W); free(Y);
    return 2.0 * M * N * K / best / 1e9;
}

typedef struct { double nominal, executed; } Flops;

static Flops count_flops(const ModelConfig *c, int B, int L) {
    double hd = c->head_dim, q = (double)c->n_heads * hd, kv = (double)c->n_kv_heads * hd;
    double d = c->dim, hid = c->hidden_dim;
    double qkv_p = (q + 2 * kv) * d, rest_p = q * d + 3 * hid * d;   /* o + gate/up/down */
    double T = (double)B * L;
    double attn_row = 4 * hd * c->n_heads;            /* per query per key per layer */
    double keys_all = (double)B * L * (L + 1) / 2;     /* sum of (pos + 1) over all queries */
    double keys_last = (double)B * L;                  /* logit rows see L keys each */
    Flops f;
    f.nominal = 2 * (qkv_p + rest_p) * c->n_layers * T + 2.0 * c->vocab_size * d * B +
                attn_row * c->n_layers * keys_all;
    f.executed = f.nominal - 2 * rest_p * (T - B) - attn_row * (keys_all - keys_last);
    return f;
}

/* Best-of-reps seconds for B sequences of L tokens each. */
static double bench_prefill(Transformer *t, const Model *m, int B, int L, int reps) {
    int V = m->cfg.vocab_size;
    int *tok = malloc(sizeof(int) * (size_t)B * L);
    float *logits = malloc(sizeof(float) * (size_t)B * V);
    KVCache **kv = calloc((size_t)B, sizeof *kv);
    SeqInput *s = calloc((size_t)B, sizeof *s);
    if (!tok || !logits || !kv || !s) { fprintf(stderr, "bench_prefill: out of memory\n"); exit(1); }
    unsigned x = 12345;
    for (int i = 0; i < B * L; i++) { x = x * 1103515245u + 12345u; tok[i] = (int)((x >> 8) % (unsigned)V); }
    for (int b = 0; b < B; b++) {
        kv[b] = kv_new(&m->cfg, L, NULL);
        if (!kv[b]) { fprintf(stderr, "bench_prefill: kv_new failed\n"); exit(1); }
        s[b] = (SeqInput){tok + (size_t)b * L, L, kv[b], 1, logits + (size_t)b * V};
    }
    double best = 1e30;
    char err[256];
    for (int r = 0; r <= reps; r++) {
        for (int b = 0; b < B; b++) kv_truncate(kv[b], 0);
        double t0 = now();
        if (transformer_forward(t, s, B, err, sizeof err) != 0) {
            fprintf(stderr, "bench_prefill: %s\n", err);
            exit(1);
        }
        double dt = now() - t0;
        if (r && dt < best) best = dt;
    }
    for (int b = 0; b < B; b++) kv_free(kv[b]);
    free(tok); free(logits); free(kv); free(s);
    return best;
}

int main(int argc, char **argv) {
    const char *dir = getenv("GUARDD_BENCH_MODEL"), *arch = NULL, *batches = "1x64,8x64,16x64";
    int threads = 0, reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model")) dir = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--arch")) arch = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]) > 0 ? atoi(argv[i + 1]) : 1;
        else if (!strcmp(argv[i], "--batches")) batches = argv[i + 1];
        else { fprintf(stderr, "bench_prefill: unknown option %s\n", argv[i]); return 2; }
    }
    if (!dir) { fprintf(stderr, "bench_prefill: no model (--model DIR or GUARDD_BENCH_MODEL)\n"); return 2; }
    blis_setup(threads, arch);
    printf("bench_prefill: BLIS kernels %s, %d threads\n", blis_arch_name(), blis_threads());
    double sgemm = bench_sgemm(reps + 2);
    printf("sgemm M=1024 K=2048 N=8192: %.1f GFLOPS\n", sgemm);
    fflush(stdout);
    char err[512];
    Model *m = model_load(dir, err, sizeof err);
    if (!m) { fprintf(stderr, "bench_prefill: %s\n", err); return 1; }
    printf("model %s: %d layers, dim %d, vocab %d; load %.2f s (%.2f GB f32)\n", m->name,
           m->cfg.n_layers, m->cfg.dim, m->cfg.vocab_size, m->load_seconds, m->weight_bytes / 1e9);
    Transformer *t = transformer_new(m, threads);
    typedef struct { int B, L; double secs; } Row;
    Row rows[32];
    int n_rows = 0;
    if (!t) { fprintf(stderr, "bench_prefill: transformer_new failed\n"); return 1; }
    for (const char *p = batches; *p;) {
        int B, L, used;
        if (sscanf(p, "%dx%d%n", &B, &L, &used) != 2 || B <= 0 || L <= 0) {
            fprintf(stderr, "bench_prefill: bad --batches entry at '%s'\n", p);
            return 2;
        }
        p += used + (p[used] == ',');
        if (n_rows < 32) rows[n_rows++] = (Row){B, L, bench_prefill(t, m, B, L, reps)};
    }
    double again = bench_sgemm(reps + 2);
    printf("sgemm again after the prefill runs: %.1f GFLOPS\n", again);
    if (again > sgemm) sgemm = again;
    for (int i = 0; i < n_rows; i++) {
        Flops f = count_flops(&m->cfg, rows[i].B, rows[i].L);
        double secs = rows[i].secs, gf = f.executed / secs / 1e9;
        printf("prefill %2dx%-3d %6.3f s  %7.1f tokens/s  %6.1f GFLOPS executed (ratio %.2f), "
               "%6.1f nominal (ratio %.2f)\n", rows[i].B, rows[i].L, secs, rows[i].B * rows[i].L / secs,
               gf, gf / sgemm, f.nominal / secs / 1e9, f.nominal / secs / 1e9 / sgemm);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.2f GB\n", ru.ru_maxrss / 1048576.0);
    transformer_free(t);
    model_free(m);
    return 0;
}
