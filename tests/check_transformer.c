/* check_transformer.c - unit tests of the batched forward pass (transformer.c,
 * ops.c, gemm.c, kvcache.c) on small random models built in memory.
 *
 * How the forward pass is proven here:
 *  - against a naive double-precision decoder written in this file (no KV
 *    cache, no batching, recomputes everything), tolerance 1e-4 of the logit
 *    range (f32 vs f64 over a few layers);
 *  - batched == each sequence alone, prefix reuse == full recomputation,
 *    token-by-token decode == one prefill: all to 1e-5 of the logit range
 *    (max |a - b| <= 1e-5 * (max - min) of the reference logits), which only
 *    allows float rounding differences between GEMM shapes; these three run
 *    in every weight precision on every kernel family (set_variant);
 *  - errors (cache full, bad token id, shared cache in one batch) return -1
 *    with a message and leave the caches untouched.
 * The independent numpy check against real safetensors files is
 * tests/t_numerics.sh.
 */
#include "check_main.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "gemm.h"
#include "ops.h"
#include "transformer.h"
#include "weights.h"

/* ---- a tiny random model ------------------------------------------------ */

typedef struct {
    Model m;
    float *blocks[16];
    int n_blocks;
    void *stored[128];   /* bf16/int8 copies made by set_variant */
    int n_stored;
} TestModel;

static unsigned long long rng_state = 88172645463325252ull;
static float frand(void) {   /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0) * 2 - 1);
}

static float *rand_block(TestModel *tm, size_t n, float scale, float offset) {
    float *p = malloc(n * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * frand();
    tm->blocks[tm->n_blocks++] = p;
    return p;
}

static TestModel *make_model(int n_layers, int n_heads, int n_kv, int tied, int llama3) {
    TestModel *tm = calloc(1, sizeof *tm);
    ModelConfig *c = &tm->m.cfg;
    c->n_layers = n_layers;
    c->head_dim = 16;
    c->n_heads = n_heads;
    c->n_kv_heads = n_kv;
    c->dim = 64;
    c->hidden_dim = 96;
    c->vocab_size = 97;
    c->max_pos = 256;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000;
    c->rope_llama3 = llama3;
    c->rope_factor = 8;
    c->rope_low_freq_factor = 1;
    c->rope_high_freq_factor = 4;
    c->rope_orig_max_pos = 16;
    c->tied = tied;
    int qkv = (n_heads + 2 * n_kv) * c->head_dim, q = n_heads * c->head_dim, d = c->dim;
    float ws = 1.0f / sqrtf((float)d);
    tm->m.w.layers = calloc((size_t)n_layers, sizeof(LayerWeights));
    float *an = rand_block(tm, (size_t)n_layers * d, 0.2f, 1.0f);
    float *wqkv = rand_block(tm, (size_t)n_layers * qkv * d, 2 * ws, 0);
    float *wo = rand_block(tm, (size_t)n_layers * d * q, ws, 0);
    float *mn = rand_block(tm, (size_t)n_layers * d, 0.2f, 1.0f);
    float *w13 = rand_block(tm, (size_t)n_layers * 2 * c->hidden_dim * d, 2 * ws, 0);
    float *w2 = rand_block(tm, (size_t)n_layers * d * c->hidden_dim, 1.0f / sqrtf(96.f), 0);
    for (int l = 0; l < n_layers; l++) {
        LayerWeights *w = &tm->m.w.layers[l];
        w->attn_norm = an + (size_t)l * d;
        w->wqkv = wm_f32(wqkv + (size_t)l * qkv * d, qkv, d);
        w->wo = wm_f32(wo + (size_t)l * d * q, d, q);
        w->mlp_norm = mn + (size_t)l * d;
        w->w13 = wm_f32(w13 + (size_t)l * 2 * c->hidden_dim * d, 2 * c->hidden_dim, d);
        w->w2 = wm_f32(w2 + (size_t)l * d * c->hidden_dim, d, c->hidden_dim);
    }
    tm->m.w.embed = wm_f32(rand_block(tm, (size_t)c->vocab_size * d, 1.0f, 0), c->vocab_size, d);
    tm->m.w.final_norm = rand_block(tm, (size_t)d, 0.2f, 1.0f);
    tm->m.w.lm_head = tied ? tm->m.w.embed
                            : wm_f32(rand_block(tm, (size_t)c->vocab_size * d, ws, 0), c->vocab_size, d);
    tm->m.precision = PREC_F32;
    return tm;
}

static void free_model(TestModel *tm) {
    for (int i = 0; i < tm->n_blocks; i++) free(tm->blocks[i]);
    for (int i = 0; i < tm->n_stored; i++) free(tm->stored[i]);
    free(tm->m.w.layers);
    free(tm);
}

/* ---- naive double-precision reference decoder ---------------------------- */

static void ref_norm(double *o, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) o[i] = x[i] * inv * w[i];
}

