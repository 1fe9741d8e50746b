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

/* Keys are visited in increasing index across the segments (prefix first);
 * the cursor finds key j's row without rescanning the segment list. */
typedef struct {
    const KVSegment *segs;
    int n_segs, s, base;    /* current segment and the index of its first key */
    int layer, kv_dim, koff;
    int values;             /* 0: rows of K, 1: rows of V */
} KeyCursor;

static inline const float *key_row(KeyCursor *c, int j) {
    while (c->s < c->n_segs - 1 && j >= c->base + c->segs[c->s].len) c->base += c->segs[c->s++].len;
    const KVSegment *g = &c->segs[c->s];
    const float *m = c->values ? g->v : g->k;
    return m + ((size_t)c->layer * g->capacity + (size_t)(j - c->base)) * c->kv_dim + c->koff;
}

/* Decode rows (too few to pay for a transposed key tile) score 4 keys at a
 * time: each key's 8-lane partial sums, then a shuffle tree that adds their
 * lanes into 4 scores at once (4 half-adds, then 3 adds and 6 one-instruction
 * shuffles on 4 lanes) instead of a full horizontal sum per key, and mix
 * values in registers. GCC's vector extensions, 8 lanes: ymm in the AVX2 and
 * AVX-512 clones. In the baseline clone (SSE2) 8-lane vectors live in
 * memory (a scalar times one became 8 stores and 2 loads), twice the old
 * code's time there, so that clone keeps the per-key dot products and
 * mix_values (wide_vectors()). */
static inline int wide_vectors(void) {
#if OPS_HAVE_CLONES
    return __builtin_cpu_supports("x86-64-v3");   /* the resolver's own test */
#elif defined(__AVX2__)
    return 1;
#else
    return 0;
#endif
}

typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));
/* 8 floats from any address (no alignment, may alias float) */
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
#define load8(p) (*(const v8f_u *)(p))

/* the low half of *a plus its high half */
static inline __attribute__((always_inline)) void fold8(v4f *out, const v8f *a) {
    v4f lo, hi;
    memcpy(&lo, a, sizeof lo);
    memcpy(&hi, (const char *)a + sizeof lo, sizeof hi);
    *out = lo + hi;
}

/* lane t of *out = the sum of the lanes of b[t], t < 4: pairs (0, 1) and
 * (2, 3) by 64-bit halves, then the two results by 32-bit lanes, which
 * leaves b[t]'s sum in lane t. */
static inline __attribute__((always_inline)) void sum_lanes4(v4f *out, const v4f *b) {
    const v4i d0 = {0, 1, 4, 5}, d1 = {2, 3, 6, 7}, s0 = {0, 2, 4, 6}, s1 = {1, 3, 5, 7};
    v4f c0 = __builtin_shuffle(b[0], b[1], d0) + __builtin_shuffle(b[0], b[1], d1);
    v4f c1 = __builtin_shuffle(b[2], b[3], d0) + __builtin_shuffle(b[2], b[3], d1);
    *out = __builtin_shuffle(c0, c1, s0) + __builtin_shuffle(c0, c1, s1);
}

/* scores[j] = q . k_j * scale for keys j < n_keys; hd % 16 == 0. Keys past
 * n_keys in the last group repeat the group's first key: computed, never
 * stored. Two accumulators per key (even and odd 8-element chunks) give 8
 * independent FMA chains (8 keys with one accumulator each measured no
 * faster: the loads of K bound both). */
static inline __attribute__((always_inline)) void score_keys4(const float *q, KeyCursor *c, int hd, float scale,
                                                            int n_keys, float *scores) {
    c->s = 0;
    c->base = 0;
    for (int j0 = 0; j0 < n_keys; j0 += 4) {
        int nk = n_keys - j0 < 4 ? n_keys - j0 : 4;
        const float *k0 = key_row(c, j0);
        const float *k1 = nk > 1 ? key_row(c, j0 + 1) : k0, *k2 = nk > 2 ? key_row(c, j0 + 2) : k0;
        const float *k3 = nk > 3 ? key_row(c, j0 + 3) : k0;
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, e0 = {0}, e1 = {0}, e2 = {0}, e3 = {0};
        for (int d = 0; d < hd; d += 16) {
            v8f x = load8(q + d), y = load8(q + d + 8);
            a0 += x * load8(k0 + d);
            a1 += x * load8(k1 + d);
            a2 += x * load8(k2 + d);
            a3 += x * load8(k3 + d);
            e0 += y * load8(k0 + d + 8);
            e1 += y * load8(k1 + d + 8);
            e2 += y * load8(k2 + d + 8);
            e3 += y * load8(k3 + d + 8);
        }
        a0 += e0;
        a1 += e1;
        a2 += e2;
        a3 += e3;
        v4f b[4], s;
        fold8(&b[0], &a0);
        fold8(&b[1], &a1);
        fold8(&b[2], &a2);
        fold8(&b[3], &a3);
        sum_lanes4(&s, b);
        s *= scale;
        if (nk == 4) memcpy(scores + j0, &s, sizeof s);
        else for (int t = 0; t < nk; t++) scores[j0 + t] = s[t];
    }
}

