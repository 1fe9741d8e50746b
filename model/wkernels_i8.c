/* wkernels_i8.c - int8-precision products: 9- or 10-bit weights x 12-bit
 * activations in exact integers (contract: wkernels_i8.h).
 *
 * One driver for every family: W rows are split over threads in blocks;
 * each block is unpacked once into int16 (2^B·hi + lo, zero-padded to a
 * multiple of 32 columns) in a per-thread buffer that stays in L2, then
 * every row of X runs past it in tiles. Each family only supplies the
 * unpacking, the tile and its vector copy of the float epilogue; the integer
 * sums cannot differ, and every epilogue takes the same rounded steps. The
 * AVX-VNNI family is the AVX2 one with vpdpwssd ymm in its tiles (asm).
 * AVX-512 and AVX2 code is compiled for its
 * instruction set with target attributes (the build targets baseline
 * x86-64) and only called when the CPU has it (weights.c checks).
 */
#include <math.h>
#include <stdint.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "wkernels_i8.h"
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define SMALL_M_ROWS 16          /* W rows per block when M <= 16: work split finely */
#define SMALL_M_ROWS_AVX512 64   /* AVX-512: its first group's unpacking is the one not overlapped */
/* Unpacked block size for large M (L2; Zen 3 has 512 KiB). Measured as
 * for CHUNK_ROWS below (Zen 4, AVX2 family, one thread, 256-row chunks):
 * 128 KiB (32 rows at K = 2048) 3-9 % slower, 512 KiB (32 rows of w2,
 * K = 8192) no faster on that matrix. */
#define BLOCK_BYTES (256u << 10)

/* The float epilogue, the reference every family's version equals bit for
 * bit: t = sx·sw[j], v = (float)S·t, y = y + v or v, each step rounded
 * once. Not inlined, so no caller's target can contract it into an FMA;
 * the generic family, block_direct and the unbuffered path use it, the
 * AVX2 and AVX-512 families their vector copies below (same steps, same
 * order, contraction off). */
__attribute__((noinline)) static void store_sums(const int64_t *s, int cnt, float sx,
                                                 const float *sw, float *y, int accumulate) {
    for (int j = 0; j < cnt; j++) {
        float v = (float)s[j] * (sx * sw[j]);
        y[j] = accumulate ? y[j] + v : v;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
/* int64 -> double without AVX512DQ: adding 2^52 + 2^51 to the integer's
 * bits and subtracting it as a double gives S exactly for |S| < 2^51. The
 * vector families only see K <= WK_I8_MAX_K(B) (wk_i8_matmul), where
 * |S| <= K · 2047 · WK_I8_W_MAX(B) < 2^16 · 2^11 · 2^8 = 2^35. S -> double
 * is exact, so double -> float rounds once, exactly as (float)S does (both
 * in the current rounding mode). */
#define I64_MAGIC 0x4338000000000000LL   /* the bits of 2^52 + 2^51 */
#define I64_MAGIC_D 6755399441055744.0   /* 2^52 + 2^51 */

/* AVX2 family: four sums at a time (AVX only, so no FMA can exist; the
 * attribute keeps it so if the target ever grows). */
__attribute__((target("avx2"), optimize("fp-contract=off"), noinline))
static void store_sums_avx2(const int64_t *s, int cnt, float sx, const float *sw, float *y,
                            int accumulate) {
    const __m256i magic = _mm256_set1_epi64x(I64_MAGIC);
    const __m256d magic_d = _mm256_set1_pd(I64_MAGIC_D);
    const __m128 vsx = _mm_set1_ps(sx);
    int j = 0;
    for (; j + 4 <= cnt; j += 4) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(s + j));
        __m256d d = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(q, magic)), magic_d);
        __m128 t = _mm_mul_ps(vsx, _mm_loadu_ps(sw + j));
        __m128 v = _mm_mul_ps(_mm256_cvtpd_ps(d), t);
        if (accumulate) v = _mm_add_ps(_mm_loadu_ps(y + j), v);
        _mm_storeu_ps(y + j, v);
    }
    for (; j < cnt; j++) {   /* tail: the reference formula */
        float v = (float)s[j] * (sx * sw[j]);
        y[j] = accumulate ? y[j] + v : v;
    }
}

/* The same from 32-bit sums (the AVX2 tiles when a row's whole sum fits:
 * a2_narrow), eight at a time: vcvtdq2ps rounds the integer once, as
 * (float)S does for the same value held in 64 bits. */
__attribute__((target("avx2"), optimize("fp-contract=off"), noinline))
static void store_sums32_avx2(const int32_t *s, int cnt, float sx, const float *sw, float *y,
                              int accumulate) {
    const __m256 vsx = _mm256_set1_ps(sx);
    int j = 0;
    for (; j + 8 <= cnt; j += 8) {
        __m256 f = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(const void *)(s + j)));
        __m256 v = _mm256_mul_ps(f, _mm256_mul_ps(vsx, _mm256_loadu_ps(sw + j)));
        if (accumulate) v = _mm256_add_ps(_mm256_loadu_ps(y + j), v);
        _mm256_storeu_ps(y + j, v);
    }
    for (; j < cnt; j++) {
        float v = (float)s[j] * (sx * sw[j]);
        y[j] = accumulate ? y[j] + v : v;
    }
}
#endif

/* ---- activation quantization ------------------------------------------
 *
 * Per row: scale = max|x| / 2047 (1 for a row of zeros), inv = 1 / scale,
 * q = round(clamp(x · inv, ±2047)). The scalar functions are the
 * reference; the AVX2 and AVX-512 copies below take the same steps on 8 or
 * 16 values at once and give the same int16 and scale bit for bit
 * (check_weights test_int8_quantize_act): the maximum of |x| is the same
 * value in any order (NaN never wins a comparison, in either form: maxps
 * returns its second operand, the running maximum, when one is NaN, as
 * `a > amax` keeps amax); scale and inv are computed once per row in scalar
 * code by both; x · inv, the clamps and the rounding are the same IEEE
 * operations in the same order, each in the current rounding mode and
 * under the same MXCSR (denormal flags included). */

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

static inline float scale_of(float amax) {
    return amax > 0 ? amax / (float)WK_I8_ACT_MAX : 1.0f;
}

static float act_scale(const float *x, int K) {
    float amax = 0;
    for (int k = 0; k < K; k++) {
        float a = fabsf(x[k]);
        if (a > amax) amax = a;
    }
    return scale_of(amax);
}