static void ref_matvec(double *y, const float *W, const double *x, int out, int in) {
    for (int o = 0; o < out; o++) {
        double a = 0;
        for (int i = 0; i < in; i++) a += (double)W[(size_t)o * in + i] * x[i];
        y[o] = a;
    }
}

/* Written from the HF description, independently of ops.c. */
static double ref_freq(const ModelConfig *c, int i) {
    double f = pow(c->rope_theta, -2.0 * i / c->head_dim);
    if (!c->rope_llama3) return f;
    double wl = 2 * M_PI / f, lo = c->rope_orig_max_pos / c->rope_low_freq_factor;
    double hi = c->rope_orig_max_pos / c->rope_high_freq_factor;
    if (wl < hi) return f;
    if (wl > lo) return f / c->rope_factor;
    double sm = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1 - sm) * f / c->rope_factor + sm * f;
}

static void ref_rope(double *v, const ModelConfig *c, int pos) {
    int h = c->head_dim / 2;
    for (int i = 0; i < h; i++) {
        double a = pos * ref_freq(c, i), x0 = v[i], x1 = v[i + h];
        v[i] = x0 * cos(a) - x1 * sin(a);
        v[i + h] = x1 * cos(a) + x0 * sin(a);
    }
}

/* Last-position logits of tokens[0..n) computed from scratch. */
static void ref_forward(const Model *m, const int *tok, int n, double *logits) {
    const ModelConfig *c = &m->cfg;
    int d = c->dim, hd = c->head_dim, H = c->n_heads, KV = c->n_kv_heads, hid = c->hidden_dim;
    int qd = H * hd, kvd = KV * hd, qkvd = qd + 2 * kvd;
    double *x = calloc((size_t)n * d, sizeof *x), *xn = malloc(sizeof(double) * d);
    double *qkv = malloc(sizeof(double) * (size_t)n * qkvd), *att = malloc(sizeof(double) * qd);
    double *tmp = malloc(sizeof(double) * (2 * hid + d)), *sc = malloc(sizeof(double) * n);
    for (int p = 0; p < n; p++)
        for (int i = 0; i < d; i++) x[(size_t)p * d + i] = m->w.embed.f32[(size_t)tok[p] * d + i];
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->w.layers[l];
        for (int p = 0; p < n; p++) {
            ref_norm(xn, x + (size_t)p * d, w->attn_norm, d, c->norm_eps);
            ref_matvec(qkv + (size_t)p * qkvd, w->wqkv.f32, xn, qkvd, d);
            for (int h = 0; h < H + KV; h++) ref_rope(qkv + (size_t)p * qkvd + h * hd, c, p);
        }
        double *newx = malloc(sizeof(double) * (size_t)n * d);
        for (int p = 0; p < n; p++) {
            for (int h = 0; h < H; h++) {
                int kh = h / (H / KV);
                const double *q = qkv + (size_t)p * qkvd + h * hd;
                double mx = -1e300, sum = 0;
                for (int j = 0; j <= p; j++) {
                    const double *k = qkv + (size_t)j * qkvd + qd + kh * hd;
                    double s = 0;
                    for (int e = 0; e < hd; e++) s += q[e] * k[e];
                    sc[j] = s / sqrt(hd);
                    if (sc[j] > mx) mx = sc[j];
                }
                for (int j = 0; j <= p; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int e = 0; e < hd; e++) {
                    double a = 0;
                    for (int j = 0; j <= p; j++) a += sc[j] * qkv[(size_t)j * qkvd + qd + kvd + kh * hd + e];
                    att[h * hd + e] = a / sum;
                }
            }
            ref_matvec(tmp, w->wo.f32, att, d, qd);
            for (int i = 0; i < d; i++) newx[(size_t)p * d + i] = x[(size_t)p * d + i] + tmp[i];
        }
        for (int p = 0; p < n; p++) {
            double *xp = newx + (size_t)p * d;
            ref_norm(xn, xp, w->mlp_norm, d, c->norm_eps);
            ref_matvec(tmp, w->w13.f32, xn, 2 * hid, d);
            for (int j = 0; j < hid; j++) tmp[j] = tmp[j] / (1 + exp(-tmp[j])) * tmp[hid + j];
            ref_matvec(tmp + 2 * hid, w->w2.f32, tmp, d, hid);
            for (int i = 0; i < d; i++) xp[i] += tmp[2 * hid + i];
        }
        memcpy(x, newx, sizeof(double) * (size_t)n * d);
        free(newx);
    }
    ref_norm(xn, x + (size_t)(n - 1) * d, m->w.final_norm, d, c->norm_eps);
    ref_matvec(logits, m->w.lm_head.f32, xn, c->vocab_size, d);
    free(x); free(xn); free(qkv); free(att); free(tmp); free(sc);
}

