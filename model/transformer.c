/* transformer.c - the batched Llama 3 forward pass (contract: transformer.h).
 *
 * All new tokens of all sequences are stacked into one activation matrix x
 * [T, dim] (sequence after sequence), so each layer costs four matrix
 * products with M = T rows (weights.h: wm_matmul, whatever the weights'
 * stored precision): x·Wqkvᵀ, attn·Woᵀ (added into x), x·W13ᵀ (gate and up
 * side by side), silu(gate)*up·W2ᵀ (added into x). Only attention is per
 * sequence: each (sequence, head) pair is one OpenMP task reading that
 * sequence's KV segments (shared prefix, views, own cache: kvcache.h).
 *
 * Work skipped because nobody reads it: in the last layer only the rows whose
 * logits are wanted go through attention, Wo and the MLP (every row still
 * writes its K/V), and only those rows reach the final norm and lm_head.
 *
 * A Transformer keeps scratch buffers sized to the largest batch seen, so it
 * is not reentrant: one forward at a time per Transformer.
 */
#include "errmsg.h"
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gemm.h"
#include "weights.h"
#include "kvcache.h"
#include "ops.h"
#include "transformer.h"

#define MLP_CHUNK 2048           /* MLP rows per pass: bounds the [rows, 2*hidden] buffer */

struct Transformer {
    const Model *m;
    ModelConfig c;
    int threads;
    int q_dim, kv_dim, qkv_dim;
    double *inv_freq;          /* head_dim/2 */
    float *cos_t, *sin_t;      /* [rope_len][head_dim/2] */
    int rope_len;
    int cap_rows;              /* rows the buffers below hold */
    float *x, *xn;
    float *qkv, *att, *h;      /* all three in `shared`: see ensure_rows */
    float *shared;
    size_t scores_cap;         /* floats in scores */
    float *scores;             /* per-thread attention scratch */
    float *logit_buf;          /* [cap_logits][vocab], for callers' rows that are not one matrix */
    int cap_logits;
    void (*progress)(void *);  /* after each layer, see transformer_set_progress */
    void *progress_arg;
    const atomic_int *abort;   /* see transformer_set_abort */
};

/* Per-sequence layout of one batch. */
typedef struct {
    int row0;         /* first row in x */
    int n;            /* new tokens */
    int pos0;         /* absolute position of the first new token */
    int lrow0;        /* first compacted logit row */
    int n_segs;
    KVSegment *segs;  /* into the batch's segment array */
} SeqPlan;

Transformer *transformer_new(const Model *m, int threads) {
    if (!m) return NULL;
    const ModelConfig *c = &m->cfg;
    if (c->n_layers <= 0 || c->dim <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->n_heads % c->n_kv_heads || c->head_dim <= 0 || c->head_dim % 2 || c->hidden_dim <= 0 ||
        c->vocab_size <= 0 || m->w.embed.rows != c->vocab_size || m->w.embed.cols != c->dim ||
        !m->w.layers || !m->w.final_norm || m->w.lm_head.rows != c->vocab_size ||
        m->w.lm_head.cols != c->dim)
        return NULL;
    Transformer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->m = m;
    t->c = *c;
    t->threads = threads > 0 ? threads : blis_threads();
    t->q_dim = c->n_heads * c->head_dim;
    t->kv_dim = c->n_kv_heads * c->head_dim;
    t->qkv_dim = t->q_dim + 2 * t->kv_dim;
    t->inv_freq = malloc(sizeof(double) * (size_t)(c->head_dim / 2));
    if (!t->inv_freq) { free(t); return NULL; }
    rope_inv_freq(c, t->inv_freq);
    return t;
}

void transformer_set_progress(Transformer *t, void (*fn)(void *arg), void *arg) {
    if (!t) return;
    t->progress = fn;
    t->progress_arg = arg;
}

void transformer_set_abort(Transformer *t, const atomic_int *flag) {
    if (t) t->abort = flag;
}

static int aborted(const Transformer *t) { return t->abort && atomic_load(t->abort); }

