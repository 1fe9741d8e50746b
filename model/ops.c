/* ops.c - element-wise kernels and per-head attention for the forward pass.
 *
 * Everything is f32 like Hugging Face's f32 path, with two deliberate
 * choices: RoPE angles are computed in double (HF rounds pos * inv_freq to
 * f32, which loses ~1e-4 rad at positions in the thousands; the numpy f64
 * reference agrees with the double version), and exp() is a branch-free
 * polynomial so the SiLU and softmax loops vectorise (glibc's expf does not).
 */
#include <math.h>
#include <string.h>
#include "ops.h"

OPS_CLONES void rmsnorm_rows(float *out, int ldo, const float *x, int ldx, const float *w, int rows, int n,
                  float eps) {
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * ldx;
        float *o = out + (size_t)r * ldo;
        float ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int i = 0; i < n; i++) ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / n + eps);
#pragma omp simd
        for (int i = 0; i < n; i++) o[i] = xr[i] * inv * w[i];
    }
}

void rope_inv_freq(const ModelConfig *cfg, double *inv_freq) {
    int d = cfg->head_dim, half = d / 2;
    for (int i = 0; i < half; i++) {
        double inv = 1.0 / pow((double)cfg->rope_theta, (2.0 * i) / d);
        if (cfg->rope_llama3) {
            double orig = cfg->rope_orig_max_pos, factor = cfg->rope_factor;
            double low = cfg->rope_low_freq_factor, high = cfg->rope_high_freq_factor;
            double wavelen = 2 * M_PI / inv;
            if (wavelen > orig / low) inv = inv / factor;
            else if (wavelen >= orig / high) {
                double smooth = (orig / wavelen - low) / (high - low);
                inv = (1 - smooth) * inv / factor + smooth * inv;
            }
        }
        inv_freq[i] = inv;
    }
}

void rope_fill(const double *inv_freq, int half, float *cos_t, float *sin_t, int from, int to) {
    for (int p = from; p < to; p++)
        for (int i = 0; i < half; i++) {
            double a = p * inv_freq[i];
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
}

void rope_apply(float *v, int half, const float *c, const float *s) {
#pragma omp simd
    for (int i = 0; i < half; i++) {
        float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c[i] - x1 * s[i];
        v[i + half] = x1 * c[i] + x0 * s[i];
    }
}

OPS_CLONES void silu_mul_rows(float *h, int ld, int rows, int hidden) {
    for (int r = 0; r < rows; r++) {
        float *g = h + (size_t)r * ld, *u = g + hidden;
#pragma omp simd
        for (int j = 0; j < hidden; j++) g[j] = g[j] / (1.0f + fast_expf(-g[j])) * u[j];
    }
}

static inline __attribute__((always_inline)) float dot(const float *a, const float *b, int n) {
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

/* scores[j] = q . k_j * scale for keys 0..n_keys-1 across the segments. */
static inline __attribute__((always_inline)) void score_keys(const float *q, const KVSegment *segs, int n_segs, int layer, int kv_dim,
                       int koff, int hd, float scale, int n_keys, float *scores) {
    int j = 0;
    for (int s = 0; s < n_segs && j < n_keys; s++) {
        const float *k = segs[s].k + (size_t)layer * segs[s].capacity * kv_dim + koff;
        int m = segs[s].len < n_keys - j ? segs[s].len : n_keys - j;
        for (int t = 0; t < m; t++) scores[j + t] = dot(q, k + (size_t)t * kv_dim, hd) * scale;
        j += m;
    }
}

static inline __attribute__((always_inline)) void mix_values(float *out, const KVSegment *segs, int n_segs, int layer, int kv_dim,
                       int voff, int hd, int n_keys, const float *p) {
    memset(out, 0, (size_t)hd * sizeof *out);
    int j = 0;
    for (int s = 0; s < n_segs && j < n_keys; s++) {
        const float *v = segs[s].v + (size_t)layer * segs[s].capacity * kv_dim + voff;
        int m = segs[s].len < n_keys - j ? segs[s].len : n_keys - j;
        for (int t = 0; t < m; t++) {
            const float *vt = v + (size_t)t * kv_dim;
            float w = p[j + t];
#pragma omp simd
            for (int d = 0; d < hd; d++) out[d] += w * vt[d];
        }
        j += m;
    }
}

OPS_CLONES void attend_head(const float *q, int ldq, float *out, int ldo, int n_q, int pos0,
                 const KVSegment *segs, int n_segs, int layer, int kv_dim, int kvh, int head_dim,
                 float *scores) {
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int i = 0; i < n_q; i++) {
        int n_keys = pos0 + i + 1;   /* causal: itself and everything before */
        const float *qi = q + (size_t)i * ldq;
        score_keys(qi, segs, n_segs, layer, kv_dim, kvh * head_dim, head_dim, scale, n_keys, scores);
        float mx = scores[0];
        for (int j = 1; j < n_keys; j++) mx = scores[j] > mx ? scores[j] : mx;
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n_keys; j++) {
            scores[j] = fast_expf(scores[j] - mx);
            sum += scores[j];
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < n_keys; j++) scores[j] *= inv;
        mix_values(out + (size_t)i * ldo, segs, n_segs, layer, kv_dim, kvh * head_dim, head_dim,
                   n_keys, scores);
    }
}