float wk_i8_quantize_act(const float *x, int K, int16_t *out, int ldx) {
    float scale = act_scale(x, K), inv = 1.0f / scale;
    for (int k = 0; k < K; k++) out[k] = quantize_one(x[k], inv);
    for (int k = K; k < ldx; k++) out[k] = 0;
    return scale;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define QBIG 12582912.0f   /* 1.5 · 2^23, as in quantize_one */

/* AVX2: max|x| in four accumulators (max is exact in any order), then 16
 * values per step: mulps, minps (t < top ? t : top, NaN -> top, as the
 * scalar clamp), maxps, + big - big, truncation, packed to int16. */
__attribute__((target("avx2"), optimize("fp-contract=off"), noinline))
static float quantize_act_avx2(const float *x, int K, int16_t *out, int ldx) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), absm), m0);
        m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k + 8), absm), m1);
        m2 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k + 16), absm), m2);
        m3 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k + 24), absm), m3);
    }
    for (; k + 8 <= K; k += 8) m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), absm), m0);
    m0 = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    float amax = _mm_cvtss_f32(h);
    for (; k < K; k++) {
        float a = fabsf(x[k]);
        if (a > amax) amax = a;
    }
    float scale = scale_of(amax), inv = 1.0f / scale;
    const __m256 vinv = _mm256_set1_ps(inv), top = _mm256_set1_ps(WK_I8_ACT_MAX),
                 bot = _mm256_set1_ps(-WK_I8_ACT_MAX), big = _mm256_set1_ps(QBIG);
#define Q8(p)                                                                                     \
    _mm256_cvttps_epi32(_mm256_sub_ps(                                                            \
        _mm256_add_ps(_mm256_max_ps(_mm256_min_ps(_mm256_mul_ps(_mm256_loadu_ps(p), vinv), top), bot), big), big))
    for (k = 0; k + 16 <= K; k += 16) {
        __m256i p = _mm256_packs_epi32(Q8(x + k), Q8(x + k + 8));   /* 0-3 8-11 4-7 12-15 */
        _mm256_storeu_si256((__m256i *)(void *)(out + k), _mm256_permute4x64_epi64(p, 0xd8));
    }
#undef Q8
    for (; k < K; k++) out[k] = quantize_one(x[k], inv);
    for (; k < ldx; k++) out[k] = 0;
    return scale;
}

/* AVX-512 (the family's target): the same steps 16 at a time, the tail
 * masked (masked-off lanes load 0, which cannot raise the maximum). */
__attribute__((target("avx512f,avx512bw,avx512vl"), optimize("fp-contract=off"), noinline))
static float quantize_act_avx512(const float *x, int K, int16_t *out, int ldx) {
    __m512 m0 = _mm512_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + k)), m0);
        m1 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + k + 16)), m1);
        m2 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + k + 32)), m2);
        m3 = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + k + 48)), m3);
    }
    for (; k < K; k += 16) {
        __mmask16 t = K - k >= 16 ? 0xffff : (__mmask16)((1u << (K - k)) - 1);
        m0 = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(t, x + k)), m0);
    }
    m0 = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
    __m256 h8 = _mm256_max_ps(_mm512_castps512_ps256(m0),
                              _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(m0), 1)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    float scale = scale_of(_mm_cvtss_f32(h)), inv = 1.0f / scale;
    const __m512 vinv = _mm512_set1_ps(inv), top = _mm512_set1_ps(WK_I8_ACT_MAX),
                 bot = _mm512_set1_ps(-WK_I8_ACT_MAX), big = _mm512_set1_ps(QBIG);
    int end = ldx > K ? ldx : K;
    for (k = 0; k < end; k += 16) {
        int n = K - k < 0 ? 0 : K - k;
        __mmask16 t = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
        __mmask16 st = end - k >= 16 ? 0xffff : (__mmask16)((1u << (end - k)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + k), vinv);
        v = _mm512_sub_ps(_mm512_add_ps(_mm512_max_ps(_mm512_min_ps(v, top), bot), big), big);
        __m512i q = _mm512_maskz_mov_epi32(t, _mm512_cvttps_epi32(v));   /* 0 past K */
        _mm256_mask_storeu_epi16(out + k, st, _mm512_cvtepi32_epi16(q));
    }
    return scale;
}
#endif

/* The row quantizer of a family: the scalar one for generic. */
static float quantize_row(WkI8Family fam, const float *x, int K, int16_t *out, int ldx) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (fam == WK_I8_AVX512) return quantize_act_avx512(x, K, out, ldx);
    if (fam == WK_I8_AVX2 || fam == WK_I8_AVXVNNI) return quantize_act_avx2(x, K, out, ldx);
#endif
    (void)fam;
    return wk_i8_quantize_act(x, K, out, ldx);
}

/* Arguments shared by the block functions. */
typedef struct {
    int M, K, Kp, ldx, ldy, accumulate, B;
    const int16_t *X;
    const float *sx, *sw;
    const int8_t *hi;
    const uint32_t *lo;
    float *Y;
    int N;   /* rows of W: how far a block may prefetch past its own */
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

/* The block is unpacked in panels of 16 W rows (output channels), each
 * panel pair-interleaved [Kp/2][16][2]: the 32-bit word at (k/2, c) holds
 * w[c, k] and w[c, k+1]. A tile broadcasts one such pair of an X row
 * (vpbroadcastd) and vpmaddwd's it against 8 channels at once, for 6 X rows
 * x 16 channels = 12 accumulators: 2 loads of W and 6 broadcasts per 12
 * vpmaddwd, and no horizontal sums (the dot-product layout needed 6 loads
 * per 8 and eight 64-bit reductions per tile). Each lane gathers every
 * product of its (row, channel), so K is cut into chunks a 32-bit lane holds
 * without overflow: at most 2047 · 511 · 2048 = 2,142,242,816 (B = 2) or
 * 2047 · 255 · 4096 = 2,138,030,080 (B = 1) < 2^31; chunks are summed in 64
 * bits, except where a row's whole sum fits 32 bits (a2_narrow): one chunk,
 * int32 sums. Only AVX2 instructions: this family must run on AVX2-only CPUs. */

#define TAVX2 "avx2"
#define A2_NR 16                       /* channels per panel (2 ymm) */
#define A2_MR 6                        /* X rows per tile */
#define A2_GROUP 64                    /* channels per store_sums call */
#define A2_LANE_K(B) (8192 >> (B))     /* products a 32-bit lane may gather */

/* 8 x 8 transpose of 32-bit elements: v[r] = pairs 0..7 of row r in, out
 * v[q] = pair q of rows 0..7. */
__attribute__((target(TAVX2), always_inline)) static inline void transpose8_avx2(__m256i v[8]) {
    __m256i t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
    }
#pragma GCC unroll 2
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* u[q] (q < 4): pairs q and q + 4 of rows 0-3; u[q + 4]: rows 4-7 */
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        v[q] = _mm256_permute2x128_si256(u[q], u[q + 4], 0x20);
        v[q + 4] = _mm256_permute2x128_si256(u[q], u[q + 4], 0x31);
    }
}

/* Bits 0, 2, .., 30 of each 32-bit lane to bits 0..15 and bits 1, 3, .., 31
 * to bits 16..31 (an unshuffle: four swap-by-mask rounds), so that shifting
 * right by j leaves the low bits of column pair j at bits 0 and 16: the two
 * int16 halves of that pair's 32-bit slot. */
