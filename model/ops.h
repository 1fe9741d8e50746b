/* ops.h - the forward pass's element-wise and attention kernels (f32).
 * Plain C written so the compiler can vectorise the inner loops; no BLIS. */
#ifndef GUARDD_OPS_H
#define GUARDD_OPS_H
#include <stdint.h>
#include "kvcache.h"
#include "model.h"

/* Hot loops are compiled for AVX-512 and AVX2+FMA as well as baseline x86-64
 * (the build flags target baseline); the loader picks the clone once.
 * Not under ThreadSanitizer: it instruments the resolver GCC generates, which
 * the loader runs while relocating, before TSan's runtime is set up (every
 * program linking the model crashed at start in a SANITIZE=thread build). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && \
    !defined(__SANITIZE_THREAD__)
#define OPS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define OPS_HAVE_CLONES 1
#else
#define OPS_CLONES
#define OPS_HAVE_CLONES 0
#endif

/* e^x to ~2e-7 relative for x in [-87, 88] (clamped outside), branch-free so
 * loops calling it vectorise: 2^n * e^r with n = round(x / ln2), |r| <= ln2/2,
 * e^r by a degree-7 Taylor polynomial (error < 1e-8 on that interval). Inline
 * because an out-of-line call stops vectorisation. */
static inline float fast_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shift = 12582912.0f;               /* 1.5 * 2^23: round to int */
    float n = (x * 1.44269504f + shift) - shift;
    float r = x - n * 0.693145752f - n * 1.42860677e-6f;  /* ln2 split hi/lo */
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { uint32_t u; float f; } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return p * scale.f;
}

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
 * scratch: attend_scratch_floats(pos0 + n_q, head_dim) floats. */
void attend_head(const float *q, int ldq, float *out, int ldo, int n_q, int pos0,
                 const KVSegment *segs, int n_segs, int layer, int kv_dim, int kvh, int head_dim,
                 float *scratch);

/* Query rows and keys per attention tile (see ops.c), and the scratch floats
 * attend_head needs for a context of n_ctx positions. */
#define ATT_QB 64
#define ATT_KB 16
size_t attend_scratch_floats(int n_ctx, int head_dim);
#endif
