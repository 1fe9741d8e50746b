/* weights.c - stored forms of weight matrices and their product
 * (contract: weights.h). Small M goes to the streaming kernels (wkernels.c);
 * large M to the bf16 tile kernel, to oneDNN (int8 u8 x s8 with VNNI) or to
 * BLIS on f32 tiles widened from bf16 or int8.
 *
 * bf16 with bf16 dot products runs on this module's own 4 x 4 tile kernel
 * for every M rather than on oneDNN's bf16 matmul. oneDNN was ~10-20% faster
 * at M >= 64 (single thread, this machine) with activations rounded to bf16,
 * but its summation order changes with M, and a rounding flipped by a
 * last-bit difference upstream then made a sequence's logits depend on what
 * else was in its batch (7.7e-4 of the logit range). The kernel now also
 * takes each activation's lo part (wkernels.h), which one oneDNN bf16
 * matmul cannot: that would be two products, or a second weight copy.
 *
 * Every bf16 product gets the lo part: measured on the full-shape 1B fixture
 * against f32 (4 x 64 tokens), hi alone everywhere gave 3.9e-3 of the logit
 * range, hi + lo everywhere 6.5e-6, and hi alone in a single matrix kind
 * (the rest split): qkv 2.8e-3, o 1.7e-3, gate/up 1.9e-3, down 1.2e-3,
 * lm_head 1.0e-3; gate/up and down together 2.1e-3. Only down (28% of a
 * prefill's products) could go without, and there the lo part costs nothing
 * measurable (kernel time with / without it 0.95..1.05, one thread, CPU
 * time, X[1024, 8192]·W[8192, 2048]): at K = 8192 the tile kernel is bound
 * by memory traffic, not by vdpbf16ps. Elsewhere it costs 1.1..1.35x.
 *
 * oneDNN (int8) runs on the checkpoint's own layout (W [N, K] read as a K x N
 * matrix with strides {1, K}): measured here, its brgemm kernels are as fast
 * on it as on their own blocked layout at M = 64..1024, and keeping one
 * layout lets the streaming kernels read the same bytes. Primitives are made
 * per call (oneDNN keeps its own primitive cache).
 */
#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bf16.h"
#include "gemm.h"
#include "weights.h"
#include "wkernels.h"
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#define STREAM_MAX_M 16     /* as gemm.c: streaming kernels up to here */
#define WIDEN_TILE 256      /* bf16 rows widened per BLIS call */

typedef enum { FAM_GENERIC = 0, FAM_AVX2, FAM_AVX512 } Family;

static const char *const family_names[] = {"generic", "avx2", "avx512"};
static int g_family = -1;           /* -1: not chosen yet */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;

static Family best_family(void) {
    if (wk_have_avx512bf16() || wk_have_avx512vnni()) return FAM_AVX512;
    if (wk_have_avx2()) return FAM_AVX2;
    return FAM_GENERIC;
}

static int family_by_name(const char *s) {
    if (!s || !*s || !strcmp(s, "auto")) return (int)best_family();
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, family_names[i])) {
            int best = (int)best_family();
            return i < best ? i : best;
        }
    return -1;
}

