/* wkernels.h - the streaming (small-M) kernels behind weights.c, one per
 * instruction-set family. Internal to weights.c and its tests.
 *
 * All of them read W [N, K] (row stride K) exactly once, four rows at a time,
 * each row dotted with the M (<= 16) activation rows, which stay in cache;
 * their cost is W's memory traffic. Rows [0, N) are split over `threads`
 * OpenMP threads. The avx512/avx2 variants exist only on x86-64 and must be
 * called only when the CPU has the instructions (weights.c checks).
 */
#ifndef GUARDD_WKERNELS_H
#define GUARDD_WKERNELS_H
#include <stdint.h>

/* Y (+)= X·Wᵀ with bf16 X [M, K] (contiguous) and W: vdpbf16ps. */
void wk_bf16_dot_avx512(int M, int N, int K, const uint16_t *X, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads);
/* Y (+)= X·Wᵀ with f32 X (row stride ldx) and bf16 W widened in registers. */
void wk_bf16_widen_avx2(int M, int N, int K, const float *X, int ldx, const uint16_t *W, float *Y,
                        int ldy, int accumulate, int threads);
void wk_bf16_widen_generic(int M, int N, int K, const float *X, int ldx, const uint16_t *W,
                           float *Y, int ldy, int accumulate, int threads);

/* S[M, N] (row stride lds) = Σ_k X[m,k]·W[n,k] in exact 32-bit integers, u8 X
 * [M, K] contiguous, s8 W. The generic one also serves any M. */
void wk_i8_vnni(int M, int N, int K, const uint8_t *X, const int8_t *W, int32_t *S, int lds,
                int threads);
void wk_i8_generic(int M, int N, int K, const uint8_t *X, const int8_t *W, int32_t *S, int lds,
                   int threads);

/* Y (+)= X·(W·scale)ᵀ with f32 X and int8 W widened in registers (weight-only
 * int8, for CPUs without VNNI: their u8 x s8 instructions saturate). */
void wk_i8_widen(int M, int N, int K, const float *X, int ldx, const int8_t *W, const float *scale,
                 float *Y, int ldy, int accumulate, int threads);

/* CPU support for the variants above (0 off x86-64). */
int wk_have_avx512bf16(void);
int wk_have_avx512vnni(void);
int wk_have_avx2(void);
#endif