__attribute__((target(TAVX2), always_inline)) static inline __m256i unshuffle_avx2(__m256i x) {
    static const int sh[4] = {1, 2, 4, 8};
    static const int mask[4] = {0x22222222, 0x0C0C0C0C, 0x00F000F0, 0x0000FF00};
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        __m256i t = _mm256_and_si256(_mm256_xor_si256(x, _mm256_srli_epi32(x, sh[r])), _mm256_set1_epi32(mask[r]));
        x = _mm256_xor_si256(_mm256_xor_si256(x, t), _mm256_slli_epi32(t, sh[r]));
    }
    return x;
}

/* Rows n0..n0+nb-1 into panels of A2_NR, every slot of the last panel
 * written (rows past nb repeat a row: computed, never stored). Per group of
 * 8 rows and 32 columns: the low-bit words of the 8 rows side by side,
 * unshuffled once; per 16 columns: the 8 rows' hi bytes widened, their
 * 32-bit pairs transposed, then 2^B·hi + lo on the transposed vectors
 * (lo from the unshuffled words with two vector ops per plane, instead of
 * expanding each row's bits separately). */
__attribute__((target(TAVX2), noinline))
static void unpack_avx2(const Job *j, int n0, int nb, int16_t *wb) {
    int K = j->K, B = j->B, words = WK_I8_LO_WORDS(K);
    const __m256i one = _mm256_set1_epi32(0x00010001);
    int rows = (nb + A2_NR - 1) / A2_NR * A2_NR;
    for (int r0 = 0; r0 < rows; r0 += 8) {
        const int8_t *h[8];
        const uint32_t *l[8];
        for (int i = 0; i < 8; i++) {
            int r = n0 + (r0 + i < nb ? r0 + i : nb - 1);
            h[i] = j->hi + (size_t)r * K;
            l[i] = j->lo + (size_t)r * B * words;
        }
        int16_t *o = wb + (size_t)(r0 / A2_NR) * A2_NR * j->Kp + (r0 % A2_NR) * 2;
        for (int k32 = 0; k32 < j->Kp; k32 += 32) {
            __m256i d[2];
            for (int p = 0; p < B; p++) {
                int w = p * words + k32 / 32;
                d[p] = unshuffle_avx2(_mm256_setr_epi32((int)l[0][w], (int)l[1][w], (int)l[2][w], (int)l[3][w],
                                                        (int)l[4][w], (int)l[5][w], (int)l[6][w], (int)l[7][w]));
            }
            /* the next 8 rows, a group ahead: a row is used 32 bytes
             * at a time, too slowly for the hardware to prefetch 8 rows */
            if (k32 % 64 == 0)
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) _mm_prefetch((const char *)(h[i] + k32) + 8 * (size_t)K, _MM_HINT_T0);
            if (k32 % 512 == 0)
                for (int i = 0; i < 8; i++)
                    for (int p = 0; p < B; p++)
                        _mm_prefetch((const char *)(l[i] + p * words + k32 / 32 + 8 * B * words), _MM_HINT_T0);
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) {
                int k = k32 + 16 * half;
                __m256i v[8];
                if (K - k >= 16)
#pragma GCC unroll 8
                    for (int i = 0; i < 8; i++) v[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(h[i] + k)));
                else
                    for (int i = 0; i < 8; i++) {
                        int8_t t[16] = {0};
                        if (K > k) memcpy(t, h[i] + k, (size_t)(K - k));
                        v[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)t));
                    }
                transpose8_avx2(v);
                __m256i dh[2];
                for (int p = 0; p < B; p++) dh[p] = half ? _mm256_srli_epi32(d[p], 8) : d[p];
                int16_t *dst = o + (size_t)(k / 2) * 2 * A2_NR;
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++) {
                    __m256i w = _mm256_slli_epi16(v[q], B);
                    for (int p = 0; p < B; p++)
                        w = _mm256_add_epi16(w, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi32(dh[p], q), one), p));
                    _mm256_store_si256((__m256i *)(dst + q * 2 * A2_NR), w);
                }
            }
        }
    }
}

/* acc + madd(x, w) in 32-bit lanes: vpmaddwd + vpaddd, or with vnni (a
 * constant in every caller) one VEX vpdpwssd, which sums the same two
 * products into the lane without saturating: the same exact integers. In
 * asm, so this AVX2-target code never needs the avxvnni target (the
 * intrinsic would refuse to inline); only the avxvnni family passes 1. */
__attribute__((target(TAVX2), always_inline)) static inline __m256i
madd_acc(int vnni, __m256i acc, __m256i x, __m256i w) {
    if (!vnni) return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
    __asm__("%{vex%} vpdpwssd %[w], %[x], %[a]" : [a] "+x"(acc) : [x] "x"(x), [w] "x"(w));
    return acc;
}

/* Whether a row's whole sum fits a 32-bit lane: K · 2047 · W_MAX(B) <
 * 2^31, K <= 2053 (B = 2) or 4114 (B = 1), every matrix whose K is the
 * model dimension (wqkv, wo, w13; not w2). Then a tile runs all of K in
 * one chunk and its lanes are the sums themselves: stored as int32 and
 * converted by store_sums32_avx2, with no 64-bit stage (measured: that
 * stage, its zeroing and the 4-wide conversion were ~7 % of a prefill's
 * products). */
static inline int a2_narrow(int K, int B) {
    return (int64_t)K * WK_I8_ACT_MAX * WK_I8_W_MAX(B) <= INT32_MAX;
}

/* A tile's 32-bit lane sums into s (row stride lds): narrow, stored as
 * they are (int32_t *s, the whole sums); otherwise added into its 64-bit
 * sums (int64_t *s, one chunk of K at a time). */
__attribute__((target(TAVX2), always_inline)) static inline void
flush_tile_avx2(int MR, int narrow, __m256i a[A2_MR][2], void *s, int lds) {
    if (narrow) {
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++)
            for (int h = 0; h < 2; h++)
                _mm256_storeu_si256((__m256i *)((int32_t *)s + (size_t)i * lds + h * 8), a[i][h]);
        return;
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        for (int h = 0; h < 2; h++) {
            __m256i *d = (__m256i *)((int64_t *)s + (size_t)i * lds + h * 8);
            _mm256_storeu_si256(d, _mm256_add_epi64(_mm256_loadu_si256(d),
                                                    _mm256_cvtepi32_epi64(_mm256_castsi256_si128(a[i][h]))));
            _mm256_storeu_si256(d + 1, _mm256_add_epi64(_mm256_loadu_si256(d + 1),
                                                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(a[i][h], 1))));
        }
}

/* s[i][0..15] (+)= Σ over pairs kp0..kp1-1 of X row i against one panel;
 * MR is a constant in every caller, so the accumulators stay in registers. */