int wm_set_kernels(const char *family) {
    int f = family_by_name(family);
    if (f < 0) return -1;
    pthread_mutex_lock(&g_mu);
    g_family = f;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static Family family(void) {
    pthread_mutex_lock(&g_mu);
    if (g_family < 0) {
        const char *env = getenv("GUARDD_KERNELS");
        int f = family_by_name(env);
        if (f < 0) {
            fprintf(stderr, "weights: unknown GUARDD_KERNELS='%.20s' (auto, avx512, avx2, generic); "
                    "using auto\n", env);
            f = (int)best_family();
        }
        g_family = f;
    }
    int f = g_family;
    pthread_mutex_unlock(&g_mu);
    return (Family)f;
}

/* Which path each precision takes in the current family. */
static int bf16_dot(void) { return family() == FAM_AVX512 && wk_have_avx512bf16(); }
static int i8_vnni(void) { return family() == FAM_AVX512 && wk_have_avx512vnni(); }
/* u8 x s8 without VNNI saturates 16-bit pair sums (oneDNN's AVX2 kernels
 * too): there int8 weights are widened to f32 instead (weight-only int8). */
static int i8_widen(void) { return family() >= FAM_AVX2 && !i8_vnni(); }

const char *wm_kernels(Precision p) {
    switch (precision_resolve(p)) {
    case PREC_BF16:
        if (bf16_dot()) return "avx512bf16-split";
        return family() == FAM_AVX2 ? "avx2-widen+blis" : "generic-widen+blis";
    case PREC_INT8:
        if (i8_vnni()) return "avx512vnni+onednn";
        return i8_widen() ? "avx2-widen+blis" : "generic";
    default:
        return "blis";
    }
}

WeightMatrix wm_f32(float *w, int rows, int cols) {
    WeightMatrix m = {.prec = PREC_F32, .rows = rows, .cols = cols, .f32 = w};
    return m;
}

size_t wm_bytes(Precision p, size_t rows, size_t cols) {
    switch (precision_resolve(p)) {
    case PREC_BF16: return rows * cols * 2;
    case PREC_INT8: return rows * cols + rows * (sizeof(float) + sizeof(int32_t));
    default: return rows * cols * 4;
    }
}

void wm_round_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

/* SSE2 (baseline x86-64) where available, the same arithmetic as the scalar
 * loops to the bit: max over |x| ignoring NaN (maxps returns its second
 * operand unless the first is greater, as the scalar comparison does), then
 * x * inv clamped to [-127, 127] (maxps sends NaN to -127, where lrintf's
 * out-of-range result was clamped) and rounded by cvtps2dq in the current
 * rounding mode, as lrintf rounds. A 1B model has 1.5e9 weights: the scalar
 * loops (lrintf is a libm call) took most of an int8 load. */
float wm_quantize_row(const float *src, int k, int8_t *q, int32_t *sum) {
    float amax = 0;
    int i = 0;
#if defined(__x86_64__)
    const __m128 nosign = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 mx = _mm_setzero_ps();
    for (; i + 4 <= k; i += 4) mx = _mm_max_ps(_mm_and_ps(_mm_loadu_ps(src + i), nosign), mx);
    float m4[4];
    _mm_storeu_ps(m4, mx);
    for (int j = 0; j < 4; j++)
        if (m4[j] > amax) amax = m4[j];
#endif
    for (; i < k; i++) {
        float a = fabsf(src[i]);
        if (a > amax) amax = a;
    }
    float scale = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / scale;
    int32_t s = 0;
    i = 0;
#if defined(__x86_64__)
    const __m128 vinv = _mm_set1_ps(inv), lo = _mm_set1_ps(-127.0f), hi = _mm_set1_ps(127.0f);
    __m128i acc = _mm_setzero_si128();
    for (; i + 16 <= k; i += 16) {
        __m128i v[4];
        for (int j = 0; j < 4; j++) {
            __m128 x = _mm_mul_ps(_mm_loadu_ps(src + i + 4 * j), vinv);
            v[j] = _mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(x, lo), hi));
            acc = _mm_add_epi32(acc, v[j]);
        }
        __m128i b = _mm_packs_epi16(_mm_packs_epi32(v[0], v[1]), _mm_packs_epi32(v[2], v[3]));
        _mm_storeu_si128((__m128i *)(void *)(q + i), b);
    }
    int32_t s4[4];
    _mm_storeu_si128((__m128i *)(void *)s4, acc);
    s = s4[0] + s4[1] + s4[2] + s4[3];
#endif
    for (; i < k; i++) {
        long v = lrintf(src[i] * inv);
        v = v > 127 ? 127 : (v < -127 ? -127 : v);
        q[i] = (int8_t)v;
        s += (int32_t)v;
    }
    *sum = s;
    return scale;
}

void wm_row(const WeightMatrix *w, int r, float *out) {
    size_t K = (size_t)w->cols, off = (size_t)r * K;
    switch (w->prec) {
    case PREC_BF16:
        for (size_t k = 0; k < K; k++) out[k] = bf16_to_f32(w->bf16[off + k]);
        break;
    case PREC_INT8:
        for (size_t k = 0; k < K; k++) out[k] = (float)w->q[off + k] * w->scale[r];
        break;
    default:
        memcpy(out, w->f32 + off, K * sizeof(float));
    }
}

/* ---- oneDNN ------------------------------------------------------------- */

/* Engine and stream, made once. */
static int dnnl_ready(void) {
    pthread_mutex_lock(&g_mu);
    if (!g_engine && dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) g_engine = NULL;
    if (g_engine && !g_stream &&
        dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success)
        g_stream = NULL;
    int ok = g_engine && g_stream;
    pthread_mutex_unlock(&g_mu);
    return ok;
}

/* dst (+)= src·Wᵀ on oneDNN: src [M, K] contiguous, W [N, K], dst at ldd.
 * Returns 0, or -1 if oneDNN has no implementation (caller falls back). */
