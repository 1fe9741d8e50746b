/* gemm.h - the one matrix product the forward pass needs, on BLIS.
 *
 * Y[M,N] (+)= X[M,K] · W[N,K]ᵀ with every matrix row-major and its own row
 * stride, which is exactly "activations times a checkpoint weight" (weights
 * are stored [out_features, in_features]). blis_setup()/blis_arch_name() are
 * declared in transformer.h.
 */
#ifndef GUARDD_GEMM_H
#define GUARDD_GEMM_H
#include <stdint.h>

/* accumulate = 0: Y = X·Wᵀ; accumulate = 1: Y += X·Wᵀ (residual add for
 * free). threads <= 0 uses the count set by blis_setup. M <= 16 rows (decode
 * steps, the lm_head of a batch's logit rows) use a streaming kernel that
 * reads W once, several times faster than BLIS there; larger M goes to BLIS
 * with its small/unpacked ("sup") path disabled (kept only for M <= 8, which
 * the streaming kernel takes anyway), as sup is much slower on these shapes. */
void gemm_xwt(int M, int N, int K, const float *X, int ldx, const float *W, int ldw,
              float *Y, int ldy, int accumulate, int threads);

/* The same product with bf16 weights W [N, K] (row stride K), for any M:
 * BLIS's own f32 microkernel and block sizes, W widened to f32 (exactly)
 * while it is packed into the microkernel's panels, so no f32 copy of W is
 * made beyond one packed block (NC x KC floats, ~4 MB). On the CPUs bf16
 * widens for (no AVX512_BF16) this is as fast as gemm_xwt on f32 weights;
 * the sums are the ones BLIS forms for f32 (same blocking). Returns -1,
 * with Y untouched, if a packing buffer cannot be allocated. */
int gemm_xwt_bf16(int M, int N, int K, const float *X, int ldx, const uint16_t *W, float *Y,
                  int ldy, int accumulate, int threads);

/* The thread count blis_setup settled on (all cores if never called). */
int blis_threads(void);

#endif
