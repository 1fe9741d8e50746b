/* wkernels_i8.c - int8-precision products: 9- or 10-bit weights x 12-bit
 * activations in exact integers (contract: wkernels_i8.h).
 *
 * One driver for every family: W rows are split over threads in blocks;
 * each block is unpacked once into int16 (2^B·hi + lo, zero-padded to a
 * multiple of 32 columns) in a per-thread buffer that stays in L2, then
 * every row of X runs past it in tiles. Each family only supplies the
 * unpacking and the tile; the integer sums cannot differ, and the float
 * epilogue is one shared function. AVX-512 and AVX2 code is compiled for its
 * instruction set with target attributes (the build targets baseline
 * x86-64) and only called when the CPU has it (weights.c checks).
 */
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "wkernels_i8.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define SMALL_M_ROWS 16          /* W rows per block when M <= 16: work split finely */
#define BLOCK_BYTES (256u << 10) /* unpacked block size for large M (L2) */

/* The float epilogue of every family: not inlined, so no caller's target
 * can contract it into an FMA differently from another's. */
__attribute__((noinline)) static void store_sums(const int64_t *s, int cnt, float sx,
                                                 const float *sw, float *y, int accumulate) {
    for (int j = 0; j < cnt; j++) {
        float v = (float)s[j] * (sx * sw[j]);
        y[j] = accumulate ? y[j] + v : v;
    }
}

/* Arguments shared by the block functions. */
typedef struct {
    int M, K, Kp, ldx, ldy, accumulate, B;
    const int16_t *X;
    const float *sx, *sw;
    const int8_t *hi;
    const uint32_t *lo;
    float *Y;
} Job;

/* Pointers to rows r..r+3 of A [*, ld]; rows past cnt repeat row r
 * (computed, never stored), so tiles always have four rows. */
#define FOUR_ROWS(p, A, r, cnt, ld) \
    for (int j_ = 0; j_ < 4; j_++) (p)[j_] = (A) + (size_t)((r) + (j_ < (cnt) ? j_ : 0)) * (ld)

/* ---- generic ---------------------------------------------------------- */

static void unpack_generic(const Job *j, int n0, int nb, int16_t *wb) {
    for (int r = 0; r < nb; r++) {
        int16_t *o = wb + (size_t)r * j->Kp;
        for (int k = 0; k < j->K; k++) o[k] = (int16_t)wk_i8_weight(j->hi, j->lo, j->B, j->K, n0 + r, k);
        for (int k = j->K; k < j->Kp; k++) o[k] = 0;
    }
}

/* 32-element partial sums in int32 (at most 32 · 2047 · 511), then int64. */
static int64_t dot_generic(const int16_t *x, const int16_t *w, int Kp) {
    int64_t s = 0;
    for (int k = 0; k < Kp; k += 32) {
        int32_t a = 0;
        for (int i = 0; i < 32; i++) a += (int32_t)x[k + i] * (int32_t)w[k + i];
        s += a;
    }
    return s;
}

static void block_generic(const Job *j, int n0, int n1, int16_t *wb) {
    unpack_generic(j, n0, n1 - n0, wb);
    for (int m = 0; m < j->M; m++) {
        const int16_t *x = j->X + (size_t)m * j->ldx;
        for (int n = n0; n < n1; n += 4) {
            int cnt = n1 - n < 4 ? n1 - n : 4;
            int64_t s[4];
            for (int c = 0; c < cnt; c++) s[c] = dot_generic(x, wb + (size_t)(n - n0 + c) * j->Kp, j->Kp);
            store_sums(s, cnt, j->sx[m], j->sw + n, j->Y + (size_t)m * j->ldy + n, j->accumulate);
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* ---- AVX2: vpmaddwd ----------------------------------------------------- */

#define TAVX2 "avx2"

__attribute__((target(TAVX2)))
static void unpack_avx2(const Job *j, int n0, int nb, int16_t *wb) {
    int words = WK_I8_LO_WORDS(j->K), B = j->B;
    const __m256i sel = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096,
                                          8192, 16384, (short)-32768);
    for (int r = 0; r < nb; r++) {
        const int8_t *h = j->hi + (size_t)(n0 + r) * j->K;
        const uint32_t *l = j->lo + (size_t)(n0 + r) * B * words;
        int16_t *o = wb + (size_t)r * j->Kp;
        for (int k = 0; k < j->Kp; k += 16) {
            __m128i b;
            if (j->K - k >= 16) b = _mm_loadu_si128((const __m128i *)(h + k));
            else {
                int8_t t[16] = {0};
                if (j->K > k) memcpy(t, h + k, (size_t)(j->K - k));
                b = _mm_loadu_si128((const __m128i *)t);
            }
            __m256i w = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), B);
            for (int p = 0; p < B; p++) {   /* bit set: -1 << p, subtracted */
                short bits = (short)(uint16_t)(l[p * words + k / 32] >> (k % 32));
                __m256i set = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16(bits), sel), sel);
                w = _mm256_sub_epi16(w, _mm256_slli_epi16(set, p));
            }
            _mm256_storeu_si256((__m256i *)(o + k), w);
        }
    }
}

