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
 *         "avx512bf16-split+onednn": each activation is split into two
 *         bf16 as a GEMM input, hi = bf16(x) and lo = bf16(x - hi), and the
 *         product is W·hi + W·lo in f32: vdpbf16ps on 4 x 4 tiles for
 *         M <= wm_bf16_tile_max_m() (the same bits whatever M), oneDNN's
 *         bf16 matmul twice above (faster; its order follows M, results stay within f32
 *         rounding: batched == one at a time to 1e-5). hi alone is up to
 *         2^-8 of x off and cost 2.9e-3..4.7e-3 of the logit range against
 *         float64 (issue 9 asks <= 2e-3); hi + lo at most 2^-16: ~6e-6. The
 *         price is two bf16 products for the same weight bytes.
 *         "avx2-widen+blis" (any AVX2 CPU without AVX512_BF16, AVX-512
 *         ones such as Cascade Lake and Ice Lake included) and
 *         "generic-widen+blis": the weights are widened to f32 inside the
 *         product (f32 streaming for M <= 16; above, BLIS's f32
 *         microkernel on W widened as it is packed, gemm_xwt_bf16),
 *         activations stay f32: exact, f32's speed for prefill.
 *   int8  weights of 9 or 10 bits per output channel (scale = max|row| /
 *         255 or / 511, rounded once at load), stored as an int8 hi and one
 *         or two planes of low bits (w = 2^B·hi + lo; 1.125 or 1.25 bytes a
 *         weight): B = 1 for w13 and w2 (WM_I8_BITS_MLP, 80 % of a layer's
 *         weights), B = 2 for the embedding, the lm_head, wqkv and wo
 *         (WM_I8_BITS_OTHER). Activations quantized per token at run time to
 *         12 bits (scale = max|x| / 2047, int16). Products exact in integers
 *         (wkernels_i8.h): "avx512vnni" vpdpwssd zmm, "avxvnni" (AVX-VNNI
 *         without AVX-512: Alder Lake and later client cores, E-core
 *         servers) the AVX2 tiles on VEX vpdpwssd ymm, "avx2" vpmaddwd +
 *         vpaddd, "generic" plain C, all on the same unpacked int16 tiles
 *         and exact integer sums, so every family and
 *         every M gives the same bits. The embedding lookup (wm_row)
 *         dequantizes a row.
 *         Why not 8-bit weights and activations (what int8 first was):
 *         against float64 that lost 1.3e-2..1.9e-2 of the logit range on the
 *         t_numerics fixtures and 3.0e-2 on the full-shape 1B, and a
 *         simulation (tools/quant_sim.py) put each half alone over the 1e-2
 *         goal on the 1B: 8-bit per-token activations 2.8e-2 (the down
 *         projection's input alone 2.2e-2), 8-bit per-channel weights 1.5e-2
 *         (the layers' matrices alone 1.3e-2). Per-group scales do not help
 *         weights that are uniform within a row, as these random
 *         checkpoints' are; more bits do. Now: 2.7e-3..3.6e-3 on the
 *         t_numerics fixtures, 4.8e-3 on the 1B (weights 1.78 GB).
 *
 * Kernel family: chosen once from the CPU flags (avx512 with AVX512_VNNI or
 * AVX512_BF16, else avxvnni with AVX-VNNI, else avx2, else generic); env
 * GUARDD_KERNELS (auto|avx512|avxvnni|avx2|generic) or wm_set_kernels()
 * forces a slower family so every path can be tested (a family the CPU
 * lacks gives the best one it has below; avxvnni on an AVX-512 CPU only if
 * it also has AVX-VNNI). avxvnni differs from avx2 in int8 alone. It selects this module's kernels only, not
 * BLIS's kernel set (f32, and the engine under bf16's widened products),
 * which blis_setup() picks from model.blis_arch / BLIS_ARCH_TYPE: a forced
 * family is for tests and comparisons, and a daemon should not lose BLIS's
 * best kernels with it. To see what an AVX2-only CPU runs, force both
 * (bench_precision does: GUARDD_KERNELS=avx2 or avxvnni plus BLIS "zen3").
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
    int8_t *q;             /* INT8: hi [rows, cols] */
    uint32_t *lo;          /* INT8: low bits, wm_lo_words(cols, lo_bits) words per row */
    int lo_bits;           /* INT8: 1 or 2 */
    float *scale;          /* INT8: per row, value = (2^lo_bits * hi + lo) * scale */
} WeightMatrix;