void transformer_free(Transformer *t) {
    if (!t) return;
    free(t->inv_freq);
    free(t->cos_t);
    free(t->sin_t);
    free(t->x);
    free(t->xn);
    free(t->shared);
    free(t->scores);
    free(t->logit_buf);
    free(t);
}

/* Grows a float buffer to n elements (contents not kept). */
static int grow(float **p, size_t n) {
    float *q = malloc(n * sizeof(float));
    if (!q) return -1;
    free(*p);
    *p = q;
    return 0;
}

/* qkv and att (the attention's input and output) and h (the MLP's) are
 * never live at once: a layer's MLP starts after wo has read att, and the
 * next layer's wqkv after w2 has read h. So they share one buffer, the
 * larger of h and qkv + att; at 1024 rows of the 1B that is h's 67 MB, and
 * qkv + att's 21 MB are no longer held besides it. */
static int ensure_rows(Transformer *t, int rows) {
    if (rows <= t->cap_rows) return 0;
    size_t r = (size_t)rows;
    size_t attn = r * (size_t)(t->qkv_dim + t->q_dim);
    size_t mlp = (size_t)(rows < MLP_CHUNK ? rows : MLP_CHUNK) * 2 * t->c.hidden_dim;
    if (grow(&t->x, r * t->c.dim) || grow(&t->xn, r * t->c.dim) ||
        grow(&t->shared, attn > mlp ? attn : mlp)) {
        t->cap_rows = 0;   /* some buffers may be smaller now: force regrowth */
        return -1;
    }
    t->qkv = t->shared;
    t->att = t->shared + r * t->qkv_dim;
    t->h = t->shared;
    t->cap_rows = rows;
    return 0;
}

/* cos/sin rows for positions [0, n), extended without recomputing old ones. */
static int ensure_rope(Transformer *t, int n) {
    if (n <= t->rope_len) return 0;
    int half = t->c.head_dim / 2;
    int want = n > 2 * t->rope_len ? n : 2 * t->rope_len;
    if (t->c.max_pos > 0 && want > t->c.max_pos) want = n > t->c.max_pos ? n : t->c.max_pos;
    float *c = realloc(t->cos_t, sizeof(float) * (size_t)want * half);
    if (!c) return -1;
    t->cos_t = c;
    float *s = realloc(t->sin_t, sizeof(float) * (size_t)want * half);
    if (!s) return -1;
    t->sin_t = s;
    rope_fill(t->inv_freq, half, t->cos_t, t->sin_t, t->rope_len, want);
    t->rope_len = want;
    return 0;
}

static int ensure_scratch(Transformer *t, size_t scores, int logits) {
    if (scores > t->scores_cap) {
        if (grow(&t->scores, scores)) { t->scores_cap = 0; return -1; }
        t->scores_cap = scores;
    }
    if (logits > t->cap_logits) {
        if (grow(&t->logit_buf, (size_t)logits * t->c.vocab_size)) { t->cap_logits = 0; return -1; }
        t->cap_logits = logits;
    }
    return 0;
}

/* True if cache c is the leaf or an ancestor of any other sequence's cache. */
static int kv_in_use_elsewhere(const SeqInput *seqs, int n, int self, const KVCache *c) {
    for (int i = 0; i < n; i++) {
        if (i == self) continue;
        for (const KVCache *p = seqs[i].kv; p; p = p->prefix)
            if (p == c) return 1;
    }
    return 0;
}

