/* wkernels.h - the streaming (small-M) kernels behind weights.c, one per
 * instruction-set family. Internal to weights.c and its tests.
 *
 * All of them read W [N, K] (row stride K) exactly once, four rows at a time,
 * each row dotted with the M (<= 16; the bf16 dot-product kernel: up to
 * wm_bf16_tile_max_m(), weights.h) activation rows, which stay in cache;
 * their cost is W's memory traffic. Rows [0, N) are split over `threads`
 * OpenMP threads. The avx512/avx2 variants exist only on x86-64 and must be
 * called only when the CPU has the instructions (weights.c checks).
 */
#ifndef GUARDD_WKERNELS_H
#define GUARDD_WKERNELS_H
#include <stdint.h>

/* Activations for the bf16 dot-product kernel, each x split in two bf16:
 * hi = bf16(x) and lo = bf16(x - hi), so hi + lo = x within 2^-16 relative
 * where hi alone is up to 2^-8 off. One row of K values -> wk_bf16_split_ld(K)
 * uint16: blocks of 32 columns, 32 hi then their 32 lo, the last block
 * zero-padded (K rounded up to a multiple of 32). */
int wk_bf16_split_ld(int K);
void wk_bf16_split_row(const float *x, int K, uint16_t *out);
/* Y (+)= X·Wᵀ with X [M, K] split as above (row stride wk_bf16_split_ld(K))
 * and bf16 W, any M: vdpbf16ps on 4 x 4 tiles, W·hi + W·lo summed in the
 * same order whatever M (wkernels.c). */
void wk_bf16_dot_avx512(int M, int N, int K, const uint16_t *X, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads);
/* Y (+)= X·Wᵀ with f32 X (row stride ldx) and bf16 W widened in registers. */
void wk_bf16_widen_avx2(int M, int N, int K, const float *X, int ldx, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads);
void wk_bf16_widen_generic(int M, int N, int K, const float *X, int ldx, const uint16_t *W,
                           float *Y, int ldy, int accumulate, int threads);

/* CPU support for the variants above (0 off x86-64). */
int wk_have_avx512bf16(void);
int wk_have_avx512vnni(void);
int wk_have_avx2(void);
int wk_have_avxvnni(void);   /* AVX2 + AVX-VNNI (vpdpwssd on ymm) */

/* Features the wk_have_* above report absent from now on, as a CPU without
 * them would (tests: e.g. "avx512bf16" makes this CPU an AVX-512 one without
 * bf16 dot products, as Ice Lake or Cascade Lake servers are). A comma list
 * of avx512bf16, avx512vnni, avxvnni, avx2; NULL or "" masks nothing;
 * returns -1 for an unknown name (nothing changed). */
int wk_mask_features(const char *names);
#endif