__attribute__((target(TAVX2))) static inline int64_t sum64_avx2(__m256i v) {
    __m256i a = _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)),
                                 _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
    __m128i s = _mm_add_epi64(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    return _mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1);
}

/* MR (1 or 2) rows of X against four unpacked W rows. */
__attribute__((target(TAVX2), always_inline)) static inline void
tile_avx2(int MR, const int16_t *const x[2], const int16_t *const w[4], int Kp, int64_t out[2][4]) {
    __m256i a[2][4];
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 4; c++) a[i][c] = _mm256_setzero_si256();
    for (int k = 0; k < Kp; k += 16) {
        __m256i wv[4];
        for (int c = 0; c < 4; c++) wv[c] = _mm256_loadu_si256((const __m256i *)(w[c] + k));
        for (int i = 0; i < MR; i++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x[i] + k));
            for (int c = 0; c < 4; c++) a[i][c] = _mm256_add_epi32(a[i][c], _mm256_madd_epi16(xv, wv[c]));
        }
    }
    for (int i = 0; i < MR; i++)
        for (int c = 0; c < 4; c++) out[i][c] = sum64_avx2(a[i][c]);
}

__attribute__((target(TAVX2)))
static void block_avx2(const Job *j, int n0, int n1, int16_t *wb) {
    unpack_avx2(j, n0, n1 - n0, wb);
    for (int m = 0; m < j->M; m += 2) {
        int mc = j->M - m < 2 ? j->M - m : 2;
        const int16_t *x[2] = {j->X + (size_t)m * j->ldx, j->X + (size_t)(m + mc - 1) * j->ldx};
        for (int n = n0; n < n1; n += 4) {
            int nc = n1 - n < 4 ? n1 - n : 4;
            const int16_t *w[4];
            FOUR_ROWS(w, wb, n - n0, nc, j->Kp);
            int64_t out[2][4];
            if (mc == 2) tile_avx2(2, x, w, j->Kp, out);
            else tile_avx2(1, x, w, j->Kp, out);
            for (int i = 0; i < mc; i++)
                store_sums(out[i], nc, j->sx[m + i], j->sw + n, j->Y + (size_t)(m + i) * j->ldy + n,
                           j->accumulate);
        }
    }
}

/* ---- AVX-512: vpdpwssd (AVX512_VNNI) ------------------------------------ */

#define T512VNNI "avx512f,avx512bw,avx512vl,avx512vnni"

__attribute__((target(T512VNNI)))
static void unpack_avx512(const Job *j, int n0, int nb, int16_t *wb) {
    int words = WK_I8_LO_WORDS(j->K), B = j->B;
    for (int r = 0; r < nb; r++) {
        const int8_t *h = j->hi + (size_t)(n0 + r) * j->K;
        const uint32_t *l = j->lo + (size_t)(n0 + r) * B * words;
        int16_t *o = wb + (size_t)r * j->Kp;
        for (int k = 0; k < j->Kp; k += 32) {
            _mm_prefetch((const char *)(h + k) + 1024, _MM_HINT_T0);
            __m256i hv = j->K - k >= 32 ? _mm256_loadu_si256((const __m256i *)(h + k))
                                        : _mm256_maskz_loadu_epi8((__mmask32)((1u << (j->K - k)) - 1), h + k);
            __m512i w = _mm512_slli_epi16(_mm512_cvtepi8_epi16(hv), B);
            for (int p = 0; p < B; p++)
                w = _mm512_mask_add_epi16(w, (__mmask32)l[p * words + k / 32], w, _mm512_set1_epi16((short)(1 << p)));
            _mm512_storeu_si512(o + k, w);
        }
    }
}

__attribute__((target(T512VNNI))) static inline int64_t sum64_avx512(__m512i v) {
    __m512i a = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)),
                                 _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
    return _mm512_reduce_add_epi64(a);
}

/* acc += pairwise products of x and w: vpdpwssd through asm with the
 * accumulator tied, because GCC's intrinsic copies every accumulator once
 * per use in this loop (measured: 32 register moves per 16 products). */