__attribute__((target(TAVX2), always_inline)) static inline void
tile_avx2(int MR, int vnni, int narrow, const int16_t *const x[A2_MR], const int16_t *w, int kp0,
          int kp1, void *s, int lds) {
    __m256i a[A2_MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) a[i][0] = a[i][1] = _mm256_setzero_si256();
    for (int kp = kp0; kp < kp1; kp++) {
        __m256i w0 = _mm256_load_si256((const __m256i *)(w + (size_t)kp * 2 * A2_NR));
        __m256i w1 = _mm256_load_si256((const __m256i *)(w + (size_t)kp * 2 * A2_NR + A2_NR));
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            int32_t pair;
            memcpy(&pair, x[i] + 2 * kp, sizeof pair);
            __m256i xb = _mm256_set1_epi32(pair);
            a[i][0] = madd_acc(vnni, a[i][0], xb, w0);
            a[i][1] = madd_acc(vnni, a[i][1], xb, w1);
        }
    }
    flush_tile_avx2(MR, narrow, a, s, lds);
}

/* tile_avx2 for MR = 6 with the loop body in asm: GCC hoists all six
 * broadcasts ahead of the products and then spills accumulators (measured:
 * 8 stack reloads and stores per 12 vpmaddwd); here each broadcast is
 * consumed at once, so 12 accumulators + 2 W + 1 x + 1 product fit the 16
 * ymm registers. vnni (the avxvnni family): each vpmaddwd + vpaddd pair is
 * one VEX vpdpwssd (AVX-VNNI), same registers, same sums. */
__attribute__((target(TAVX2), always_inline)) static inline void
tile6_avx2(int vnni, int narrow, const int16_t *x0, long ldx, const int16_t *w, int kp0, int kp1,
           void *s, int lds) {
    __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
            a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const int16_t *wp = w + (size_t)kp0 * 2 * A2_NR;
    const int16_t *p = x0 + 2 * kp0, *q = p + 3 * ldx;   /* rows 0-2 and 3-5 */
    long ld = ldx * (long)sizeof(int16_t);
    for (int kp = kp0; kp < kp1; kp++, wp += 2 * A2_NR, p += 2, q += 2) {
#define A2_ROW(addr, a0, a1)                                \
        "vpbroadcastd " addr ", %%ymm14\n\t"                 \
        "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"             \
        "vpaddd %%ymm15, %[" #a0 "], %[" #a0 "]\n\t"          \
        "vpmaddwd %%ymm13, %%ymm14, %%ymm14\n\t"             \
        "vpaddd %%ymm14, %[" #a1 "], %[" #a1 "]\n\t"
#define A2_ROW_VNNI(addr, a0, a1)                           \
        "vpbroadcastd " addr ", %%ymm14\n\t"                 \
        "%{vex%} vpdpwssd %%ymm12, %%ymm14, %[" #a0 "]\n\t"  \
        "%{vex%} vpdpwssd %%ymm13, %%ymm14, %[" #a1 "]\n\t"
#define A2_TILE6(ROW)                                                                        \
        __asm__("vmovdqa (%[w]), %%ymm12\n\t"                                                \
                "vmovdqa 32(%[w]), %%ymm13\n\t"                                              \
                ROW("(%[p])", a00, a01) ROW("(%[p],%[ld],1)", a10, a11)                      \
                ROW("(%[p],%[ld],2)", a20, a21) ROW("(%[q])", a30, a31)                      \
                ROW("(%[q],%[ld],1)", a40, a41) ROW("(%[q],%[ld],2)", a50, a51)              \
                : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11),        \
                  [a20] "+x"(a20), [a21] "+x"(a21), [a30] "+x"(a30), [a31] "+x"(a31),        \
                  [a40] "+x"(a40), [a41] "+x"(a41), [a50] "+x"(a50), [a51] "+x"(a51)         \
                : [w] "r"(wp), [p] "r"(p), [q] "r"(q), [ld] "r"(ld)                          \
                : "xmm12", "xmm13", "xmm14", "xmm15", "memory")
        if (vnni) A2_TILE6(A2_ROW_VNNI);
        else A2_TILE6(A2_ROW);
#undef A2_TILE6
#undef A2_ROW_VNNI
#undef A2_ROW
    }
    __m256i a[A2_MR][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}, {a40, a41}, {a50, a51}};
    flush_tile_avx2(A2_MR, narrow, a, s, lds);
}

/* One tile of MR rows and one panel over all of K, chunk by chunk (narrow:
 * in one). */
__attribute__((target(TAVX2), always_inline)) static inline void
panel_avx2(int MR, int vnni, int narrow, const Job *j, const int16_t *const x[A2_MR], const int16_t *w,
           void *s, int lds) {
    int kpn = j->Kp / 2, chunk = narrow ? kpn : A2_LANE_K(j->B) / 2;
    for (int kp = 0; kp < kpn; kp += chunk) {
        int kp1 = kp + chunk < kpn ? kp + chunk : kpn;
        if (MR == A2_MR) tile6_avx2(vnni, narrow, x[0], j->ldx, w, kp, kp1, s, lds);
        else tile_avx2(MR, vnni, narrow, x, w, kp, kp1, s, lds);
    }
}

/* Tiles of A2_MR X rows against up to A2_GROUP channels (a group of
 * panels), then one store_sums call per row for the group: per panel, the
 * calls cost as much again as the conversion itself. vnni and narrow:
 * constants (block_avx2, block_avxvnni). */
__attribute__((target(TAVX2), always_inline)) static inline void
block_a2(int vnni, int narrow, const Job *j, int n0, int n1, int16_t *wb) {
    unpack_avx2(j, n0, n1 - n0, wb);
    for (int g0 = n0; g0 < n1; g0 += A2_GROUP) {
        int g1 = n1 - g0 < A2_GROUP ? n1 : g0 + A2_GROUP;
        for (int m = 0; m < j->M; m += A2_MR) {
            int mc = j->M - m < A2_MR ? j->M - m : A2_MR;
            const int16_t *x[A2_MR];
            for (int i = 0; i < A2_MR; i++) x[i] = j->X + (size_t)(m + (i < mc ? i : 0)) * j->ldx;
            union {
                int64_t w[A2_MR][A2_GROUP];   /* chunk sums added up */
                int32_t n[A2_MR][A2_GROUP];   /* narrow: each written once */
            } s __attribute__((aligned(32)));
            if (!narrow) memset(s.w, 0, sizeof s.w);
            for (int n = g0; n < g1; n += A2_NR) {
                const int16_t *w = wb + (size_t)(n - n0) * j->Kp;
                void *sp = narrow ? (void *)&s.n[0][n - g0] : (void *)&s.w[0][n - g0];
                switch (mc) {
                case 6: panel_avx2(6, vnni, narrow, j, x, w, sp, A2_GROUP); break;
                case 5: panel_avx2(5, vnni, narrow, j, x, w, sp, A2_GROUP); break;
                case 4: panel_avx2(4, vnni, narrow, j, x, w, sp, A2_GROUP); break;
                case 3: panel_avx2(3, vnni, narrow, j, x, w, sp, A2_GROUP); break;
                case 2: panel_avx2(2, vnni, narrow, j, x, w, sp, A2_GROUP); break;
                default: panel_avx2(1, vnni, narrow, j, x, w, sp, A2_GROUP); break;
                }
            }
            for (int i = 0; i < mc; i++) {
                float *y = j->Y + (size_t)(m + i) * j->ldy + g0;
                if (narrow) store_sums32_avx2(s.n[i], g1 - g0, j->sx[m + i], j->sw + g0, y, j->accumulate);
                else store_sums_avx2(s.w[i], g1 - g0, j->sx[m + i], j->sw + g0, y, j->accumulate);
            }
        }
    }
}

