/* weights.c - stored forms of weight matrices and their product
 * (contract: weights.h). bf16: small M goes to the streaming kernels
 * (wkernels.c), large M to the bf16 tile kernel or to BLIS on f32 tiles
 * widened from bf16. int8: the integer kernels of wkernels_i8.c, every M.
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
 * int8 no longer runs on oneDNN: its integer matmul (2.6) takes 8-bit
 * activations, which alone cost 2.8e-2 of the logit range on the 1B
 * (weights.h). The int16 tile kernel measured as fast as the bf16 one
 * (X[256, 8192]·W[8192, 2048], one thread, busy machine: 128 vs 147 ms).
 */
#include <math.h>
#include <omp.h>
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