/* Checks every input, lays the batch out in plan; returns T or -1. */
static int plan_batch(Transformer *t, SeqInput *seqs, int n, SeqPlan *plan, KVSegment *segs,
                      int *n_logit_rows, int *max_ctx, char *err, size_t errlen) {
    long rows = 0, lrows = 0;
    *max_ctx = 0;
    for (int i = 0; i < n; i++) {
        SeqInput *s = &seqs[i];
        KVCache *kv = s->kv;
        if (!kv) return errmsg(err, errlen, "sequence %d: no KV cache", i);
        if (kv->n_layers != t->c.n_layers || kv->kv_dim != t->kv_dim)
            return errmsg(err, errlen, "sequence %d: KV cache made for another model shape", i);
        if (s->n_tokens < 0 || (s->n_tokens > 0 && !s->tokens))
            return errmsg(err, errlen, "sequence %d: bad token count %d", i, s->n_tokens);
        if (s->n_logits < 0 || s->n_logits > s->n_tokens || (s->n_logits > 0 && !s->logits))
            return errmsg(err, errlen, "sequence %d: asks logits for %d of %d new tokens", i,
                        s->n_logits, s->n_tokens);
        if (s->n_tokens > kv->capacity - kv->len)
            return errmsg(err, errlen, "sequence %d: KV cache full (%d new tokens, room for %d)", i,
                        s->n_tokens, kv->capacity - kv->len);
        for (int j = 0; j < s->n_tokens; j++)
            if (s->tokens[j] < 0 || s->tokens[j] >= t->c.vocab_size)
                return errmsg(err, errlen, "sequence %d: token id %d at %d outside vocabulary [0, %d)",
                            i, s->tokens[j], j, t->c.vocab_size);
        if (s->n_tokens && kv_in_use_elsewhere(seqs, n, i, kv))
            return errmsg(err, errlen, "sequence %d: its KV cache is also used by another sequence "
                        "of the batch", i);
        SeqPlan *p = &plan[i];
        p->segs = segs;
        p->n_segs = kv_segments(kv, p->segs);
        if (p->n_segs < 0)
            return errmsg(err, errlen, "sequence %d: prefix KV cache changed length since this "
                        "cache was made", i);
        p->segs[p->n_segs - 1].len += s->n_tokens;   /* attention sees this batch's K/V */
        segs += p->n_segs;
        p->row0 = (int)rows;
        p->n = s->n_tokens;
        p->pos0 = kv_len(kv);
        p->lrow0 = (int)lrows;
        rows += s->n_tokens;
        lrows += s->n_logits;
        if (rows > TRANSFORMER_MAX_BATCH_TOKENS)
            return errmsg(err, errlen, "batch over %d tokens", TRANSFORMER_MAX_BATCH_TOKENS);
        if (p->pos0 + p->n > *max_ctx) *max_ctx = p->pos0 + p->n;
    }
    *n_logit_rows = (int)lrows;
    return (int)rows;
}

static void embed_rows(Transformer *t, const SeqInput *seqs, int n) {
    int dim = t->c.dim;
    for (int i = 0, r = 0; i < n; i++)
        for (int j = 0; j < seqs[i].n_tokens; j++, r++)
            wm_row(&t->m->w.embed, seqs[i].tokens[j], t->x + (size_t)r * dim);
}

/* RoPE on q and k of every new row, then k and v into the sequence's cache. */
static void rope_and_store(Transformer *t, const SeqInput *seqs, const SeqPlan *plan, int n,
                           int layer) {
    int hd = t->c.head_dim, half = hd / 2;
#pragma omp parallel for schedule(static) num_threads(t->threads)
    for (int i = 0; i < n; i++) {
        KVCache *kv = seqs[i].kv;
        for (int j = 0; j < plan[i].n; j++) {
            float *row = t->qkv + (size_t)(plan[i].row0 + j) * t->qkv_dim;
            int pos = plan[i].pos0 + j;
            const float *c = t->cos_t + (size_t)pos * half, *s = t->sin_t + (size_t)pos * half;
            for (int h = 0; h < t->c.n_heads + t->c.n_kv_heads; h++)   /* q heads, then k heads */
                rope_apply(row + h * hd, half, c, s);
            memcpy(kv_k_at(kv, layer, kv->len + j), row + t->q_dim, sizeof(float) * t->kv_dim);
            memcpy(kv_v_at(kv, layer, kv->len + j), row + t->q_dim + t->kv_dim,
                   sizeof(float) * t->kv_dim);
        }
    }
}

/* Attention for the last `keep[i]` new tokens of each sequence (all of them
 * unless last layer); outputs go to att rows out_row0[i].. */