/* The AVX2 family: vpmaddwd + vpaddd, AVX2 only. */
__attribute__((target(TAVX2), noinline)) static void block_avx2(const Job *j, int n0, int n1, int16_t *wb) {
    if (a2_narrow(j->K, j->B)) block_a2(0, 1, j, n0, n1, wb);
    else block_a2(0, 0, j, n0, n1, wb);
}

/* ---- AVX-VNNI: the AVX2 tiles on vpdpwssd ymm ----------------------------- */

/* CPUs with AVX-VNNI but no AVX-512 (client cores since Alder Lake, E-core
 * servers): the AVX2 family's panels, unpacking and chunks of K, with one
 * VEX vpdpwssd per vpmaddwd + vpaddd (half the tile's uops). vpdpwssd, not
 * vpdpwssds: it wraps like vpaddd, and the chunks keep every lane below
 * 2^31 anyway, so the sums are the AVX2 family's to the bit. */
__attribute__((target(TAVX2 ",avxvnni"), noinline))
static void block_avxvnni(const Job *j, int n0, int n1, int16_t *wb) {
    if (a2_narrow(j->K, j->B)) block_a2(1, 1, j, n0, n1, wb);
    else block_a2(1, 0, j, n0, n1, wb);
}

/* ---- AVX-512: vpdpwssd (AVX512_VNNI) ------------------------------------ */

#define T512VNNI "avx512f,avx512bw,avx512vl,avx512vnni"

/* AVX-512 family: eight sums at a time, tails masked. With AVX512DQ
 * vcvtqq2ps converts as (float)S does; without it (the family does not
 * require DQ) the exact double route above. AVX-512 implies FMA: the
 * explicit-rounding multiply and add cannot be contracted into one. */
#define RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define STORE_SUMS_512(name, target_, CVT)                                                        \
    __attribute__((target(target_), optimize("fp-contract=off"), noinline)) static void name(     \
        const int64_t *s, int cnt, float sx, const float *sw, float *y, int accumulate) {         \
        const __m512 vsx = _mm512_set1_ps(sx);                                                    \
        for (int j = 0; j < cnt; j += 8) {                                                        \
            __mmask8 k = cnt - j >= 8 ? 0xff : (__mmask8)((1u << (cnt - j)) - 1);                 \
            __m512i q = _mm512_maskz_loadu_epi64(k, s + j);                                       \
            __m512 f = _mm512_castps256_ps512(CVT(q));                                            \
            __m512 t = _mm512_mul_round_ps(vsx, _mm512_castps256_ps512(_mm256_maskz_loadu_ps(k, sw + j)), RN); \
            __m512 v = _mm512_mul_round_ps(f, t, RN);                                             \
            if (accumulate)                                                                       \
                v = _mm512_add_round_ps(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(k, y + j)), v, RN); \
            _mm256_mask_storeu_ps(y + j, k, _mm512_castps512_ps256(v));                           \
        }                                                                                         \
    }
#define CVT_DQ(q) _mm512_cvtepi64_ps(q)
#define CVT_F(q)                                                                                  \
    _mm512_cvtpd_ps(_mm512_sub_pd(                                                                \
        _mm512_castsi512_pd(_mm512_add_epi64(q, _mm512_set1_epi64(I64_MAGIC))), _mm512_set1_pd(I64_MAGIC_D)))
STORE_SUMS_512(store_sums_512dq, T512VNNI ",avx512dq", CVT_DQ)
STORE_SUMS_512(store_sums_512f, T512VNNI, CVT_F)

static void store_sums_avx512(const int64_t *s, int cnt, float sx, const float *sw, float *y,
                              int accumulate) {
    if (__builtin_cpu_supports("avx512dq")) store_sums_512dq(s, cnt, sx, sw, y, accumulate);
    else store_sums_512f(s, cnt, sx, sw, y, accumulate);
}

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

/* The sixteen sums of a[i][c] in one vector, lane 4i + c, added in int32 by
 * a transposing tree (45 instructions, against ~8 for each sum in 64 bits).
 * Only when every partial sum fits: see narrow_sums(). */
__attribute__((target(T512VNNI), always_inline)) static inline __m512i
reduce16_i32(__m512i a[4][4]) {
    __m512i v[8], u[4], s[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {   /* per 128-bit lane: x0+x2, y0+y2, x1+x3, y1+y3 */
        __m512i x = a[i / 2][2 * (i % 2)], y = a[i / 2][2 * (i % 2) + 1];
        v[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)     /* per 128-bit lane: the lane's sums of a[i][0..3] */
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(v[2 * i], v[2 * i + 1]),
                                _mm512_unpackhi_epi64(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)     /* 128-bit lanes of u pairwise */
        s[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], 0x88),
                                _mm512_shuffle_i32x4(u[2 * i], u[2 * i + 1], 0xdd));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(s[0], s[1], 0x88), _mm512_shuffle_i32x4(s[0], s[1], 0xdd));
}

/* Whether every partial sum of a row's K products fits int32: K · 2047 ·
 * W_MAX(B) < 2^31 holds for K <= 2053 (B = 2) or 4114 (B = 1), i.e. every
 * matrix whose K is the model dimension. Otherwise lanes go to 64 bits
 * first (each 32-bit lane alone always fits: WK_I8_MAX_K). */
static inline int narrow_sums(int K, int B) {
    return (int64_t)K * WK_I8_ACT_MAX * WK_I8_W_MAX(B) <= INT32_MAX;
}

/* acc += pairwise products of x and w: vpdpwssd through asm with the
 * accumulator tied, because GCC's intrinsic copies every accumulator once
 * per use in this loop (measured: 32 register moves per 16 products). */
#define DPWSSD(acc, x, w) __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

/* ---- AVX-512, M <= 16 (decode steps): unpacking hidden under the products
 *
 * Unpacked separately, a group of W rows cost a third of the time of its
 * products and the two did not overlap (memory and the unpacking in one
 * burst, then the products). Here the work is a sequence of groups, four W
 * rows x at most KC_MAX columns, and while the tiles of one group run,
 * each 32 columns of a tile unpack 32 columns of the next group into the
 * other half of the buffer and prefetch the group after that: the
 * products, the unpacking and the memory traffic proceed together. Chunks
 * of KC_MAX columns keep every sum in int32 (narrow_sums) and a group's
 * int16 rows in L1; the chunks' sums are added in int64. */

