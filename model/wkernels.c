/* wkernels.c - streaming small-M kernels for bf16 weights
 * (contract: wkernels.h). Each family is an inner function compiled for its
 * instruction set (target attribute; the build targets baseline x86-64) over
 * a range of weight rows; the OpenMP split is done by a plain wrapper. */
#include <string.h>
#include "bf16.h"
#include "ops.h"
#include "wkernels.h"
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#define ROWS_PER_TASK 16   /* weight rows per scheduling unit (4 groups of 4) */

/* Runs call over [0, N) in chunks [n0, n1) of `per` rows on `threads` threads. */
#define SPLIT_ROWS_BY(N, per, threads, call)                                   \
    do {                                                                       \
        int per_ = (per), nt_ = ((N) + per_ - 1) / per_;                       \
        _Pragma("omp parallel for schedule(static) num_threads(threads)")      \
        for (int t_ = 0; t_ < nt_; t_++) {                                     \
            int n0 = t_ * per_;                                                \
            int n1 = n0 + per_ < (N) ? n0 + per_ : (N);                        \
            call;                                                              \
        }                                                                      \
    } while (0)
#define SPLIT_ROWS(N, threads, call) SPLIT_ROWS_BY(N, ROWS_PER_TASK, threads, call)

static inline void store4(float *y, const float *acc, int cnt, int accumulate) {
    for (int j = 0; j < cnt; j++) y[j] = accumulate ? y[j] + acc[j] : acc[j];
}

/* ---- generic ---------------------------------------------------------- */

/* Pointers to weight rows n..n+3 of W [*, K]; rows past cnt repeat row n
 * (computed, never stored) so every kernel runs full groups of four. */
#define FOUR_ROWS(w, W, n, cnt, K) \
    for (int j_ = 0; j_ < 4; j_++) (w)[j_] = (W) + (size_t)((n) + (j_ < (cnt) ? j_ : 0)) * (K)

static inline float widen_bf16(uint16_t v, float s) { (void)s; return bf16_to_f32(v); }

/* Y (+)= X·Wᵀ with f32 X and W of type T widened by CONV, each finished dot
 * product times the row's scale if one is given. */
#define WIDEN_ROWS(ATTR, name, T, CONV)                                                    \
    ATTR static void name(int n0, int n1, int M, int K, const float *X, int ldx,     \
                                const T *W, const float *scale, float *Y, int ldy,         \
                                int accumulate) {                                          \
        for (int n = n0; n < n1; n += 4) {                                                 \
            int cnt = n1 - n < 4 ? n1 - n : 4;                                             \
            const T *w[4];                                                                 \
            FOUR_ROWS(w, W, n, cnt, K);                                                    \
            for (int m = 0; m < M; m++) {                                                  \
                const float *x = X + (size_t)m * ldx;                                      \
                float a0 = 0, a1 = 0, a2 = 0, a3 = 0;                                      \
                _Pragma("omp simd reduction(+ : a0, a1, a2, a3)")                          \
                for (int k = 0; k < K; k++) {                                              \
                    a0 += x[k] * CONV(w[0][k], 0);                                         \
                    a1 += x[k] * CONV(w[1][k], 0);                                         \
                    a2 += x[k] * CONV(w[2][k], 0);                                         \
                    a3 += x[k] * CONV(w[3][k], 0);                                         \
                }                                                                          \
                float acc[4] = {a0, a1, a2, a3};                                           \
                for (int j = 0; scale && j < cnt; j++) acc[j] *= scale[n + j];             \
                store4(Y + (size_t)m * ldy + n, acc, cnt, accumulate);                     \
            }                                                                              \
        }                                                                                  \
    }

/* bf16: the portable path, baseline code only */
WIDEN_ROWS(, bf16_widen_rows_generic, uint16_t, widen_bf16)