/* "auto", "bf16", "int8", "f32" -> *out; -1 for anything else. */
int precision_parse(const char *s, Precision *out);
const char *precision_name(Precision p);
/* AUTO -> the form used on this CPU (bf16); others unchanged. */
Precision precision_resolve(Precision p);

/* Forces a kernel family: "auto" (NULL), "avx512", "avxvnni", "avx2", "generic".
 * Families the CPU lacks fall back to the best it has. -1 for unknown names. */
int wm_set_kernels(const char *family);
/* The kernels precision p runs on, e.g. "avx512bf16-split+onednn", "avx512vnni", "avx2-widen+blis". */
const char *wm_kernels(Precision p);

/* An f32 matrix over caller-owned memory. */
WeightMatrix wm_f32(float *w, int rows, int cols);

/* Y (+)= X·Wᵀ: X [M, K] at row stride ldx, Y [M, N] at ldy; accumulate = 1
 * adds into Y. threads <= 0: blis_threads(). */
void wm_matmul(const WeightMatrix *w, int M, const float *X, int ldx, float *Y, int ldy,
               int accumulate, int threads);

/* bf16 with vdpbf16ps: products of up to wm_bf16_tile_max_m() rows run on
 * the tile kernel (each row's bits independent of M and of the other rows),
 * larger ones on oneDNN. The limit is chosen once per CPU (weights.c has
 * the measurements): 64 on AMD family 19h (Zen 4, whose 512-bit operations
 * run on 256-bit units and where the tile kernel is faster up to M ~ 192),
 * 16 elsewhere (Zen 5, where oneDNN is 1.2-1.8x faster from M = 17 on, and
 * Intel's AVX512_BF16/AMX CPUs, oneDNN's own ground). Never below 16: the
 * decode steps stay on the tile kernel, which reads W once. */
int wm_bf16_tile_max_m(void);
/* Sets that limit (16..4096) for tests and benchmarks; 0 restores the CPU's
 * choice. -1 for anything else. */
int wm_set_bf16_tile_max_m(int m);

/* Drops the oneDNN primitives this module keeps for bf16 products (per
 * shape, bounded; weights.c) that no product is running; model_free()
 * calls it. Any later product makes what it needs again. */
void wm_free_cache(void);

/* Row r of W as f32 (embedding lookup). */
void wm_row(const WeightMatrix *w, int r, float *out);

/* Load-time conversions (model.c): rows of f32 values into the stored form. */
void wm_round_bf16(const float *src, uint16_t *dst, size_t n);
/* int8: the low bits each matrix keeps (see above). */
#define WM_I8_BITS_MLP 1      /* w13, w2 */
#define WM_I8_BITS_OTHER 2    /* embedding, lm_head, wqkv, wo */
/* One row of k values -> hi q[k] and lo_bits planes of low bits
 * lo[wm_lo_words(k, lo_bits)] (int8 form); returns its scale. */
float wm_quantize_row(const float *src, int k, int lo_bits, int8_t *q, uint32_t *lo);
/* Words of low bits per int8 row of k values. */
int wm_lo_words(int k, int lo_bits);

/* Bytes a rows x cols matrix holds in precision p (values + scales; int8
 * with lo_bits low bits, ignored otherwise). */
size_t wm_bytes(Precision p, size_t rows, size_t cols, int lo_bits);

#endif