#define KC_MAX 2048
/* Row stride of a group's unpacked rows: 64 bytes past a multiple of 4 KiB
 * (KC_MAX and the model's K are), so the rows, the X rows (also skewed:
 * wk_i8_matmul's ldq) and the unpacking's stores fall in different L1 sets
 * instead of one: at 4 KiB strides the 4 W rows, 4 X rows and the stores of
 * each 32-column step shared one 8-way set. Measured (Zen 4, one thread,
 * M = 16, ns per vpdpwssd): K = 8192 0.55 -> 0.40, K = 2048 0.38 -> 0.37. */
#define GROUP_LD(kcmax) ((kcmax) + 32)

/* 32 columns of one row from column k of h (rem columns of the row left
 * from h): 2^B·hi + lo as int16, zero past the row's end. */
__attribute__((target(T512VNNI), always_inline)) static inline void
unpack32(const int8_t *h, const uint32_t *l, int words, int rem, int k, int B, int16_t *o) {
    __m256i hv = rem - k >= 32 ? _mm256_loadu_si256((const __m256i *)(h + k))
                               : _mm256_maskz_loadu_epi8((__mmask32)((1u << (rem - k)) - 1), h + k);
    __m512i w = _mm512_slli_epi16(_mm512_cvtepi8_epi16(hv), B);
    w = _mm512_mask_add_epi16(w, (__mmask32)l[k / 32], w, _mm512_set1_epi16(1));
    if (B == 2) w = _mm512_mask_add_epi16(w, (__mmask32)l[words + k / 32], w, _mm512_set1_epi16(2));
    _mm512_storeu_si512(o, w);
}

/* One group: four W rows (fewer at the end of a block) x one chunk of
 * columns, as the tiles read them and the unpacking writes them. */
typedef struct {
    const int8_t *h;     /* hi of the group's first row at column k0 */
    const uint32_t *l;   /* its low-bit planes at word k0 / 32 */
    int16_t *o;          /* unpacked rows, row stride ld */
    int n, nc, k0, kc;   /* first row, rows (1..4), first column, columns (multiple of 32) */
    int ld;              /* GROUP_LD(kcmax) */
} Group;

/* One row of a group as the unpacking inside a tile sees it. */
typedef struct {
    const int8_t *h;
    const uint32_t *l;
    int16_t *o;
} URow;

/* Prefetch cursors: hi and lo of the row group two ahead, advanced at the
 * pace the tiles consume rows. */
typedef struct {
    const char *h, *l;
    int sh, sl;
} Ahead;

/* Four rows of X against the current group's four rows over its kc
 * columns; every 32 columns also unpack 32 columns of CPI rows of the next
 * group (u, its first ukc columns) and prefetch further ahead. Returns the
 * sixteen sums as reduce16_i32 lays them out. rem: columns from the next
 * group's k0 to K. */
__attribute__((target(T512VNNI), always_inline)) static inline __m512i
tile_pipe(const int16_t *const x[4], const int16_t *const w[4], int kc, int B, int CPI, const URow *u,
          int ukc, int rem, int words, Ahead *pf) {
    __m512i a[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[i][c] = _mm512_setzero_si512();
    const char *ph = pf->h, *pl = pf->l;
    int sh = pf->sh, sl = pf->sl;
    for (int k = 0; k < kc; k += 32) {
        _mm_prefetch(ph, _MM_HINT_T1);
        if (sh > 64) _mm_prefetch(ph + 64, _MM_HINT_T1);
        _mm_prefetch(pl, _MM_HINT_T1);
        ph += sh;
        pl += sl;
#pragma GCC unroll 4
        for (int r = 0; r < CPI; r++)
            if (k < ukc) unpack32(u[r].h, u[r].l, words, rem, k, B, u[r].o + k);
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
    pf->h = ph;
    pf->l = pl;
    return reduce16_i32(a);
}

/* Group number q of rows n0..n1 (row groups of four, each in nch chunks). */
static void group_at(const Job *j, int B, int n0, int n1, int q, int nch, int kcmax, int ld, int16_t *o,
                     Group *g) {
    g->n = n0 + 4 * (q / nch);
    g->nc = n1 - g->n < 4 ? n1 - g->n : 4;
    g->k0 = q % nch * kcmax;
    g->kc = j->Kp - g->k0 < kcmax ? j->Kp - g->k0 : kcmax;
    g->h = j->hi + (size_t)g->n * j->K + g->k0;
    g->l = j->lo + (size_t)g->n * B * WK_I8_LO_WORDS(j->K) + g->k0 / 32;
    g->o = o;
    g->ld = ld;
}

/* Row r of group g (rows past g->nc repeat row 0: unpacked twice, the same
 * values to the same place). */
static inline URow urow(const Job *j, int B, const Group *g, int r) {
    if (r >= g->nc) r = 0;
    URow u = {g->h + (size_t)r * j->K, g->l + (size_t)r * B * WK_I8_LO_WORDS(j->K), g->o + (size_t)r * g->ld};
    return u;
}

/* Rows n0..n1 of W against M <= 16 rows of X; wb holds 8 x GROUP_LD(min(Kp, KC_MAX)) int16
 * (products() gives it 64 x Kp). */
__attribute__((target(T512VNNI), always_inline)) static inline void
block_small(const Job *j, int B, int n0, int n1, int16_t *wb) {
    int kcmax = j->Kp < KC_MAX ? j->Kp : KC_MAX, nch = (j->Kp + kcmax - 1) / kcmax;
    int nq = (n1 - n0 + 3) / 4 * nch, nmb = (j->M + 3) / 4, cpi = nmb == 1 ? 4 : nmb == 4 ? 1 : 2;
    int words = WK_I8_LO_WORDS(j->K), iters = nmb * j->Kp / 32;   /* tile steps per row group */
    size_t lo_row = (size_t)B * words * sizeof(uint32_t);
    int64_t sums[4][16];
    Group cur, next;
    int ld = GROUP_LD(kcmax);
    group_at(j, B, n0, n1, 0, nch, kcmax, ld, wb, &cur);
    for (int r = 0; r < cur.nc; r++) {
        URow u = urow(j, B, &cur, r);
        for (int k = 0; k < cur.kc; k += 32) unpack32(u.h, u.l, words, j->K - cur.k0, k, B, u.o + k);
    }
    Ahead pf = {(const char *)cur.h, (const char *)cur.l, 0, 0};
    for (int q = 0; q < nq; q++) {
        /* the next group, into the other half (none after the last) */
        int16_t *other = cur.o == wb ? wb + 4 * ld : wb;
        if (q + 1 < nq) group_at(j, B, n0, n1, q + 1, nch, kcmax, ld, other, &next);
        else next = cur, next.nc = next.kc = 0;
        if (q % nch == 0) {   /* a new row group: prefetch the one two ahead */
            int n = cur.n + 8;
            if (n + 4 <= j->N) {
                pf.h = (const char *)(j->hi + (size_t)n * j->K);
                pf.l = (const char *)j->lo + (size_t)n * lo_row;
                pf.sh = (4 * j->K + iters - 1) / iters;
                pf.sl = (int)((4 * lo_row + iters - 1) / iters);
            } else {
                pf.sh = pf.sl = 0;
            }
        }
        const int16_t *w[4];
        FOUR_ROWS(w, cur.o, 0, cur.nc, ld);
        int rem = j->K - next.k0, ukc = cur.kc < next.kc ? cur.kc : next.kc;
        for (int m = 0, t = 0; m < j->M; m += 4, t++) {
            const int16_t *x[4];
            FOUR_ROWS(x, j->X + cur.k0, m, j->M - m < 4 ? j->M - m : 4, j->ldx);
            URow u[4];
            for (int r = 0; r < cpi; r++) u[r] = urow(j, B, &next, t * cpi + r);
            __m512i s;
            if (cpi == 1) s = tile_pipe(x, w, cur.kc, B, 1, u, ukc, rem, words, &pf);
            else if (cpi == 2) s = tile_pipe(x, w, cur.kc, B, 2, u, ukc, rem, words, &pf);
            else s = tile_pipe(x, w, cur.kc, B, 4, u, ukc, rem, words, &pf);
            __m512i s0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(s));
            __m512i s1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s, 1));
            if (cur.k0) {
                s0 = _mm512_add_epi64(s0, _mm512_loadu_si512(&sums[t][0]));
                s1 = _mm512_add_epi64(s1, _mm512_loadu_si512(&sums[t][8]));
            }
            _mm512_storeu_si512(&sums[t][0], s0);
            _mm512_storeu_si512(&sums[t][8], s1);
        }
        for (int r = 0; r < next.nc; r++) {   /* a chunk longer than this one: the rest */
            URow u = urow(j, B, &next, r);
            for (int k = ukc; k < next.kc; k += 32) unpack32(u.h, u.l, words, rem, k, B, u.o + k);
        }
        if (cur.k0 + cur.kc == j->Kp)   /* the row group's last chunk */
            for (int m = 0; m < j->M; m++)
                store_sums_avx512(&sums[m / 4][4 * (m % 4)], cur.nc, j->sx[m], j->sw + cur.n,
                                  j->Y + (size_t)m * j->ldy + cur.n, j->accumulate);
        cur = next;
    }
}