static void attention(Transformer *t, const SeqPlan *plan, int n, int layer, const int *keep,
                      const int *out_row0, int max_ctx) {
    int hd = t->c.head_dim, group = t->c.n_heads / t->c.n_kv_heads;
    int tasks = n * t->c.n_heads;
#pragma omp parallel for schedule(dynamic) num_threads(t->threads)
    for (int task = 0; task < tasks; task++) {
        int i = task / t->c.n_heads, h = task % t->c.n_heads;
        int skip = plan[i].n - keep[i];
        if (keep[i] <= 0) continue;
        float *scores = t->scores + (size_t)omp_get_thread_num() * attend_scratch_floats(max_ctx, hd);
        const float *q = t->qkv + (size_t)(plan[i].row0 + skip) * t->qkv_dim + h * hd;
        float *out = t->att + (size_t)out_row0[i] * t->q_dim + h * hd;
        attend_head(q, t->qkv_dim, out, t->q_dim, keep[i], plan[i].pos0 + skip, plan[i].segs,
                    plan[i].n_segs, layer, t->kv_dim, h / group, hd, scores);
    }
}

static void norm_rows(Transformer *t, float *out, const float *x, const float *w, int rows) {
    int chunk = rows / t->threads + 1;
#pragma omp parallel for schedule(static) num_threads(t->threads)
    for (int r0 = 0; r0 < rows; r0 += chunk) {
        int m = rows - r0 < chunk ? rows - r0 : chunk;
        rmsnorm_rows(out + (size_t)r0 * t->c.dim, t->c.dim, x + (size_t)r0 * t->c.dim, t->c.dim, w,
                     m, t->c.dim, t->c.norm_eps);
    }
}

/* x += W2·(silu(W1·xn) * W3·xn) for `rows` rows from r0 (at most MLP_CHUNK). */
static void mlp_chunk(Transformer *t, const LayerWeights *lw, int r0, int rows) {
    int dim = t->c.dim, hid = t->c.hidden_dim;
    float *x = t->x + (size_t)r0 * dim, *xn = t->xn + (size_t)r0 * dim;
    norm_rows(t, xn, x, lw->mlp_norm, rows);
    wm_matmul(&lw->w13, rows, xn, dim, t->h, 2 * hid, 0, t->threads);
    int chunk = rows / t->threads + 1;
#pragma omp parallel for schedule(static) num_threads(t->threads)
    for (int a = 0; a < rows; a += chunk) {
        int m = rows - a < chunk ? rows - a : chunk;
        silu_mul_rows(t->h + (size_t)a * 2 * hid, 2 * hid, m, hid);
    }
    wm_matmul(&lw->w2, rows, t->h, 2 * hid, x, dim, 1, t->threads);
}

static void mlp(Transformer *t, const LayerWeights *lw, int rows) {
    for (int r0 = 0; r0 < rows; r0 += MLP_CHUNK)
        mlp_chunk(t, lw, r0, rows - r0 < MLP_CHUNK ? rows - r0 : MLP_CHUNK);
}

/* Moves the logit rows of x to its first rows (row order only ever moves
 * down, so copying forward is safe). */
static void compact_logit_rows(Transformer *t, const SeqPlan *plan, const SeqInput *seqs, int n) {
    int dim = t->c.dim;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < seqs[i].n_logits; j++) {
            int from = plan[i].row0 + plan[i].n - seqs[i].n_logits + j, to = plan[i].lrow0 + j;
            if (from != to)
                memmove(t->x + (size_t)to * dim, t->x + (size_t)from * dim, sizeof(float) * dim);
        }
}

static void layer(Transformer *t, int l, const SeqInput *seqs, const SeqPlan *plan, int n, int T,
                  int L, int max_ctx, int *keep, int *out_row0) {
    const LayerWeights *lw = &t->m->w.layers[l];
    int dim = t->c.dim, last = l == t->c.n_layers - 1;
    norm_rows(t, t->xn, t->x, lw->attn_norm, T);
    wm_matmul(&lw->wqkv, T, t->xn, dim, t->qkv, t->qkv_dim, 0, t->threads);
    rope_and_store(t, seqs, plan, n, l);
    for (int i = 0; i < n; i++) {
        keep[i] = last ? seqs[i].n_logits : plan[i].n;
        out_row0[i] = last ? plan[i].lrow0 : plan[i].row0;
    }
    attention(t, plan, n, l, keep, out_row0, max_ctx);
    int rows = T;
    if (last) {
        compact_logit_rows(t, plan, seqs, n);
        rows = L;
    }
    wm_matmul(&lw->wo, rows, t->att, t->q_dim, t->x, dim, 1, t->threads);
    mlp(t, lw, rows);
}