void wk_bf16_widen_generic(int M, int N, int K, const float *X, int ldx, const uint16_t *W,
                           float *Y, int ldy, int accumulate, int threads) {
    SPLIT_ROWS(N, threads, bf16_widen_rows_generic(n0, n1, M, K, X, ldx, W, NULL, Y, ldy, accumulate));
}

/* ---- bf16 activations split in two ------------------------------------ */

int wk_bf16_split_ld(int K) { return 2 * ((K + 31) & ~31); }

/* f32_to_bf16 (bf16.h) on the bits: round to nearest even, NaN kept a
 * quiet NaN. The AVX-512 version below does the same with vectors. */
static inline uint32_t bf16_bits(uint32_t u) {
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, q = (u >> 16) | 0x40u;
    return (u & 0x7fffffffu) > 0x7f800000u ? q : r;
}

/* Blocks of 32 columns; x - hi is exact in f32. An inf or NaN x (hi's
 * exponent all ones) gets lo = 0, so inf stays inf instead of inf - inf. */
static void split_blocks_generic(const float *x, int nb, uint16_t *out) {
    for (int b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        uint16_t *o = out + 64 * b;
        for (int j = 0; j < 32; j++) {
            uint32_t u, hi, lo, d;
            float h, r;
            memcpy(&u, xb + j, 4);
            hi = bf16_bits(u);
            d = hi << 16;
            memcpy(&h, &d, 4);
            r = xb[j] - h;
            memcpy(&d, &r, 4);
            lo = (hi & 0x7f80u) == 0x7f80u ? 0 : bf16_bits(d);
            o[j] = (uint16_t)hi;
            o[32 + j] = (uint16_t)lo;
        }
    }
}

static void split_blocks_avx512(const float *x, int nb, uint16_t *out);

void wk_bf16_split_row(const float *x, int K, uint16_t *out) {
    /* both give the same bits (check_weights) */
    void (*blocks)(const float *, int, uint16_t *) =
        wk_have_avx512bf16() ? split_blocks_avx512 : split_blocks_generic;
    int full = K / 32, rest = K - 32 * full;
    blocks(x, full, out);
    if (rest) {   /* the last block through a zero-padded copy */
        float tail[32] = {0};
        memcpy(tail, x + 32 * full, sizeof(float) * (size_t)rest);
        blocks(tail, 1, out + 64 * full);
    }
}

/* Features masked by wk_mask_features (tests). */
enum { MASK_BF16 = 1, MASK_VNNI512 = 2, MASK_AVXVNNI = 4, MASK_AVX2 = 8 };
static _Atomic int g_mask;

int wk_mask_features(const char *names) {
    static const char *const known[] = {"avx512bf16", "avx512vnni", "avxvnni", "avx2"};
    int mask = 0;
    for (const char *p = names ? names : ""; *p;) {
        size_t n = strcspn(p, ",");
        int i = 0;
        while (i < 4 && !(strlen(known[i]) == n && !strncmp(p, known[i], n))) i++;
        if (i == 4) return -1;
        mask |= 1 << i;
        p += n + (p[n] == ',');
    }
    g_mask = mask;
    return 0;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* ---- AVX2 ------------------------------------------------------------- */

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static inline __m256 widen8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

__attribute__((target("avx2,fma")))
static void bf16_widen_rows_avx2(int n0, int n1, int M, int K, const float *X, int ldx,
                                 const uint16_t *W, float *Y, int ldy, int accumulate) {
    for (int n = n0; n < n1; n += 4) {
        int cnt = n1 - n < 4 ? n1 - n : 4;
        const uint16_t *w[4];
        FOUR_ROWS(w, W, n, cnt, K);
        for (int m = 0; m < M; m++) {
            const float *x = X + (size_t)m * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int k = 0;
            for (; k + 8 <= K; k += 8) {
                __m256 xv = _mm256_loadu_ps(x + k);
                a0 = _mm256_fmadd_ps(xv, widen8(w[0] + k), a0);
                a1 = _mm256_fmadd_ps(xv, widen8(w[1] + k), a1);
                a2 = _mm256_fmadd_ps(xv, widen8(w[2] + k), a2);
                a3 = _mm256_fmadd_ps(xv, widen8(w[3] + k), a3);
            }
            float acc[4] = {hsum256(a0), hsum256(a1), hsum256(a2), hsum256(a3)};
            for (; k < K; k++)
                for (int j = 0; j < 4; j++) acc[j] += x[k] * bf16_to_f32(w[j][k]);
            store4(Y + (size_t)m * ldy + n, acc, cnt, accumulate);
        }
    }
}

void wk_bf16_widen_avx2(int M, int N, int K, const float *X, int ldx, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads) {
    SPLIT_ROWS(N, threads, bf16_widen_rows_avx2(n0, n1, M, K, X, ldx, W, Y, ldy, accumulate));
}

/* ---- AVX-512 ------------------------------------------------------------ */

#define T512BF "avx512f,avx512bw,avx512vl,avx512bf16"
#define BH(v) ((__m512bh)(v))

/* bf16_bits() on 16 lanes. */
__attribute__((target(T512BF), always_inline))
static inline __m512i bf16_bits16(__m512i u) {
    __m512i one = _mm512_set1_epi32(1), top = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(top, one))), 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(top, _mm512_set1_epi32(0x40)));
}