#define DPWSSD(acc, x, w) __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

/* Four rows of X against four unpacked W rows (rows repeated past M or N
 * are computed and not stored: one fully unrolled tile keeps all sixteen
 * accumulators in registers). */
__attribute__((target(T512VNNI)))
static inline void tile_avx512(const int16_t *const x[4], const int16_t *const w[4], int Kp,
                               int64_t out[4][4]) {
    __m512i a[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[i][c] = _mm512_setzero_si512();
    for (int k = 0; k < Kp; k += 32) {
        __m512i wv[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) wv[c] = _mm512_loadu_si512(w[c] + k);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m512i xv = _mm512_loadu_si512(x[i] + k);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) DPWSSD(a[i][c], xv, wv[c]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) out[i][c] = sum64_avx512(a[i][c]);
}

__attribute__((target(T512VNNI)))
static void block_avx512(const Job *j, int n0, int n1, int16_t *wb) {
    unpack_avx512(j, n0, n1 - n0, wb);
    for (int m = 0; m < j->M; m += 4) {
        int mc = j->M - m < 4 ? j->M - m : 4;
        const int16_t *x[4];
        FOUR_ROWS(x, j->X, m, mc, j->ldx);
        for (int n = n0; n < n1; n += 4) {
            int nc = n1 - n < 4 ? n1 - n : 4;
            const int16_t *w[4];
            FOUR_ROWS(w, wb, n - n0, nc, j->Kp);
            int64_t out[4][4];
            tile_avx512(x, w, j->Kp, out);
            for (int i = 0; i < mc; i++)
                store_sums(out[i], nc, j->sx[m + i], j->sw + n, j->Y + (size_t)(m + i) * j->ldy + n,
                           j->accumulate);
        }
    }
}
#endif

/* ---- per-thread scratch ---------------------------------------------------- */

/* Buffers each thread keeps for its next calls: allocated per call, every
 * call faulted its pages in again (glibc hands freed blocks of this size
 * back to the system), which cost decode steps more than the products. */
typedef struct {
    void *p;
    size_t cap;
} Scratch;

enum { SLOT_X, SLOT_BLOCK, N_SLOTS };
static pthread_key_t g_keys[N_SLOTS];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_keys_ok;

static void scratch_free(void *v) {
    Scratch *s = v;
    free(s->p);
    free(s);
}

static void make_keys(void) {
    g_keys_ok = 1;
    for (int i = 0; i < N_SLOTS; i++)
        if (pthread_key_create(&g_keys[i], scratch_free)) g_keys_ok = 0;
}

/* At least `bytes`, 64-byte aligned, contents undefined; NULL if no memory. */
static void *scratch(int slot, size_t bytes) {
    pthread_once(&g_once, make_keys);
    if (!g_keys_ok) return NULL;
    Scratch *s = pthread_getspecific(g_keys[slot]);
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return NULL;
        if (pthread_setspecific(g_keys[slot], s)) {
            free(s);
            return NULL;
        }
    }
    if (s->cap < bytes) {
        size_t cap = (bytes + 63) & ~(size_t)63;
        void *p = aligned_alloc(64, cap);
        if (!p) return NULL;
        free(s->p);
        s->p = p;
        s->cap = cap;
    }
    return s->p;
}

/* No block buffer: the same integers straight from hi and lo. */
static void block_direct(const Job *j, int n0, int n1) {
    for (int n = n0; n < n1; n++)
        for (int m = 0; m < j->M; m++) {
            const int16_t *x = j->X + (size_t)m * j->ldx;
            int64_t s = 0;
            for (int k = 0; k < j->K; k++) s += (int64_t)x[k] * wk_i8_weight(j->hi, j->lo, j->B, j->K, n, k);
            store_sums(&s, 1, j->sx[m], j->sw + n, j->Y + (size_t)m * j->ldy + n, j->accumulate);
        }
}

/* ---- driver --------------------------------------------------------------- */


static void run_block(WkI8Family fam, const Job *j, int n0, int n1, int16_t *wb) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (fam == WK_I8_AVX512) { block_avx512(j, n0, n1, wb); return; }
    if (fam == WK_I8_AVX2) { block_avx2(j, n0, n1, wb); return; }
#endif
    (void)fam;
    block_generic(j, n0, n1, wb);
}

/* x / scale rounded to the nearest integer (ties to even, as lrintf, but
 * inline: adding and removing 1.5 · 2^23 leaves the rounded value for
 * |t| < 2^22, and without -ffast-math the compiler keeps both steps; lrintf
 * was a libm call per element here), clamped first. */