/* ---- helpers ------------------------------------------------------------ */

static void rand_tokens(int *t, int n, int vocab) {
    for (int i = 0; i < n; i++) t[i] = (int)((frand() + 1) * 0.5f * vocab) % vocab;
}

/* max |a - b| / (max(ref) - min(ref)) */
static double rel_err(const float *a, const float *ref, int n) {
    double mx = ref[0], mn = ref[0], e = 0;
    for (int i = 0; i < n; i++) {
        if (ref[i] > mx) mx = ref[i];
        if (ref[i] < mn) mn = ref[i];
        double d = fabs((double)a[i] - ref[i]);
        if (d > e) e = d;
    }
    return e / (mx - mn);
}

/* Runs one sequence alone in a fresh cache; last n_logits logits into out. */
static void run_alone(Transformer *t, const Model *m, const int *tok, int n, int n_logits, float *out) {
    KVCache *kv = kv_new(&m->cfg, n, NULL);
    ck_assert_ptr_nonnull(kv);
    SeqInput s = {tok, n, kv, n_logits, out};
    char err[200] = "";
    ck_assert_msg(transformer_forward(t, &s, 1, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(kv_len(kv), n);
    kv_free(kv);
}

/* ---- precisions and kernel families ------------------------------------- */

static void *keep(TestModel *tm, size_t bytes) {
    ck_assert_int_lt(tm->n_stored, 128);
    void *p = malloc(bytes);
    ck_assert_ptr_nonnull(p);
    return tm->stored[tm->n_stored++] = p;
}

/* src (f32) in precision p, as the loader stores it. */
static WeightMatrix stored_as(TestModel *tm, const WeightMatrix *src, Precision p) {
    size_t n = (size_t)src->rows * src->cols;
    WeightMatrix w = {.prec = p, .rows = src->rows, .cols = src->cols};
    if (p == PREC_BF16) {
        w.bf16 = keep(tm, n * sizeof(uint16_t));
        wm_round_bf16(src->f32, w.bf16, n);
    } else if (p == PREC_INT8) {
        int words = wm_lo_words(src->cols, WM_I8_BITS_OTHER);
        w.q = keep(tm, n);
        w.scale = keep(tm, sizeof(float) * (size_t)src->rows);
        w.lo = keep(tm, sizeof(uint32_t) * (size_t)src->rows * words);
        w.lo_bits = WM_I8_BITS_OTHER;
        for (int r = 0; r < src->rows; r++)
            w.scale[r] = wm_quantize_row(src->f32 + (size_t)r * src->cols, src->cols, w.lo_bits,
                                         w.q + (size_t)r * src->cols, w.lo + (size_t)r * words);
    } else return *src;
    return w;
}

/* Loop-test variants: every precision on every kernel family (a family the
 * CPU lacks runs its best one). */
static const struct { Precision p; const char *family; } variants[] = {
    {PREC_F32, "auto"}, {PREC_BF16, "avx512"}, {PREC_BF16, "avx2"}, {PREC_BF16, "generic"},
    {PREC_INT8, "avx512"}, {PREC_INT8, "avxvnni"}, {PREC_INT8, "avx2"}, {PREC_INT8, "generic"},
};
#define N_VARIANTS (int)(sizeof variants / sizeof variants[0])
#define VARIANT(i) precision_name(variants[i].p), variants[i].family

static void set_variant(TestModel *tm, int v) {
    ck_assert_int_eq(wm_set_kernels(variants[v].family), 0);
    Precision p = variants[v].p;
    Weights *w = &tm->m.w;
    for (int l = 0; l < tm->m.cfg.n_layers; l++) {
        LayerWeights *L = &w->layers[l];
        L->wqkv = stored_as(tm, &L->wqkv, p);
        L->wo = stored_as(tm, &L->wo, p);
        L->w13 = stored_as(tm, &L->w13, p);
        L->w2 = stored_as(tm, &L->w2, p);
    }
    int tied = w->lm_head.f32 == w->embed.f32;
    w->embed = stored_as(tm, &w->embed, p);
    w->lm_head = tied ? w->embed : stored_as(tm, &w->lm_head, p);
    tm->m.precision = p;
}

/* ---- tests --------------------------------------------------------------- */

START_TEST(test_fast_expf) {
    double worst = 0;
    for (float x = -80; x < 80; x += 0.0137f) {
        double e = fabs(fast_expf(x) - exp(x)) / exp(x);
        if (e > worst) worst = e;
    }
    ck_assert_msg(worst < 1e-6, "fast_expf relative error %g", worst);
    ck_assert(fast_expf(-1000) >= 0 && fast_expf(-1000) < 1e-37);
    ck_assert(isfinite(fast_expf(1000)));
}
END_TEST

START_TEST(test_rmsnorm) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f}, o[4];
    rmsnorm_rows(o, 4, x, 4, w, 1, 4, 0);
    double r = sqrt((1 + 4 + 9 + 16) / 4.0);   /* 2.7386 */
    ck_assert_double_eq_tol(o[0], 1 / r, 1e-6);
    ck_assert_double_eq_tol(o[2], 6 / r, 1e-6);
    ck_assert_double_eq_tol(o[3], 2 / r, 1e-6);
}
END_TEST

