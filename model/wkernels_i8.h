/* wkernels_i8.h - the integer products of the int8 precision (weights.h),
 * one implementation per instruction-set family. Internal to weights.c and
 * its tests.
 *
 * Operands: weights of 8 + B bits (B = 1 or 2 low bits), w = 2^B·hi + lo in
 * -WK_I8_W_MAX(B)..WK_I8_W_MAX(B), stored as an int8 hi [N, K] (row stride
 * K) and B planes of low bits per row (plane p of row n: WK_I8_LO_WORDS(K)
 * words at lo + (n·B + p)·WK_I8_LO_WORDS(K), bit k % 32 of word k / 32 is
 * bit p of lo[n, k]); activations of 12 bits, per row: scale = max|x| /
 * 2047, int16 in -2047..2047. Every family computes the same exact integer
 *
 *     S[m, n] = Σ_k X[m, k] · w[n, k]
 *
 * and then the same float epilogue Y[m, n] (+)= (float)S · (sx[m] · sw[n]),
 * each step rounded once in that order (no FMA; one non-inlined function
 * per family, vectorised in AVX2 and AVX-512, each equal to the scalar one
 * bit for bit): the results agree bit for bit between families, between
 * M = 1 and any batch, and whatever the thread count.
 *
 * Families: AVX512_VNNI (vpdpwssd zmm), AVX-VNNI (the AVX2 tiles with one
 * VEX vpdpwssd ymm per vpmaddwd + vpaddd), AVX2, generic.
 *
 * Why int16 products: vpdpwssd (AVX512_VNNI, AVX-VNNI) and vpmaddwd (AVX2) multiply
 * signed 16-bit pairs into 32-bit sums without saturating, so one integer
 * scheme runs on every family (u8 x s8 saturates without VNNI). Overflow:
 * a 32-bit lane of the dot-product tiles gathers at most K/8 products of at
 * most 2047 · WK_I8_W_MAX(B), so K <= WK_I8_MAX_K(B) never overflows; the
 * AVX2 (and AVX-VNNI) tiles give each lane one (row, channel) and cut K into chunks of at
 * most 8192 >> B products (< 2^31 / (2047 · WK_I8_W_MAX(B))); lanes and
 * chunks are summed in 64 bits (where a row's whole sum fits int32, as
 * below, all of K is one chunk and the lanes stay int32). The AVX-512 tiles add their sixteen lanes
 * in int32 where a row's whole sum fits (K · 2047 · WK_I8_W_MAX(B) < 2^31:
 * K <= 2053 for B = 2, 4114 for B = 1), otherwise in 64 bits; for M <= 16
 * they cut K into chunks of 2048 so that it always fits.
 *
 * Each call unpacks ROWS of W into int16 once per block (per thread, in L2)
 * and runs every row of X past it in dot-product tiles (AVX-512: 4 x 4 for M <= 16, 5 x 4 above) or
 * 6 x 16 (AVX2) broadcast tiles: for M <= 16 its cost is W's memory
 * traffic and the unpacking (AVX-512: four rows at a time, unpacked inside
 * the previous four rows' tiles), for large M the products.
 */
#ifndef GUARDD_WKERNELS_I8_H
#define GUARDD_WKERNELS_I8_H
#include <stdint.h>

#define WK_I8_ACT_MAX 2047                  /* activations: -2047..2047 */
#define WK_I8_W_MAX(B) ((128 << (B)) - 1)   /* weights: 255 (B = 1), 511 (B = 2) */
#define WK_I8_MAX_K(B) (65536 >> (B))
#define WK_I8_LO_WORDS(K) (((K) + 31) / 32)
#define WK_I8_PAD(K) (((K) + 31) & ~31)

typedef enum { WK_I8_GENERIC = 0, WK_I8_AVX2, WK_I8_AVX512, WK_I8_AVXVNNI } WkI8Family;

/* Y (+)= X·Wᵀ for f32 X [M, K] (row stride ldx) and W [N, K] as above:
 * X quantized per row (up to 1024 rows at a time), then the products. A
 * family the CPU lacks must not be asked for (weights.c checks); K over
 * WK_I8_MAX_K(B) runs the generic code. If no buffer can be had the same
 * integers are computed one weight at a time (slow, never wrong). */
void wk_i8_matmul(WkI8Family fam, int M, int N, int K, const float *X, int ldx, const int8_t *hi,
                  const uint32_t *lo, int B, const float *sw, float *Y, int ldy, int accumulate,
                  int threads);

/* One row of activations -> int16 out[0, ldx) (zero past K); returns its
 * scale. The scalar reference, which the generic family runs. */
float wk_i8_quantize_act(const float *x, int K, int16_t *out, int ldx);

/* The row quantizer of a family, for the tests: variant 0 the reference
 * above, 1 the AVX2 family's (also AVX-VNNI's), 2 the AVX-512 family's;
 * each must give the reference's int16 and scale bit for bit for every
 * input, NaN and infinities included. Returns 0 (and writes nothing) if
 * the CPU lacks the variant's instructions. */
int wk_i8_quantize_variant(int variant, const float *x, int K, int16_t *out, int ldx, float *scale);

/* The float epilogue alone, for the tests: variant 0 the reference
 * (scalar, used by the generic family), 1 the AVX2 family's, 2 the AVX-512
 * family's without AVX512DQ, 3 with it, 4 the AVX2 family's from 32-bit
 * sums (when a row's whole sum fits); every variant must equal 0 bit for
 * bit for |s| < 2^51 (the vector families see |S| < 2^35; variant 4 only
 * |S| <= INT32_MAX, and returns 0 for any other s). Returns 0 (and writes
 * nothing) if the CPU lacks the variant's instructions. */
int wk_i8_epilogue(int variant, const int64_t *s, int cnt, float sx, const float *sw, float *y,
                   int accumulate);

/* W[n, k] as its integer: for wm_row, the slow path and the tests. */
static inline int wk_i8_weight(const int8_t *hi, const uint32_t *lo, int B, int K, int n, int k) {
    int v = hi[(long)n * K + k] * (1 << B);
    const uint32_t *planes = lo + (long)n * B * WK_I8_LO_WORDS(K);
    for (int p = 0; p < B; p++) v += (int)((planes[p * WK_I8_LO_WORDS(K) + k / 32] >> (k % 32)) & 1) << p;
    return v;
}

#endif