__attribute__((target(T512BF)))
static void split_blocks_avx512(const float *x, int nb, uint16_t *out) {
    __m512i expo = _mm512_set1_epi32(0x7f80);
    for (int b = 0; b < nb; b++)
        for (int h = 0; h < 2; h++) {
            __m512 xv = _mm512_loadu_ps(x + 32 * b + 16 * h);
            __m512i hi = bf16_bits16(_mm512_castps_si512(xv));
            __m512 d = _mm512_sub_ps(xv, _mm512_castsi512_ps(_mm512_slli_epi32(hi, 16)));
            __mmask16 special = _mm512_cmpeq_epi32_mask(_mm512_and_si512(hi, expo), expo);
            __m512i lo = _mm512_maskz_mov_epi32((__mmask16)~special, bf16_bits16(_mm512_castps_si512(d)));
            _mm256_storeu_si256((__m256i *)(out + 64 * b + 16 * h), _mm512_cvtepi32_epi16(hi));
            _mm256_storeu_si256((__m256i *)(out + 64 * b + 32 + 16 * h), _mm512_cvtepi32_epi16(lo));
        }
}

/* One step of 32 columns of a tile: hi then lo of each X row (kx: the
 * block's offset in the split row) against the 4 W vectors. */
__attribute__((target(T512BF), always_inline))
static inline void bf16_step(__m512 a[4][4], const __m512i wv[4], const uint16_t *const x[4],
                             int kx) {
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512i xh = _mm512_loadu_si512(x[i] + kx), xl = _mm512_loadu_si512(x[i] + kx + 32);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            a[i][j] = _mm512_dpbf16_ps(a[i][j], BH(xh), BH(wv[j]));
            a[i][j] = _mm512_dpbf16_ps(a[i][j], BH(xl), BH(wv[j]));
        }
    }
}

/* One tile: up to 4 rows of X (hi/lo split, wkernels.h) against up to 4
 * rows of W over all of K. Each output is 16 lanes accumulated over k in
 * steps of 32 (hi, then lo, into the same accumulator) and then summed
 * across lanes, whatever the tile, so a result never depends on M or on
 * which rows share its tile: batched and one-at-a-time runs agree bit for
 * bit (activations are rounded here, so an upstream difference in the last
 * bit could flip a rounding). X rows are zero-padded to a multiple of 32
 * columns: only W's last block needs a mask. */
