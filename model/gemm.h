/* gemm.h - the one matrix product the forward pass needs, on BLIS.
 *
 * Y[M,N] (+)= X[M,K] · W[N,K]ᵀ with every matrix row-major and its own row
 * stride, which is exactly "activations times a checkpoint weight" (weights
 * are stored [out_features, in_features]). blis_setup()/blis_arch_name() are
 * declared in transformer.h.
 */
#ifndef GUARDD_GEMM_H
#define GUARDD_GEMM_H

/* accumulate = 0: Y = X·Wᵀ; accumulate = 1: Y += X·Wᵀ (residual add for
 * free). threads <= 0 uses the count set by blis_setup. BLIS's small/unpacked
 * ("sup") path is kept for M <= 8 only: above that it is much slower than the
 * packed path on these shapes. */
void gemm_xwt(int M, int N, int K, const float *X, int ldx, const float *W, int ldw,
              float *Y, int ldy, int accumulate, int threads);

/* The thread count blis_setup settled on (all cores if never called). */
int blis_threads(void);

#endif
