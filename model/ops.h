/* ops.h - the forward pass's element-wise and attention kernels (f32).
 * Plain C written so the compiler can vectorise the inner loops; no BLIS. */
#ifndef GUARDD_OPS_H
#define GUARDD_OPS_H
#include "kvcache.h"
#include "model.h"

/* e^x to ~2e-7 relative for x in [-87, 88] (clamped outside), branch-free. */
float fast_expf(float x);

/* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for `rows` rows of n. */
void rmsnorm_rows(float *out, int ldo, const float *x, int ldx, const float *w, int rows, int n,
                  float eps);

/* llama3-scaled (if cfg says so) inverse frequencies, head_dim/2 values, in
 * double: inv_freq[i] = theta^(-2i/d), then the llama3 wavelength rule. */
void rope_inv_freq(const ModelConfig *cfg, double *inv_freq);

/* cos/sin of pos * inv_freq[i] for positions [from, to), rows of half floats. */
void rope_fill(const double *inv_freq, int half, float *cos_t, float *sin_t, int from, int to);

/* Rotates one head vector in place (HF rotate_half: pairs i, i + half). */
void rope_apply(float *v, int half, const float *c, const float *s);

/* h[r, j] = silu(h[r, j]) * h[r, hidden + j] for j < hidden (gate then up). */
void silu_mul_rows(float *h, int ld, int rows, int hidden);

/* Causal attention of one query head for n_q new tokens whose first position
 * is pos0, against keys/values of kv head `kvh` in segs (all already holding
 * this layer's new K/V). q rows at stride ldq, out rows at stride ldo;
 * scores: scratch of pos0 + n_q floats. */
void attend_head(const float *q, int ldq, float *out, int ldo, int n_q, int pos0,
                 const KVSegment *segs, int n_segs, int layer, int kv_dim, int kvh, int head_dim,
                 float *scores);
#endif