__attribute__((target(T512BF)))
static inline void bf16_tile(const uint16_t *const x[4], const uint16_t *const w[4], int K, int kt,
                             __mmask32 tail, float out[4][4]) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) a[i][j] = _mm512_setzero_ps();
    __m512i wv[4];
    for (int k = 0; k < kt; k += 32) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) wv[j] = _mm512_loadu_si512(w[j] + k);
        bf16_step(a, wv, x, 2 * k);
    }
    if (kt < K) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) wv[j] = _mm512_maskz_loadu_epi16(tail, w[j] + kt);
        bf16_step(a, wv, x, 2 * kt);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) out[i][j] = _mm512_reduce_add_ps(a[i][j]);
}

/* W rows [n0, n1) against every row of X, 4 x 4 tiles; the W rows of one
 * call (<= ROWS_PER_TASK of them) stay in L1/L2 while X streams past. */
__attribute__((target(T512BF)))
static void bf16_dot_rows_avx512(int n0, int n1, int M, int K, const uint16_t *X,
                                 const uint16_t *W, float *Y, int ldy, int accumulate) {
    int kt = K & ~31, ldx = wk_bf16_split_ld(K);
    __mmask32 tail = (__mmask32)((1ull << (K - kt)) - 1);
    for (int m = 0; m < M; m += 4) {
        int mc = M - m < 4 ? M - m : 4;
        const uint16_t *x[4];
        FOUR_ROWS(x, X, m, mc, ldx);
        for (int n = n0; n < n1; n += 4) {
            int nc = n1 - n < 4 ? n1 - n : 4;
            const uint16_t *w[4];
            FOUR_ROWS(w, W, n, nc, K);
            float out[4][4];
            bf16_tile(x, w, K, kt, tail, out);
            for (int i = 0; i < mc; i++) store4(Y + (size_t)(m + i) * ldy + n, out[i], nc, accumulate);
        }
    }
}

void wk_bf16_dot_avx512(int M, int N, int K, const uint16_t *X, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads) {
    /* many rows of X: W blocks of ~256 KiB, re-read from L2 per 4 rows of X */
    int per = ROWS_PER_TASK;
    if (M > 16) {
        per = (int)((256u << 10) / (2u * (unsigned)K)) & ~3;
        per = per < ROWS_PER_TASK ? ROWS_PER_TASK : per > 64 ? 64 : per;
    }
    SPLIT_ROWS_BY(N, per, threads, bf16_dot_rows_avx512(n0, n1, M, K, X, W, Y, ldy, accumulate));
}

int wk_have_avx512bf16(void) {
    if (g_mask & MASK_BF16) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}
int wk_have_avx512vnni(void) {
    if (g_mask & MASK_VNNI512) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}
int wk_have_avx2(void) {
    if (g_mask & MASK_AVX2) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
/* AVX-VNNI: the VEX-encoded vpdpwssd on ymm, cpuid leaf 7 subleaf 1 EAX
 * bit 4, read directly: clang 14 (the fuzz build) has no "avxvnni" for
 * __builtin_cpu_supports. wk_have_avx2 covers the OS saving ymm state. */
int wk_have_avxvnni(void) {
    unsigned a, b, c, d;
    if ((g_mask & MASK_AVXVNNI) || !wk_have_avx2() || __get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 1, a, b, c, d);
    (void)b; (void)c; (void)d;
    return (a >> 4) & 1;
}
#else
void wk_bf16_widen_avx2(int M, int N, int K, const float *X, int ldx, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads) {
    wk_bf16_widen_generic(M, N, K, X, ldx, W, Y, ldy, accumulate, threads);
}
void wk_bf16_dot_avx512(int M, int N, int K, const uint16_t *X, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads) {
    (void)M; (void)N; (void)K; (void)X; (void)W; (void)Y; (void)ldy; (void)accumulate; (void)threads;
}
static void split_blocks_avx512(const float *x, int nb, uint16_t *out) {
    split_blocks_generic(x, nb, out);
}
int wk_have_avx512bf16(void) { return 0; }
int wk_have_avx512vnni(void) { return 0; }
int wk_have_avx2(void) { return 0; }
int wk_have_avxvnni(void) { return 0; }
#endif