START_TEST(test_rope_freqs_llama3) {
    /* theta 10000, d 8: raw 1, .1, .01, .001; orig 1000, low 1, high 4, factor 8:
     * wavelengths 6.3, 63 (< 250 keep), 628 (smooth), 6283 (> 1000: /8). */
    ModelConfig c = {.head_dim = 8, .rope_theta = 10000, .rope_llama3 = 1, .rope_factor = 8,
                     .rope_low_freq_factor = 1, .rope_high_freq_factor = 4, .rope_orig_max_pos = 1000};
    double f[4];
    rope_inv_freq(&c, f);
    ck_assert_double_eq_tol(f[0], 1.0, 1e-12);
    ck_assert_double_eq_tol(f[1], 0.1, 1e-12);
    double sm = (1000 / (2 * M_PI / 0.01) - 1) / 3;   /* 0.197184 */
    ck_assert_double_eq_tol(f[2], (1 - sm) * 0.01 / 8 + sm * 0.01, 1e-12);
    ck_assert_double_eq_tol(f[3], 0.001 / 8, 1e-12);
    c.rope_llama3 = 0;
    rope_inv_freq(&c, f);
    ck_assert_double_eq_tol(f[3], 0.001, 1e-12);
}
END_TEST

START_TEST(test_rope_apply) {
    /* pairs are (i, i + half): rotating e_0 by angle a gives cos a at 0, sin a at half */
    float v[4] = {1, 0, 0, 0}, c[2] = {cosf(0.5f), 1}, s[2] = {sinf(0.5f), 0};
    rope_apply(v, 2, c, s);
    ck_assert_double_eq_tol(v[0], cos(0.5), 1e-6);
    ck_assert_double_eq_tol(v[2], sin(0.5), 1e-6);
    ck_assert_double_eq_tol(v[1], 0, 1e-7);
}
END_TEST

/* attend_head against a plain double-precision loop: keys spread over several
 * segments, a query block longer than ATT_QB, row counts that are not a
 * multiple of 4, head_dim 64 and 16 (tiled value mixing) and 8 (fallback),
 * kv head 1 of 2 in layer 1 of 2, q/out rows with padding. The scratch is
 * filled with NaN so a read of anything not written first shows. */
static void check_attend(int hd, const int *lens, int n_segs, int n_q) {
    const int layers = 2, layer = 1, n_kv = 2, kvh = 1, kv_dim = n_kv * hd;
    KVSegment segs[4];
    int total = 0;
    for (int s = 0; s < n_segs; s++) {
        int cap = lens[s] + 3;
        float *k = malloc(sizeof(float) * layers * cap * kv_dim), *v = malloc(sizeof(float) * layers * cap * kv_dim);
        for (int i = 0; i < layers * cap * kv_dim; i++) { k[i] = 2 * frand(); v[i] = frand(); }
        segs[s] = (KVSegment){k, v, lens[s], cap};
        total += lens[s];
    }
    int pos0 = total - n_q, ldq = 3 * hd + 5, ldo = 2 * hd + 1;
    float *q = malloc(sizeof(float) * n_q * ldq), *out = malloc(sizeof(float) * n_q * ldo);
    for (int i = 0; i < n_q * ldq; i++) q[i] = frand();
    size_t ns = attend_scratch_floats(total, hd);
    float *scratch = malloc(sizeof(float) * ns);
    for (size_t i = 0; i < ns; i++) scratch[i] = NAN;
    attend_head(q, ldq, out, ldo, n_q, pos0, segs, n_segs, layer, kv_dim, kvh, hd, scratch);
    double *sc = malloc(sizeof(double) * total);
    for (int i = 0; i < n_q; i++) {
        int nk = pos0 + i + 1;
        const float *rows[2][1024];   /* [k|v][key] */
        for (int s = 0, j = 0; s < n_segs; s++)
            for (int t = 0; t < segs[s].len; t++, j++) {
                size_t off = ((size_t)layer * segs[s].capacity + t) * kv_dim + kvh * hd;
                rows[0][j] = segs[s].k + off;
                rows[1][j] = segs[s].v + off;
            }
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < nk; j++) {
            double d = 0;
            for (int e = 0; e < hd; e++) d += (double)q[i * ldq + e] * rows[0][j][e];
            sc[j] = d / sqrt(hd);
            if (sc[j] > mx) mx = sc[j];
        }
        for (int j = 0; j < nk; j++) sum += (sc[j] = exp(sc[j] - mx));
        for (int e = 0; e < hd; e++) {
            double want = 0;
            for (int j = 0; j < nk; j++) want += sc[j] / sum * rows[1][j][e];
            ck_assert_msg(fabs(out[i * ldo + e] - want) < 1e-5, "hd %d n_q %d row %d elem %d: %g vs %g",
                          hd, n_q, i, e, out[i * ldo + e], want);
        }
    }
    for (int s = 0; s < n_segs; s++) { free((void *)segs[s].k); free((void *)segs[s].v); }
    free(q); free(out); free(scratch); free(sc);
}