static inline int16_t quantize_one(float x, float inv) {
    const float big = 12582912.0f;
    float t = x * inv;
    t = t < WK_I8_ACT_MAX ? t : WK_I8_ACT_MAX;     /* NaN: the top level */
    t = t > -WK_I8_ACT_MAX ? t : -WK_I8_ACT_MAX;
    return (int16_t)(int)((t + big) - big);
}

static float act_scale(const float *x, int K) {
    float amax = 0;
    for (int k = 0; k < K; k++) {
        float a = fabsf(x[k]);
        if (a > amax) amax = a;
    }
    return amax > 0 ? amax / (float)WK_I8_ACT_MAX : 1.0f;
}

float wk_i8_quantize_act(const float *x, int K, int16_t *out, int ldx) {
    float scale = act_scale(x, K), inv = 1.0f / scale;
    for (int k = 0; k < K; k++) out[k] = quantize_one(x[k], inv);
    for (int k = K; k < ldx; k++) out[k] = 0;
    return scale;
}

/* No memory for buffers: the same integers, one weight at a time. */
static void matmul_unbuffered(int M, int N, int K, const float *X, int ldx, const int8_t *hi,
                              const uint32_t *lo, int B, const float *sw, float *Y, int ldy,
                              int accumulate, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int m = 0; m < M; m++) {
        const float *x = X + (size_t)m * ldx;
        float sx = act_scale(x, K), inv = 1.0f / sx;
        for (int n = 0; n < N; n++) {
            int64_t s = 0;
            for (int k = 0; k < K; k++) s += (int64_t)quantize_one(x[k], inv) * wk_i8_weight(hi, lo, B, K, n, k);
            store_sums(&s, 1, sx, sw + n, Y + (size_t)m * ldy + n, accumulate);
        }
    }
}

/* The products for X already quantized ([M, Kp] int16, scales sx). */
static void products(WkI8Family fam, const Job *j, int N, int threads) {
    /* small M: 16 rows per block, so the rows split evenly over threads;
     * large M: blocks of ~256 KiB, re-read from L2 for every 4 rows of X */
    int per = SMALL_M_ROWS;
    if (j->M > 16) {
        per = (int)(BLOCK_BYTES / (2u * (unsigned)j->Kp)) & ~3;
        per = per < SMALL_M_ROWS ? SMALL_M_ROWS : per > 64 ? 64 : per;
    }
    int nt = (N + per - 1) / per;
    if (threads > nt) threads = nt;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < nt; t++) {
        int n0 = t * per, n1 = n0 + per < N ? n0 + per : N;
        int16_t *wb = scratch(SLOT_BLOCK, sizeof(int16_t) * (size_t)per * j->Kp);
        if (wb) run_block(fam, j, n0, n1, wb);
        else block_direct(j, n0, n1);
    }
}

#define CHUNK_ROWS 256   /* rows of X quantized at once: bounds the int16 copy */

void wk_i8_matmul(WkI8Family fam, int M, int N, int K, const float *X, int ldx, const int8_t *hi,
                  const uint32_t *lo, int B, const float *sw, float *Y, int ldy, int accumulate,
                  int threads) {
    if (M <= 0 || N <= 0) return;
    if (threads < 1) threads = 1;
    if (K > WK_I8_MAX_K(B)) fam = WK_I8_GENERIC;   /* 32-bit lanes could overflow */
    int Kp = WK_I8_PAD(K), rows = M < CHUNK_ROWS ? M : CHUNK_ROWS;
    size_t xbytes = sizeof(int16_t) * (size_t)rows * Kp;   /* a multiple of 64 */
    int16_t *xq = scratch(SLOT_X, xbytes + sizeof(float) * (size_t)rows);
    if (!xq) {
        matmul_unbuffered(M, N, K, X, ldx, hi, lo, B, sw, Y, ldy, accumulate, threads);
        return;
    }
    float *sx = (float *)(void *)((char *)xq + xbytes);
    for (int m0 = 0; m0 < M; m0 += rows) {
        int mb = M - m0 < rows ? M - m0 : rows;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int m = 0; m < mb; m++)
            sx[m] = wk_i8_quantize_act(X + (size_t)(m0 + m) * ldx, K, xq + (size_t)m * Kp, Kp);
        Job j = {mb, K, Kp, Kp, ldy, accumulate, B, xq, sx, sw, hi, lo, Y + (size_t)m0 * ldy};
        products(fam, &j, N, threads);
    }
}