/* One function per B (the unpacking's constant): kept apart from
 * block_avx512 so each gets its own register allocation. */
__attribute__((target(T512VNNI), noinline)) static void block_small_b1(const Job *j, int n0, int n1, int16_t *wb) {
    block_small(j, 1, n0, n1, wb);
}
__attribute__((target(T512VNNI), noinline)) static void block_small_b2(const Job *j, int n0, int n1, int16_t *wb) {
    block_small(j, 2, n0, n1, wb);
}

/* ---- AVX-512, M > 16 (prefill): 5 x 4 tiles over chunks of K
 *
 * The block (all its rows, every column) is unpacked once into L2; then
 * for each strip of LM_MR = 5 rows of X, chunk by chunk of LM_KC columns,
 * every four W rows of the block meet the strip in one 5 x 4 tile (20
 * accumulators, 4 W and 1 X register): each W vector loaded from L2 feeds
 * five vpdpwssd, not four as in the 4 x 4 tile this replaced, and the
 * strip's chunk (5 x 4 KiB) stays in L1 while the block's rows pass (the
 * 4 x 4 tile over all of K read, at K = 8192, its four X rows from L2
 * too). Each chunk's sums are added in int32 (LM_KC = 2048: they fit,
 * narrow_sums) and the chunks in int64 into the strip's sums, which the
 * epilogue turns into floats a whole row of the block at a time (it was
 * one call per four sums: 6 % of a 16 x 64 prefill's profile). 6 x 4 (24
 * accumulators) left GCC spilling in the loop and was 8 % slower; chunks
 * of 1024 columns (twice the reductions) ~5 % slower than 2048. Measured
 * (Zen 5, one thread, M = 1024, the 1B's wqkv, wo, w13 and w2 in one
 * process against the 4 x 4 code, best of 5, three runs, the machine
 * shared): 0.90-0.91 of the time for the four together; w2 0.85, the
 * K = 2048 matrices 0.92-0.96. */
#define LM_KC 2048
#define LM_MR 5

/* Five rows of X against four rows of W over kc <= LM_KC columns (from
 * where the pointers point). s[0]: the sums of rows 0-3 as reduce16_i32
 * lays them out; s[1]: row 4's four sums in lanes 0-3. */
__attribute__((target(T512VNNI), always_inline)) static inline void
tile_kc(const int16_t *const x[LM_MR], const int16_t *const w[4], int kc, __m512i s[2]) {
    __m512i a[LM_MR][4];
#pragma GCC unroll 8
    for (int i = 0; i < LM_MR; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[i][c] = _mm512_setzero_si512();
    for (int k = 0; k < kc; k += 32) {
        __m512i wv[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) wv[c] = _mm512_loadu_si512(w[c] + k);
#pragma GCC unroll 8
        for (int i = 0; i < LM_MR; i++) {
            __m512i xv = _mm512_loadu_si512(x[i] + k);
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) DPWSSD(a[i][c], xv, wv[c]);
        }
    }
    s[0] = reduce16_i32(a);
    int32_t r4[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) r4[c] = _mm512_reduce_add_epi32(a[4][c]);
    s[1] = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)r4));
}

#define LM_MAX_N 64   /* rows of W per block for M > 16 (products()) */

/* Adds (k0 > 0) or stores four rows' four sums, lanes 0-15 of s as
 * reduce16_i32 lays them out, into rows of sums; only rows < nr. */
__attribute__((target(T512VNNI), always_inline)) static inline void
add_sums(int64_t (*sums)[LM_MAX_N], int n, __m512i s, int nr, int k0) {
    __m512i s0 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(s));
    __m512i s1 = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(s, 1));
    __m256i q[4] = {_mm512_castsi512_si256(s0), _mm512_extracti64x4_epi64(s0, 1),
                    _mm512_castsi512_si256(s1), _mm512_extracti64x4_epi64(s1, 1)};
    for (int i = 0; i < nr; i++) {
        __m256i *r = (__m256i *)(void *)&sums[i][n];
        if (k0) q[i] = _mm256_add_epi64(q[i], _mm256_loadu_si256(r));
        _mm256_storeu_si256(r, q[i]);
    }
}