/* out = sum_j p[j] v_j for one row; hd % 32 == 0. 32 output elements at a
 * time in registers, even and odd keys in separate accumulators (two FMA
 * chains per element), instead of loading and storing out for every key. */
static inline __attribute__((always_inline)) void mix_row32(float *out, const float *p, int n_keys, KeyCursor *c,
                                                          int hd) {
    for (int d0 = 0; d0 < hd; d0 += 32) {
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
        c->s = 0;
        c->base = 0;
        int j = 0;
        for (; j + 1 < n_keys; j += 2) {
            const float *v0 = key_row(c, j) + d0, *v1 = key_row(c, j + 1) + d0;
            float w0 = p[j], w1 = p[j + 1];
            a0 += w0 * load8(v0);
            a1 += w0 * load8(v0 + 8);
            a2 += w0 * load8(v0 + 16);
            a3 += w0 * load8(v0 + 24);
            b0 += w1 * load8(v1);
            b1 += w1 * load8(v1 + 8);
            b2 += w1 * load8(v1 + 16);
            b3 += w1 * load8(v1 + 24);
        }
        if (j < n_keys) {
            const float *v0 = key_row(c, j) + d0;
            float w0 = p[j];
            a0 += w0 * load8(v0);
            a1 += w0 * load8(v0 + 8);
            a2 += w0 * load8(v0 + 16);
            a3 += w0 * load8(v0 + 24);
        }
        v8f s[4] = {a0 + b0, a1 + b1, a2 + b2, a3 + b3};
        memcpy(out + d0, s, sizeof s);
    }
}

/* scores[j] = q . k_j * scale for keys 0..n_keys-1 across the segments, one
 * horizontal dot product per key (the baseline clone, or head_dim not a
 * multiple of 16). */
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

/* kt[d * ATT_KB + t] = key (j0 + t)[d] for t < nk, 0 for the rest of the tile:
 * transposed so that one query element times a tile row is one vector FMA. */
static inline __attribute__((always_inline)) void load_key_tile(float *kt, KeyCursor *c, int j0, int nk, int hd) {
    for (int t = 0; t < ATT_KB; t++) {
        if (t < nk) {
            const float *k = key_row(c, j0 + t);
            for (int d = 0; d < hd; d++) kt[d * ATT_KB + t] = k[d];
        } else {
            for (int d = 0; d < hd; d++) kt[d * ATT_KB + t] = 0;
        }
    }
}

/* Transposing a key tile costs about as much as scoring it against a dozen
 * rows with plain dot products: fewer rows than this use score_keys. */
#define ATT_TILE_MIN_ROWS 12

/* scores[r * lds + j] = q_r . k_j * scale for rows r < nr (<= ATT_QB) and keys
 * j < n_keys. Each tile of ATT_KB keys is transposed once and then scored
 * against every row, four rows at a time: four independent FMA chains over
 * the head dimension and no horizontal sums (one per key per row, as plain
 * dot products need, costs more than the multiplications at head_dim 64). */
