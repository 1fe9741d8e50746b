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
#include "wkernels_i8.h"

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

/* int8: vpdpwssd with AVX512_VNNI, vpmaddwd on any AVX2 CPU. */
static WkI8Family i8_family(void) {
    switch (family()) {
    case FAM_AVX512: return wk_have_avx512vnni() ? WK_I8_AVX512 : WK_I8_AVX2;
    case FAM_AVX2: return WK_I8_AVX2;
    default: return WK_I8_GENERIC;
    }
}

const char *wm_kernels(Precision p) {
    switch (precision_resolve(p)) {
    case PREC_BF16:
        if (bf16_dot()) return "avx512bf16-split";
        return family() == FAM_AVX2 ? "avx2-widen+blis" : "generic-widen+blis";
    case PREC_INT8: {
        static const char *const names[] = {"generic", "avx2", "avx512vnni"};
        return names[i8_family()];
    }
    default:
        return "blis";
    }
}

WeightMatrix wm_f32(float *w, int rows, int cols) {
    WeightMatrix m = {.prec = PREC_F32, .rows = rows, .cols = cols, .f32 = w};
    return m;
}

size_t wm_bytes(Precision p, size_t rows, size_t cols, int lo_bits) {
    switch (precision_resolve(p)) {
    case PREC_BF16: return rows * cols * 2;
    case PREC_INT8:
        return rows * cols + rows * ((size_t)wm_lo_words((int)cols, lo_bits) * sizeof(uint32_t) + sizeof(float));
    default: return rows * cols * 4;
    }
}

void wm_round_bf16(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}

int wm_lo_words(int k, int lo_bits) { return lo_bits * WK_I8_LO_WORDS(k); }

float wm_quantize_row(const float *src, int k, int lo_bits, int8_t *q, uint32_t *lo) {
    float amax = 0;
    for (int i = 0; i < k; i++) {
        float a = fabsf(src[i]);
        if (a > amax) amax = a;
    }
    int vmax = WK_I8_W_MAX(lo_bits), words = WK_I8_LO_WORDS(k);
    float scale = amax > 0 ? amax / (float)vmax : 1.0f, inv = 1.0f / scale;
    memset(lo, 0, sizeof(uint32_t) * (size_t)wm_lo_words(k, lo_bits));
    const float big = 12582912.0f;   /* rounds to nearest even, inline (as wkernels_i8.c) */
    for (int i = 0; i < k; i++) {
        float t = src[i] * inv;
        t = t < (float)vmax ? t : (float)vmax;
        t = t > (float)-vmax ? t : (float)-vmax;
        long v = (long)((t + big) - big);
        long h = v >= 0 ? v >> lo_bits : -((-v + (1L << lo_bits) - 1) >> lo_bits);  /* floor */
        q[i] = (int8_t)h;                         /* -128..127 */
        for (int p = 0; p < lo_bits; p++)
            lo[p * words + i / 32] |= (uint32_t)(((v - h * (1L << lo_bits)) >> p) & 1) << (i % 32);
    }
    return scale;
}

void wm_row(const WeightMatrix *w, int r, float *out) {
    size_t K = (size_t)w->cols, off = (size_t)r * K;
    switch (w->prec) {
    case PREC_BF16:
        for (size_t k = 0; k < K; k++) out[k] = bf16_to_f32(w->bf16[off + k]);
        break;
    case PREC_INT8:
        for (size_t k = 0; k < K; k++)
            out[k] = (float)wk_i8_weight(w->q, w->lo, w->lo_bits, (int)K, r, (int)k) * w->scale[r];
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


void wm_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
               int accumulate, int threads) {
    if (M <= 0 || w->rows <= 0) return;
    if (threads <= 0) threads = blis_threads();
    switch (w->prec) {
    case PREC_BF16: bf16_matmul(w, M, X, ldx, Y, ldy, accumulate, threads); break;
    case PREC_INT8:
        wk_i8_matmul(i8_family(), M, w->rows, w->cols, X, ldx, w->q, w->lo, w->lo_bits, w->scale,
                     Y, ldy, accumulate, threads);
        break;
    default: gemm_xwt(M, w->rows, w->cols, X, ldx, w->f32, w->cols, Y, ldy, accumulate, threads);
    }
}