static int onednn_mm(int M, int N, int K, dnnl_data_type_t st, const void *src,
                       dnnl_data_type_t wt, const void *W, dnnl_data_type_t dt, void *dst, int ldd,
                       int accumulate, int threads) {
    if (!dnnl_ready()) return -1;
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {M, K}, as = {K, 1}, bd = {K, N}, bs = {1, K}, cd = {M, N}, cs = {ldd, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    int rc = -1;
    if (dnnl_memory_desc_init_by_strides(&a, 2, ad, st, as) || dnnl_memory_desc_init_by_strides(&b, 2, bd, wt, bs) ||
        dnnl_memory_desc_init_by_strides(&c, 2, cd, dt, cs) || dnnl_matmul_desc_init(&md, &a, &b, NULL, &c))
        return -1;
    if (dnnl_primitive_attr_create(&attr)) return -1;
    if (accumulate) {
        if (dnnl_post_ops_create(&po) || dnnl_post_ops_append_sum(po, 1.0f) ||
            dnnl_primitive_attr_set_post_ops(attr, po))
            goto out;
    }
    if (dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL) || dnnl_primitive_create(&p, pd))
        goto out;
    if (dnnl_memory_create(&ma, &a, g_engine, (void *)src) || dnnl_memory_create(&mb, &b, g_engine, (void *)W) ||
        dnnl_memory_create(&mc, &c, g_engine, dst))
        goto out;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    omp_set_num_threads(threads);
    if (dnnl_primitive_execute(p, g_stream, 3, args) || dnnl_stream_wait(g_stream)) goto out;
    rc = 0;
out:
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    if (p) dnnl_primitive_destroy(p);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* ---- bf16 ------------------------------------------------------------- */

/* BLIS on f32 tiles widened from bf16: memory stays halved, speed ~f32. */
static void bf16_widen_blis(const WeightMatrix *w, int M, const float *X, int ldx, float *Y,
                            int ldy, int accumulate, int threads) {
    int K = w->cols, N = w->rows;
    float *tile = malloc(sizeof(float) * (size_t)WIDEN_TILE * K);
    if (!tile) {   /* no room for a tile: the streaming kernel needs none */
        wk_bf16_widen_generic(M, N, K, X, ldx, w->bf16, Y, ldy, accumulate, threads);
        return;
    }
    for (int n0 = 0; n0 < N; n0 += WIDEN_TILE) {
        int nb = N - n0 < WIDEN_TILE ? N - n0 : WIDEN_TILE;
        const uint16_t *src = w->bf16 + (size_t)n0 * K;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int r = 0; r < nb; r++)
            for (int k = 0; k < K; k++) tile[(size_t)r * K + k] = bf16_to_f32(src[(size_t)r * K + k]);
        gemm_xwt(M, nb, K, X, ldx, tile, K, Y + n0, ldy, accumulate, threads);
    }
    free(tile);
}

static void bf16_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
                        int accumulate, int threads) {
    int K = w->cols, N = w->rows;
    if (!bf16_dot()) {
        if (M > STREAM_MAX_M) bf16_widen_blis(w, M, X, ldx, Y, ldy, accumulate, threads);
        else if (family() == FAM_AVX2)
            wk_bf16_widen_avx2(M, N, K, X, ldx, w->bf16, Y, ldy, accumulate, threads);
        else wk_bf16_widen_generic(M, N, K, X, ldx, w->bf16, Y, ldy, accumulate, threads);
        return;
    }
    int ldx2 = wk_bf16_split_ld(K);
    uint16_t *xs = malloc(sizeof(uint16_t) * (size_t)M * ldx2);
    if (!xs) {
        bf16_widen_blis(w, M, X, ldx, Y, ldy, accumulate, threads);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int m = 0; m < M; m++) wk_bf16_split_row(X + (size_t)m * ldx, K, xs + (size_t)m * ldx2);
    wk_bf16_dot_avx512(M, N, K, xs, w->bf16, Y, ldy, accumulate, threads);
    free(xs);
}

/* ---- int8 ------------------------------------------------------------- */

/* Per-token symmetric quantization, stored as u8 = q + 128. */
static float quantize_act(const float *x, int K, uint8_t *out) {
    float amax = 0;
    for (int k = 0; k < K; k++) {
        float a = fabsf(x[k]);
        if (a > amax) amax = a;
    }
    float scale = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / scale;
    for (int k = 0; k < K; k++) {
        long v = lrintf(x[k] * inv);
        v = v > 127 ? 127 : (v < -127 ? -127 : v);
        out[k] = (uint8_t)(v + 128);
    }
    return scale;
}