static inline __attribute__((always_inline)) void score_rows(const float *q, int ldq, int nr, KeyCursor *c, int hd,
                                                           float scale, int n_keys, float *kt, float *scores,
                                                           int lds) {
    c->s = 0;
    c->base = 0;
    for (int j0 = 0; j0 < n_keys; j0 += ATT_KB) {
        int nk = n_keys - j0 < ATT_KB ? n_keys - j0 : ATT_KB;
        load_key_tile(kt, c, j0, nk, hd);
        for (int r0 = 0; r0 < nr; r0 += 4) {
            const float *q0 = q + (size_t)r0 * ldq;
            /* rows past nr repeat row r0: computed, never stored */
            const float *q1 = r0 + 1 < nr ? q0 + ldq : q0;
            const float *q2 = r0 + 2 < nr ? q0 + 2 * (size_t)ldq : q0;
            const float *q3 = r0 + 3 < nr ? q0 + 3 * (size_t)ldq : q0;
            float a0[ATT_KB] = {0}, a1[ATT_KB] = {0}, a2[ATT_KB] = {0}, a3[ATT_KB] = {0};
            for (int d = 0; d < hd; d++) {
                const float *kd = kt + d * ATT_KB;
                float x0 = q0[d], x1 = q1[d], x2 = q2[d], x3 = q3[d];
#pragma omp simd
                for (int t = 0; t < ATT_KB; t++) {
                    a0[t] += x0 * kd[t];
                    a1[t] += x1 * kd[t];
                    a2[t] += x2 * kd[t];
                    a3[t] += x3 * kd[t];
                }
            }
            const float *acc[4] = {a0, a1, a2, a3};
            for (int r = 0; r < 4 && r0 + r < nr; r++)
                for (int t = 0; t < nk; t++) scores[(size_t)(r0 + r) * lds + j0 + t] = acc[r][t] * scale;
        }
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

/* out_r = sum_j p_r[j] v_j for four rows at once (rows past nr repeat row 0:
 * computed, never stored), 16 output elements at a time so the four
 * accumulators stay in registers and each value row is loaded once for all
 * four. Needs head_dim % 16 == 0; p_r[j] must be 0 where row r is masked. */
static inline __attribute__((always_inline)) void mix_block(float *out, int ldo, int nr, const float *p, int lds,
                                                          int n_keys, KeyCursor *c, int hd) {
    const float *p0 = p, *p1 = nr > 1 ? p + lds : p;
    const float *p2 = nr > 2 ? p + 2 * (size_t)lds : p, *p3 = nr > 3 ? p + 3 * (size_t)lds : p;
    for (int d0 = 0; d0 < hd; d0 += 16) {
        float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
        c->s = 0;
        c->base = 0;
        for (int j = 0; j < n_keys; j++) {
            const float *v = key_row(c, j) + d0;
            float w0 = p0[j], w1 = p1[j], w2 = p2[j], w3 = p3[j];
#pragma omp simd
            for (int t = 0; t < 16; t++) {
                a0[t] += w0 * v[t];
                a1[t] += w1 * v[t];
                a2[t] += w2 * v[t];
                a3[t] += w3 * v[t];
            }
        }
        float *acc[4] = {a0, a1, a2, a3};
        for (int r = 0; r < nr && r < 4; r++) memcpy(out + (size_t)r * ldo + d0, acc[r], sizeof a0);
    }
}

size_t attend_scratch_floats(int n_ctx, int head_dim) {
    return (size_t)ATT_QB * (size_t)n_ctx + (size_t)ATT_KB * (size_t)head_dim;
}

static inline __attribute__((always_inline)) void softmax_row(float *x, int n) {
    float mx = x[0];
    for (int j = 1; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        x[j] = fast_expf(x[j] - mx);
        sum += x[j];
    }
    float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < n; j++) x[j] *= inv;
}

OPS_CLONES void attend_head(const float *q, int ldq, float *out, int ldo, int n_q, int pos0,
                 const KVSegment *segs, int n_segs, int layer, int kv_dim, int kvh, int head_dim,
                 float *scratch) {
    float scale = 1.0f / sqrtf((float)head_dim);
    int ctx = pos0 + n_q;                       /* row stride of the score block */
    float *kt = scratch + (size_t)ATT_QB * ctx; /* one transposed key tile */
    KeyCursor c = {.segs = segs, .n_segs = n_segs, .layer = layer, .kv_dim = kv_dim,
                   .koff = kvh * head_dim};
    KeyCursor v = c;
    v.values = 1;
    int wide = wide_vectors();
    for (int i0 = 0; i0 < n_q; i0 += ATT_QB) {
        int nr = n_q - i0 < ATT_QB ? n_q - i0 : ATT_QB;
        /* causal: row r sees pos0 + i0 + r + 1 keys; the block scores up to
         * the last row's count, and each row's probabilities past its own
         * count are zeroed so rows can be mixed together */
        int n_block = pos0 + i0 + nr;
        if (nr >= ATT_TILE_MIN_ROWS) {
            score_rows(q + (size_t)i0 * ldq, ldq, nr, &c, head_dim, scale, n_block, kt, scratch, ctx);
        } else {   /* too few rows to pay for transposing the keys (decode steps) */
            for (int r = 0; r < nr; r++) {
                const float *qr = q + (size_t)(i0 + r) * ldq;
                if (head_dim % 16 == 0 && wide)
                    score_keys4(qr, &c, head_dim, scale, pos0 + i0 + r + 1, scratch + (size_t)r * ctx);
                else
                    score_keys(qr, segs, n_segs, layer, kv_dim, kvh * head_dim, head_dim, scale,
                               pos0 + i0 + r + 1, scratch + (size_t)r * ctx);
            }
        }
        for (int r = 0; r < nr; r++) {
            int n_keys = pos0 + i0 + r + 1;
            float *p = scratch + (size_t)r * ctx;
            softmax_row(p, n_keys);
            memset(p + n_keys, 0, (size_t)(n_block - n_keys) * sizeof *p);
        }
        for (int r0 = 0; r0 < nr; r0 += 4) {
            int m = nr - r0 < 4 ? nr - r0 : 4;
            float *o = out + (size_t)(i0 + r0) * ldo;
            const float *p = scratch + (size_t)r0 * ctx;
            if (head_dim % 16 == 0 && m > 1) {
                mix_block(o, ldo, m, p, ctx, pos0 + i0 + r0 + m, &v, head_dim);
            } else if (head_dim % 32 == 0 && wide) {
                for (int r = 0; r < m; r++)
                    mix_row32(o + (size_t)r * ldo, p + (size_t)r * ctx, pos0 + i0 + r0 + r + 1, &v, head_dim);
            } else {
                for (int r = 0; r < m; r++)
                    mix_values(o + (size_t)r * ldo, segs, n_segs, layer, kv_dim, kvh * head_dim,
                               head_dim, pos0 + i0 + r0 + r + 1, p + (size_t)r * ctx);
            }
        }
    }
}
