/* weights.h - how a weight matrix is stored (f32, bf16 or int8) and the one
 * product the forward pass asks of it: Y[M,N] (+)= X[M,K] · Wᵀ, W [N,K].
 *
 * Every weight matrix of the model (fused QKV, Wo, fused gate/up, down, the
 * lm_head, the embedding table) is a WeightMatrix; the transformer calls only
 * wm_matmul() and wm_row() and never looks at the stored form. This module
 * alone decides, per precision and per CPU, which kernels run:
 *
 *   f32   BLIS (gemm.c), the f32 streaming kernel for M <= 16. The reference.
 *   bf16  the checkpoint's bf16 values (f16/f32 checkpoints rounded once).
 *         "avx512bf16-split": each activation is split into two bf16 as a
 *         GEMM input, hi = bf16(x) and lo = bf16(x - hi), and vdpbf16ps
 *         sums W·hi + W·lo in f32 on 4 x 4 tiles for every M, so results do
 *         not depend on M (batched == one at a time). hi alone is 2^-9 of x
 *         off and cost 2.9e-3..4.7e-3 of the logit range against float64
 *         (issue 9 asks <= 2e-3); hi + lo is ~2^-17 off: ~6e-6. The price is
 *         twice the dot-product instructions for the same weight bytes.
 *         "avx2"/"generic": the weights are widened to f32 tile by tile
 *         inside the product (f32 streaming for M <= 16, BLIS on 256-row
 *         tiles above), activations stay f32.
 *   int8  symmetric per-output-channel weights (scale = max|row| / 127,
 *         quantized once at load). "avx512vnni": activations quantized per
 *         token at run time (scale = max|x| / 127, stored as u8 = q + 128,
 *         the offset taken back out with the weights' row sums), products
 *         exact in s32: vpdpbusd streaming kernel for M <= 16, oneDNN's
 *         u8 x s8 matmul above. "generic": the same integers in plain C (so
 *         it checks the VNNI path to the last bit up to the float epilogue).
 *         "avx2" (any CPU without VNNI, whose u8 x s8 instructions saturate
 *         16-bit pair sums): weight-only int8, the weights widened to f32 in
 *         registers (M <= 16) or in 256-row tiles for BLIS, f32 activations.
 *
 * Kernel family: chosen once from the CPU flags; env GUARDD_KERNELS
 * (auto|avx512|avx2|generic) or wm_set_kernels() forces a slower family so
 * every path can be tested.
 */
#ifndef GUARDD_WEIGHTS_H
#define GUARDD_WEIGHTS_H
#include <stddef.h>
#include <stdint.h>

typedef enum { PREC_AUTO = 0, PREC_F32, PREC_BF16, PREC_INT8 } Precision;

typedef struct {
    Precision prec;        /* F32, BF16 or INT8 (never AUTO) */
    int rows, cols;        /* N (out features) x K (in features), row-major, ld = cols */
    float *f32;            /* F32 */
    uint16_t *bf16;        /* BF16 */
    int8_t *q;             /* INT8 values */
    float *scale;          /* INT8: per row, value = q * scale */
    int32_t *qsum;         /* INT8: per row, sum of q */
} WeightMatrix;

/* "auto", "bf16", "int8", "f32" -> *out; -1 for anything else. */
int precision_parse(const char *s, Precision *out);
const char *precision_name(Precision p);
/* AUTO -> the form used on this CPU (bf16); others unchanged. */
Precision precision_resolve(Precision p);

/* Forces a kernel family: "auto" (NULL), "avx512", "avx2", "generic".
 * Families the CPU lacks fall back to the best it has. -1 for unknown names. */
int wm_set_kernels(const char *family);
/* The kernels precision p runs on, e.g. "avx512bf16-split", "avx512vnni+onednn", "avx2-widen+blis". */
const char *wm_kernels(Precision p);

/* An f32 matrix over caller-owned memory. */
WeightMatrix wm_f32(float *w, int rows, int cols);

/* Y (+)= X·Wᵀ: X [M, K] at row stride ldx, Y [M, N] at ldy; accumulate = 1
 * adds into Y. threads <= 0: blis_threads(). */
void wm_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
               int accumulate, int threads);

/* Row r of W as f32 (embedding lookup). */
void wm_row(const WeightMatrix *w, int r, float *out);

/* Load-time conversions (model.c): rows of f32 values into the stored form. */
void wm_round_bf16(const float *src, uint16_t *dst, size_t n);
/* One row of k values -> q, returns its scale; *sum gets the sum of q. */
float wm_quantize_row(const float *src, int k, int8_t *q, int32_t *sum);

/* Bytes a rows x cols matrix holds in precision p (values + scales). */
size_t wm_bytes(Precision p, size_t rows, size_t cols);

#endif