START_TEST(test_attend_head) {
    check_attend(64, (int[]){37, 5, 100}, 3, 100);   /* prefix of 2 segments, 2 query blocks */
    check_attend(16, (int[]){131}, 1, 131);          /* no prefix, 131 = 2*64 + 3 rows */
    check_attend(8, (int[]){3, 70}, 2, 70);          /* head_dim 8: the untiled mixing */
    check_attend(64, (int[]){200, 1}, 2, 1);         /* one decode row after a long prefix */
    check_attend(64, (int[]){17, 6}, 2, 6);          /* fewer rows than one block of 4 */
}
END_TEST

static void check_gemm(int M, int N, int K, int acc) {
    float *X = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K);
    float *Y = malloc(sizeof(float) * M * (N + 3));
    for (int i = 0; i < M * K; i++) X[i] = frand();
    for (int i = 0; i < N * K; i++) W[i] = frand();
    for (int i = 0; i < M * (N + 3); i++) Y[i] = 0.5f;
    gemm_xwt(M, N, K, X, K, W, K, Y, N + 3, acc, 0);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N + 3; j++) {
            double want = j >= N ? 0.5 : (acc ? 0.5 : 0);
            for (int k = 0; j < N && k < K; k++) want += (double)X[i * K + k] * W[j * K + k];
            ck_assert_msg(fabs(Y[i * (N + 3) + j] - want) < 1e-4, "M=%d (%d,%d): %g vs %g", M, i, j,
                          Y[i * (N + 3) + j], want);
        }
    free(X); free(W); free(Y);
}

START_TEST(test_gemm) {
    check_gemm(3, 33, 20, 0);    /* small M: streaming kernel */
    check_gemm(16, 6, 2051, 1);  /* largest streamed M, odd K, accumulate */
    check_gemm(17, 5, 9, 0);     /* smallest BLIS M */
    check_gemm(37, 19, 70, 1);   /* packed path, accumulate, row stride > N */
}
END_TEST

START_TEST(test_blis_arch) {
    const char *a = blis_arch_name();
    ck_assert_ptr_nonnull(a);
    ck_assert(strlen(a) > 0);
#if defined(__x86_64__)
    /* The point of blis_setup: never the portable kernels on a vector CPU. */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !getenv("GUARDD_TEST_BLIS_ARCH"))
        ck_assert_str_ne(a, "generic");
#endif
}
END_TEST

/* Against the naive f64 decoder: configs cover GQA 1/2/4, tied/untied, rope
 * scaling on/off, positions past rope_orig_max_pos (16). */