static void i8_products(int M, int N, int K, const uint8_t *xq, const int8_t *W, int32_t *S,
                        int threads) {
    if (M > STREAM_MAX_M && i8_vnni() &&
        !onednn_mm(M, N, K, dnnl_u8, xq, dnnl_s8, W, dnnl_s32, S, N, 0, threads))
        return;
    if (i8_vnni()) wk_i8_vnni(M, N, K, xq, W, S, N, threads);
    else wk_i8_generic(M, N, K, xq, W, S, N, threads);
}

/* Weight-only int8: f32 activations, weights dequantized in registers
 * (small M) or into 256-row f32 tiles for BLIS. */
static void i8_widen_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y,
                            int ldy, int accumulate, int threads) {
    int K = w->cols, N = w->rows;
    float *tile = M > STREAM_MAX_M ? malloc(sizeof(float) * (size_t)WIDEN_TILE * K) : NULL;
    if (!tile) {
        wk_i8_widen(M, N, K, X, ldx, w->q, w->scale, Y, ldy, accumulate, threads);
        return;
    }
    for (int n0 = 0; n0 < N; n0 += WIDEN_TILE) {
        int nb = N - n0 < WIDEN_TILE ? N - n0 : WIDEN_TILE;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int r = 0; r < nb; r++) {
            const int8_t *q = w->q + (size_t)(n0 + r) * K;
            float s = w->scale[n0 + r], *t = tile + (size_t)r * K;
            for (int k = 0; k < K; k++) t[k] = (float)q[k] * s;
        }
        gemm_xwt(M, nb, K, X, ldx, tile, K, Y + n0, ldy, accumulate, threads);
    }
    free(tile);
}

/* Rows quantized and multiplied at once: at most 256, and S (rows x N s32)
 * at most 32 MiB (the lm_head's N is the vocabulary). */
#define I8_CHUNK_ROWS 256
#define I8_CHUNK_BYTES ((size_t)32 << 20)

static void i8_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
                      int accumulate, int threads) {
    if (i8_widen()) {
        i8_widen_matmul(w, M, X, ldx, Y, ldy, accumulate, threads);
        return;
    }
    int K = w->cols, N = w->rows;
    size_t cap = I8_CHUNK_BYTES / (sizeof(int32_t) * (size_t)N);
    int rows = M < I8_CHUNK_ROWS ? M : I8_CHUNK_ROWS;
    if ((size_t)rows > cap) rows = cap > 16 ? (int)cap : 16;
    uint8_t *xq = malloc((size_t)rows * K);
    float *sx = malloc(sizeof(float) * (size_t)rows);
    int32_t *S = malloc(sizeof(int32_t) * (size_t)rows * N);
    if (!xq || !sx || !S) {   /* no room: weight-only int8 needs no buffer */
        free(xq);
        free(sx);
        free(S);
        i8_widen_matmul(w, M, X, ldx, Y, ldy, accumulate, threads);
        return;
    }
    for (int m0 = 0; m0 < M; m0 += rows) {
        int mb = M - m0 < rows ? M - m0 : rows;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int m = 0; m < mb; m++)
            sx[m] = quantize_act(X + (size_t)(m0 + m) * ldx, K, xq + (size_t)m * K);
        i8_products(mb, N, K, xq, w->q, S, threads);
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int m = 0; m < mb; m++) {
            float *y = Y + (size_t)(m0 + m) * ldy;
            const int32_t *s = S + (size_t)m * N;
            for (int n = 0; n < N; n++) {
                float v = (float)(s[n] - 128 * w->qsum[n]) * (sx[m] * w->scale[n]);
                y[n] = accumulate ? y[n] + v : v;
            }
        }
    }
    free(xq);
    free(sx);
    free(S);
}

void wm_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
               int accumulate, int threads) {
    if (M <= 0 || w->rows <= 0) return;
    if (threads <= 0) threads = blis_threads();
    switch (w->prec) {
    case PREC_BF16: bf16_matmul(w, M, X, ldx, Y, ldy, accumulate, threads); break;
    case PREC_INT8: i8_matmul(w, M, X, ldx, Y, ldy, accumulate, threads); break;
    default: gemm_xwt(M, w->rows, w->cols, X, ldx, w->f32, w->cols, Y, ldy, accumulate, threads);
    }
}