/* The callers' logit buffers, when they follow each other as rows of one
 * matrix (classifier.c's and the benchmarks' do): the first one, into which
 * lm_head then writes directly; NULL otherwise (rows go through logit_buf). */
static float *logits_in_place(const SeqInput *seqs, int n, int V) {
    float *base = NULL;
    size_t r = 0;
    for (int i = 0; i < n; i++) {
        if (seqs[i].n_logits <= 0) continue;
        if (!base) base = seqs[i].logits;
        else if (seqs[i].logits != base + r * V) return NULL;
        r += (size_t)seqs[i].n_logits;
    }
    return base;
}

static void final_logits(Transformer *t, SeqInput *seqs, int n, int L) {
    int dim = t->c.dim, V = t->c.vocab_size;
    norm_rows(t, t->xn, t->x, t->m->w.final_norm, L);
    float *direct = logits_in_place(seqs, n, V);
    wm_matmul(&t->m->w.lm_head, L, t->xn, dim, direct ? direct : t->logit_buf, V, 0, t->threads);
    if (direct) return;
    for (int i = 0, r = 0; i < n; i++) {
        size_t cnt = (size_t)seqs[i].n_logits * V;
        if (cnt) memcpy(seqs[i].logits, t->logit_buf + (size_t)r * V, cnt * sizeof(float));
        r += seqs[i].n_logits;
    }
}

int transformer_forward(Transformer *t, SeqInput *seqs, int n_seqs, char *err, size_t errlen) {
    if (!t || n_seqs < 0 || (n_seqs > 0 && !seqs)) return errmsg(err, errlen, "bad arguments");
    if (n_seqs == 0) return 0;
    size_t n_segs = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (!seqs[i].kv) return errmsg(err, errlen, "sequence %d: no KV cache", i);
        n_segs += (size_t)kv_n_segments(seqs[i].kv);
    }
    SeqPlan *plan = malloc(sizeof *plan * (size_t)n_seqs);
    int *keep = malloc(sizeof(int) * 2 * (size_t)n_seqs);
    KVSegment *segs = malloc(sizeof *segs * n_segs);
    if (!plan || !keep || !segs) {
        free(plan);
        free(keep);
        free(segs);
        return errmsg(err, errlen, "out of memory");
    }
    int L = 0, max_ctx = 0, rc = -1;
    int T = plan_batch(t, seqs, n_seqs, plan, segs, &L, &max_ctx, err, errlen);
    if (T < 0) goto out;
    if (T == 0) { rc = 0; goto out; }
    if (ensure_rows(t, T) || ensure_rope(t, max_ctx) ||
        ensure_scratch(t, (size_t)t->threads * attend_scratch_floats(max_ctx, t->c.head_dim),
                       logits_in_place(seqs, n_seqs, t->c.vocab_size) ? 0 : L)) {
        errmsg(err, errlen, "out of memory for a batch of %d tokens", T);
        goto out;
    }
    embed_rows(t, seqs, n_seqs);
    for (int l = 0; l < t->c.n_layers; l++) {
        /* a layer is the unit of work: the most a cancelled forward still does */
        if (aborted(t)) {
            errmsg(err, errlen, "aborted at layer %d of %d", l, t->c.n_layers);
            rc = TRANSFORMER_ABORTED;
            goto out;
        }
        layer(t, l, seqs, plan, n_seqs, T, L, max_ctx, keep, keep + n_seqs);
        if (t->progress) t->progress(t->progress_arg);
    }
    if (L > 0) final_logits(t, seqs, n_seqs, L);
    if (t->progress) t->progress(t->progress_arg);
    for (int i = 0; i < n_seqs; i++) seqs[i].kv->len += seqs[i].n_tokens;
    rc = 0;
out:
    free(plan);
    free(keep);
    free(segs);
    return rc;
}