static void check_against_ref(int n_heads, int n_kv, int tied, int llama3) {
    TestModel *tm = make_model(2, n_heads, n_kv, tied, llama3);
    Transformer *t = transformer_new(&tm->m, 2);
    ck_assert_ptr_nonnull(t);
    int V = tm->m.cfg.vocab_size, lens[3] = {1, 9, 45};
    int tok[3][45];
    float out[3][97];
    KVCache *kv[3];
    SeqInput s[3];
    for (int i = 0; i < 3; i++) {
        rand_tokens(tok[i], lens[i], V);
        kv[i] = kv_new(&tm->m.cfg, lens[i], NULL);
        s[i] = (SeqInput){tok[i], lens[i], kv[i], 1, out[i]};
    }
    char err[200] = "";
    ck_assert_msg(transformer_forward(t, s, 3, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 3; i++) {
        double ref[97];
        float reff[97] = {0};
        ref_forward(&tm->m, tok[i], lens[i], ref);
        for (int j = 0; j < V; j++) reff[j] = (float)ref[j];
        double e = rel_err(out[i], reff, V);
        ck_assert_msg(e < 1e-4, "heads %d/%d tied %d llama3 %d seq %d: rel err %g", n_heads, n_kv,
                      tied, llama3, i, e);
        kv_free(kv[i]);
    }
    transformer_free(t);
    free_model(tm);
}

START_TEST(test_vs_reference) {
    check_against_ref(4, 4, 0, 1);
    check_against_ref(4, 2, 1, 1);
    check_against_ref(4, 1, 0, 0);
    check_against_ref(8, 2, 1, 0);
}
END_TEST

START_TEST(test_batched_equals_alone) {
    TestModel *tm = make_model(3, 4, 2, 0, 1);
    set_variant(tm, _i);
    Transformer *t = transformer_new(&tm->m, 2);
    int V = tm->m.cfg.vocab_size;
    enum { N = 5 };
    int lens[N] = {7, 1, 30, 12, 64}, nl[N] = {1, 1, 4, 0, 2};
    int tok[N][64];
    float *batch[N], *alone[N];
    KVCache *kv[N];
    SeqInput s[N];
    for (int i = 0; i < N; i++) {
        rand_tokens(tok[i], lens[i], V);
        batch[i] = calloc((size_t)V * (nl[i] ? nl[i] : 1), sizeof(float));
        alone[i] = calloc((size_t)V * (nl[i] ? nl[i] : 1), sizeof(float));
        kv[i] = kv_new(&tm->m.cfg, lens[i] + 3, NULL);
        s[i] = (SeqInput){tok[i], lens[i], kv[i], nl[i], batch[i]};
    }
    char err[200] = "";
    ck_assert_msg(transformer_forward(t, s, N, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(kv_len(kv[i]), lens[i]);
        if (!nl[i]) continue;
        run_alone(t, &tm->m, tok[i], lens[i], nl[i], alone[i]);
        for (int r = 0; r < nl[i]; r++) {
            double e = rel_err(batch[i] + (size_t)r * V, alone[i] + (size_t)r * V, V);
            ck_assert_msg(e < 1e-5, "%s/%s seq %d row %d: rel err %g", VARIANT(_i), i, r, e);
        }
    }
    /* the non-final logit rows are the logits of shorter prefixes */
    float shorter[97];
    run_alone(t, &tm->m, tok[2], 28, 1, shorter);
    ck_assert_msg(rel_err(batch[2] + V, shorter, V) < 1e-5, "%s/%s shorter prefix", VARIANT(_i));
    /* the same batch with its logits as rows of one matrix (lm_head writes
     * them in place, not through the transformer's own buffer): the same bits */
    float *one = calloc((size_t)V * 8, sizeof(float)), *at = one;
    for (int i = 0; i < N; i++) {
        kv_truncate(kv[i], 0);
        s[i].logits = nl[i] ? at : NULL;
        at += (size_t)nl[i] * V;
    }
    ck_assert_msg(transformer_forward(t, s, N, err, sizeof err) == 0, "%s", err);
    at = one;
    for (int i = 0; i < N; i++) {
        ck_assert_msg(!memcmp(at, batch[i], sizeof(float) * V * nl[i]), "%s/%s seq %d: logits in one matrix differ",
                      VARIANT(_i), i);
        at += (size_t)nl[i] * V;
    }
    free(one);
    for (int i = 0; i < N; i++) { free(batch[i]); free(alone[i]); kv_free(kv[i]); }
    transformer_free(t);
    free_model(tm);
}
END_TEST

START_TEST(test_prefix_reuse) {
    TestModel *tm = make_model(2, 4, 1, 1, 1);
    set_variant(tm, _i);
    Transformer *t = transformer_new(&tm->m, 2);
    int V = tm->m.cfg.vocab_size;
    int tok[2][60];
    rand_tokens(tok[0], 60, V);
    memcpy(tok[1], tok[0], sizeof(int) * 20);   /* same first 20 tokens */
    rand_tokens(tok[1] + 20, 40, V);
    char err[200] = "";
    /* shared prefix of 12, a second level of 8, then each sequence's rest */
    KVCache *p1 = kv_new(&tm->m.cfg, 12, NULL);
    SeqInput sp = {tok[0], 12, p1, 0, NULL};
    ck_assert_msg(transformer_forward(t, &sp, 1, err, sizeof err) == 0, "%s", err);
    KVCache *p2 = kv_new(&tm->m.cfg, 8, p1);
    sp = (SeqInput){tok[0] + 12, 8, p2, 0, NULL};
    ck_assert_msg(transformer_forward(t, &sp, 1, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(kv_len(p2), 20);
    ck_assert_int_eq(kv_own_len(p2), 8);
    float got[2][97], want[2][97];
    KVCache *kv[2];
    SeqInput s[2];
    for (int i = 0; i < 2; i++) {
        kv[i] = kv_new(&tm->m.cfg, 40, p2);
        s[i] = (SeqInput){tok[i] + 20, 40, kv[i], 1, got[i]};
    }
    ck_assert_msg(transformer_forward(t, s, 2, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 2; i++) {
        run_alone(t, &tm->m, tok[i], 60, 1, want[i]);
        double e = rel_err(got[i], want[i], V);
        ck_assert_msg(e < 1e-5, "%s/%s seq %d: prefix reuse rel err %g", VARIANT(_i), i, e);
    }
    /* a prefix that grew after a cache was put on it is refused */
    kv_truncate(kv[0], 0);
    ck_assert_int_eq(kv_len(kv[0]), 20);
    KVCache *grown = kv_new(&tm->m.cfg, 4, NULL);
    KVCache *child = kv_new(&tm->m.cfg, 4, grown);
    sp = (SeqInput){tok[0], 2, grown, 0, NULL};
    ck_assert_int_eq(transformer_forward(t, &sp, 1, err, sizeof err), 0);
    sp = (SeqInput){tok[0], 2, child, 1, got[0]};
    ck_assert_int_eq(transformer_forward(t, &sp, 1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "prefix"));
    kv_free(child); kv_free(grown);
    for (int i = 0; i < 2; i++) kv_free(kv[i]);
    kv_free(p2); kv_free(p1);
    transformer_free(t);
    free_model(tm);
}
END_TEST

/* View segments (kv_new_view): B reads a block computed earlier and the
 * positions A computes in the same batch; both equal running alone. */
START_TEST(test_view_segments) {
    TestModel *tm = make_model(2, 4, 1, 1, 1);
    set_variant(tm, _i);
    Transformer *t = transformer_new(&tm->m, 2);
    int V = tm->m.cfg.vocab_size;
    int a[30], b[35];
    rand_tokens(a, 30, V);
    memcpy(b, a, sizeof(int) * 20);   /* B = A's first 20 tokens, then its own */
    rand_tokens(b + 20, 15, V);
    char err[200] = "";
    KVCache *blk = kv_new(&tm->m.cfg, 8, NULL);      /* positions [0, 8), computed before */
    SeqInput sp = {a, 8, blk, 0, NULL};
    ck_assert_msg(transformer_forward(t, &sp, 1, err, sizeof err) == 0, "%s", err);
    KVSegment first = {blk->k, blk->v, 8, blk->capacity};
    KVCache *ka = kv_new_view(&tm->m.cfg, 22, &first, 1);
    ck_assert_ptr_nonnull(ka);
    KVSegment bview[2] = {first, {ka->k, ka->v, 12, ka->capacity}};  /* A's positions [8, 20) */
    KVCache *kb = kv_new_view(&tm->m.cfg, 15, bview, 2);
    ck_assert_ptr_nonnull(kb);
    ck_assert_int_eq(kv_len(kb), 20);
    float got[2][97], want[2][97];
    SeqInput s[2] = {{a + 8, 22, ka, 1, got[0]}, {b + 20, 15, kb, 1, got[1]}};
    ck_assert_msg(transformer_forward(t, s, 2, err, sizeof err) == 0, "%s", err);
    run_alone(t, &tm->m, a, 30, 1, want[0]);
    run_alone(t, &tm->m, b, 35, 1, want[1]);
    for (int i = 0; i < 2; i++)
        ck_assert_msg(rel_err(got[i], want[i], V) < 1e-5, "seq %d: rel err %g", i, rel_err(got[i], want[i], V));
    /* malformed views are refused */
    KVSegment bad = {blk->k, blk->v, 9, 8};
    ck_assert_ptr_null(kv_new_view(&tm->m.cfg, 4, &bad, 1));
    ck_assert_ptr_null(kv_new_view(&tm->m.cfg, 256, &first, 1));  /* past max_pos (256) */
    kv_free(kb);
    kv_free(ka);
    kv_free(blk);
    transformer_free(t);
    free_model(tm);
}
END_TEST

START_TEST(test_decode_steps) {
    /* prefill 10, then 1 token at a time (M = 1 GEMMs, sup path) == prefill 16 */
    TestModel *tm = make_model(2, 4, 2, 0, 1);
    set_variant(tm, _i);
    Transformer *t = transformer_new(&tm->m, 2);
    int V = tm->m.cfg.vocab_size, tok[16];
    rand_tokens(tok, 16, V);
    KVCache *kv = kv_new(&tm->m.cfg, 16, NULL);
    float got[97], want[97];
    char err[200] = "";
    SeqInput s = {tok, 10, kv, 0, NULL};
    ck_assert_int_eq(transformer_forward(t, &s, 1, err, sizeof err), 0);
    for (int i = 10; i < 16; i++) {
        s = (SeqInput){tok + i, 1, kv, 1, got};
        ck_assert_msg(transformer_forward(t, &s, 1, err, sizeof err) == 0, "%s", err);
    }
    run_alone(t, &tm->m, tok, 16, 1, want);
    ck_assert_msg(rel_err(got, want, V) < 1e-5, "%s/%s decode rel err %g", VARIANT(_i), rel_err(got, want, V));
    /* truncate and redo the last 3 steps: same answer */
    kv_truncate(kv, 13);
    s = (SeqInput){tok + 13, 3, kv, 1, got};
    ck_assert_int_eq(transformer_forward(t, &s, 1, err, sizeof err), 0);
    ck_assert_msg(rel_err(got, want, V) < 1e-5, "%s/%s redo", VARIANT(_i));
    kv_free(kv);
    transformer_free(t);
    free_model(tm);
}
END_TEST

START_TEST(test_errors) {
    TestModel *tm = make_model(1, 4, 2, 0, 0);
    Transformer *t = transformer_new(&tm->m, 1);
    int tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float out[97];
    char err[200] = "";
    KVCache *kv = kv_new(&tm->m.cfg, 4, NULL), *ok = kv_new(&tm->m.cfg, 8, NULL);
    /* cache full: nothing is run, the good sequence in the batch is untouched too */
    SeqInput s[2] = {{tok, 8, ok, 1, out}, {tok, 5, kv, 1, out}};
    ck_assert_int_eq(transformer_forward(t, s, 2, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "full") != NULL, "message: %s", err);
    ck_assert_int_eq(kv_len(ok), 0);
    ck_assert_int_eq(kv_len(kv), 0);
    /* bad token ids */
    int bad[2][3] = {{1, -1, 2}, {1, 97, 2}};
    for (int i = 0; i < 2; i++) {
        err[0] = 0;
        SeqInput b = {bad[i], 3, kv, 1, out};
        ck_assert_int_eq(transformer_forward(t, &b, 1, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "token id") != NULL, "message: %s", err);
        ck_assert_int_eq(kv_len(kv), 0);
    }
    /* the same cache twice in one batch */
    SeqInput twice[2] = {{tok, 2, kv, 0, NULL}, {tok, 2, kv, 0, NULL}};
    ck_assert_int_eq(transformer_forward(t, twice, 2, err, sizeof err), -1);
    /* more logits than tokens, missing output buffer */
    SeqInput more = {tok, 2, kv, 3, out}, nobuf = {tok, 2, kv, 1, NULL};
    ck_assert_int_eq(transformer_forward(t, &more, 1, err, sizeof err), -1);
    ck_assert_int_eq(transformer_forward(t, &nobuf, 1, err, sizeof err), -1);
    /* exactly full is fine, then one more is refused */
    SeqInput fill = {tok, 4, kv, 1, out};
    ck_assert_int_eq(transformer_forward(t, &fill, 1, err, sizeof err), 0);
    SeqInput over = {tok, 1, kv, 1, out};
    ck_assert_int_eq(transformer_forward(t, &over, 1, err, sizeof err), -1);
    ck_assert_int_eq(kv_len(kv), 4);
    /* cache larger than the model's positions; wrong model shape */
    ck_assert_ptr_null(kv_new(&tm->m.cfg, 257, NULL));
    ck_assert_ptr_null(kv_new(&tm->m.cfg, -1, NULL));
    TestModel *other = make_model(2, 4, 2, 0, 0);
    ck_assert_ptr_null(kv_new(&other->m.cfg, 4, kv));
    KVCache *okv = kv_new(&other->m.cfg, 4, NULL);
    SeqInput wrong = {tok, 1, okv, 0, NULL};
    ck_assert_int_eq(transformer_forward(t, &wrong, 1, err, sizeof err), -1);
    kv_free(okv);
    free_model(other);
    kv_free(kv); kv_free(ok);
    transformer_free(t);
    free_model(tm);
}
END_TEST

int main(void) {
    blis_setup(2, getenv("GUARDD_TEST_BLIS_ARCH"));
    Suite *s = suite_create("transformer");
    TCase *tc = check_case(s, "core", 120);
    tcase_add_test(tc, test_fast_expf);
    tcase_add_test(tc, test_attend_head);
    tcase_add_test(tc, test_rmsnorm);
    tcase_add_test(tc, test_rope_freqs_llama3);
    tcase_add_test(tc, test_rope_apply);
    tcase_add_test(tc, test_gemm);
    tcase_add_test(tc, test_blis_arch);
    tcase_add_test(tc, test_vs_reference);
    tcase_add_loop_test(tc, test_batched_equals_alone, 0, N_VARIANTS);
    tcase_add_loop_test(tc, test_prefix_reuse, 0, N_VARIANTS);
    tcase_add_loop_test(tc, test_view_segments, 0, N_VARIANTS);
    tcase_add_loop_test(tc, test_decode_steps, 0, N_VARIANTS);
    tcase_add_test(tc, test_errors);
    return check_run(s);
}