/* Rows n0..n1 of W against every row of X. M <= 16: block_small. */
__attribute__((target(T512VNNI)))
static void block_avx512(const Job *j, int n0, int n1, int16_t *wb) {
    if (j->M <= 16 && (j->B == 1 || j->B == 2)) {
        if (j->B == 1) block_small_b1(j, n0, n1, wb);
        else block_small_b2(j, n0, n1, wb);
        return;
    }
    int nb = n1 - n0, ld = j->Kp;
    unpack_avx512(j, n0, nb, wb);
    int64_t sums[LM_MR][LM_MAX_N];
    for (int m0 = 0; m0 < j->M; m0 += LM_MR) {
        int mr = j->M - m0 < LM_MR ? j->M - m0 : LM_MR;
        const int16_t *x[LM_MR];
        for (int i = 0; i < LM_MR; i++) x[i] = j->X + (size_t)(m0 + (i < mr ? i : 0)) * j->ldx;
        for (int k0 = 0; k0 < j->Kp; k0 += LM_KC) {
            int kc = j->Kp - k0 < LM_KC ? j->Kp - k0 : LM_KC;
            const int16_t *xk[LM_MR];
            for (int i = 0; i < LM_MR; i++) xk[i] = x[i] + k0;
            for (int n = 0; n < nb; n += 4) {
                const int16_t *w[4];
                FOUR_ROWS(w, wb + k0, n, nb - n < 4 ? nb - n : 4, ld);
                __m512i s[2];
                tile_kc(xk, w, kc, s);
                add_sums(sums, n, s[0], mr < 4 ? mr : 4, k0);
                if (mr > 4) add_sums(sums + 4, n, s[1], mr - 4, k0);
            }
        }
        for (int m = 0; m < mr; m++)
            store_sums_avx512(sums[m], nb, j->sx[m0 + m], j->sw + n0, j->Y + (size_t)(m0 + m) * j->ldy + n0,
                              j->accumulate);
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
    if (fam == WK_I8_AVXVNNI) { block_avxvnni(j, n0, n1, wb); return; }
#endif
    (void)fam;
    block_generic(j, n0, n1, wb);
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
    /* small M: 16 rows per block, so the rows split evenly over threads
     * (AVX-512: 64, its blocks overlap each group's unpacking with the
     * previous group's products, all but the first); large M: blocks of
     * ~256 KiB, re-read from L2 for every 4 rows of X */
    int per = fam == WK_I8_AVX512 ? SMALL_M_ROWS_AVX512 : SMALL_M_ROWS;
    if (j->M > 16) {
        per = (int)(BLOCK_BYTES / (2u * (unsigned)j->Kp)) & ~3;
        per = per < SMALL_M_ROWS ? SMALL_M_ROWS : per > 64 ? 64 : per;
    }
    int nt = (N + per - 1) / per;
    if (threads > nt) threads = nt;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int t = 0; t < nt; t++) {
        int n0 = t * per, n1 = n0 + per < N ? n0 + per : N;
        /* rows rounded up to 16: the AVX2 panels are 16 rows wide */
        int16_t *wb = scratch(SLOT_BLOCK, sizeof(int16_t) * (size_t)((per + 15) & ~15) * j->Kp);
        if (wb) run_block(fam, j, n0, n1, wb);
        else block_direct(j, n0, n1);
    }
}

/* Rows of X quantized at once (halved while the int16 copy would pass
 * CHUNK_BYTES, down to 256): a 16 x 64 prefill (M = 1024) is quantized
 * once and each W block unpacked once per call, not once per 256-row chunk
 * with a parallel region and its barrier each. Measured (Zen 4, AVX2
 * family, two threads, M = 1024 through the 1B's four layer shapes, both
 * builds alternating call by call in one process, 7 reps, X rows skewed
 * off 4 KiB as ldq makes them): 1024 rows against 256 took 0.86 / 0.86 /
 * 0.86 of the time (median, three runs; 0.94 with both the same build, the
 * order's bias), and with the order reversed 256 took 1.11. One thread saw
 * no difference; before the skew (X rows 4 KiB apart) one thread was 6 %
 * slower at 1024, chunks of 128 rows 9-11 % slower, 512 no faster, and
 * prefetching the next W block into L2 during the tiles did not help. The
 * copy: 16.8 MB at K = 8192 (was 4.2), against 1.78 GB of weights. */
#define CHUNK_ROWS 1024
#define CHUNK_BYTES (32u << 20)

void wk_i8_matmul(WkI8Family fam, int M, int N, int K, const float *X, int ldx, const int8_t *hi,
                  const uint32_t *lo, int B, const float *sw, float *Y, int ldy, int accumulate,
                  int threads) {
    if (M <= 0 || N <= 0) return;
    if (threads < 1) threads = 1;
    if (K > WK_I8_MAX_K(B)) fam = WK_I8_GENERIC;   /* 32-bit lanes could overflow */
    /* ldq: the int16 rows 64 bytes apart from a 4 KiB multiple (GROUP_LD) */
    int Kp = WK_I8_PAD(K), ldq = Kp + 32, rows = M < CHUNK_ROWS ? M : CHUNK_ROWS;
    while (rows > 256 && sizeof(int16_t) * (size_t)rows * ldq > CHUNK_BYTES) rows /= 2;
    size_t xbytes = sizeof(int16_t) * (size_t)rows * ldq;   /* a multiple of 64 */
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
            sx[m] = quantize_row(fam, X + (size_t)(m0 + m) * ldx, K, xq + (size_t)m * ldq, Kp);
        Job j = {mb, K, Kp, ldq, ldy, accumulate, B, xq, sx, sw, hi, lo, Y + (size_t)m0 * ldy, N};
        products(fam, &j, N, threads);
    }
}

/* ---- the epilogue and the quantizer alone (tests) ------------------------ */

int wk_i8_quantize_variant(int variant, const float *x, int K, int16_t *out, int ldx, float *scale) {
    if (variant == 0) { *scale = wk_i8_quantize_act(x, K, out, ldx); return 1; }
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (variant == 1 && __builtin_cpu_supports("avx2")) {
        *scale = quantize_act_avx2(x, K, out, ldx);
        return 1;
    }
    if (variant == 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl")) {
        *scale = quantize_act_avx512(x, K, out, ldx);
        return 1;
    }
#endif
    return 0;
}

int wk_i8_epilogue(int variant, const int64_t *s, int cnt, float sx, const float *sw, float *y,
                   int accumulate) {
    if (variant == 0) { store_sums(s, cnt, sx, sw, y, accumulate); return 1; }
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    int v512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (variant == 1 && __builtin_cpu_supports("avx2")) { store_sums_avx2(s, cnt, sx, sw, y, accumulate); return 1; }
    if (variant == 2 && v512) { store_sums_512f(s, cnt, sx, sw, y, accumulate); return 1; }
    if (variant == 3 && v512 && __builtin_cpu_supports("avx512dq")) {
        store_sums_512dq(s, cnt, sx, sw, y, accumulate);
        return 1;
    }
    if (variant == 4 && __builtin_cpu_supports("avx2") && cnt <= 4096) {
        int32_t s32[4096];
        for (int j = 0; j < cnt; j++) {
            if (s[j] > INT32_MAX || s[j] < -INT32_MAX) return 0;
            s32[j] = (int32_t)s[j];
        }
        store_sums32_avx2(s32, cnt, sx, sw, y, accumulate);
        return 1;
    }
#endif
    return 0;
}
