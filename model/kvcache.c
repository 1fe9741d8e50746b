/* kvcache.c - per-sequence K/V storage with an optional shared prefix.
 *
 * kv_new() allocates the full capacity up front (pages are only touched when
 * written), so a forward pass never reallocates and concurrent readers of a
 * prefix never see it move. Layout and chain rules: kvcache.h.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kvcache.h"

static int chain_depth(const KVCache *kv) {
    int d = 0;
    for (; kv; kv = kv->prefix) d++;
    return d;
}

static KVCache *kv_alloc(const ModelConfig *cfg, int capacity, const KVCache *prefix, long base) {
    if (!cfg || capacity < 0 || cfg->n_layers <= 0 || cfg->n_kv_heads <= 0 || cfg->head_dim <= 0)
        return NULL;
    int kv_dim = cfg->n_kv_heads * cfg->head_dim;
    if (prefix && (prefix->n_layers != cfg->n_layers || prefix->kv_dim != kv_dim ||
                   chain_depth(prefix) >= KV_MAX_DEPTH))
        return NULL;
    /* Positions past max_position_embeddings are outside the model's range. */
    if (base > INT32_MAX || (cfg->max_pos > 0 && base + capacity > cfg->max_pos)) return NULL;
    size_t per = (size_t)cfg->n_layers * (size_t)kv_dim;
    if (capacity > 0 && per > SIZE_MAX / sizeof(float) / 2 / (size_t)capacity) return NULL;
    KVCache *kv = calloc(1, sizeof *kv);
    if (!kv) return NULL;
    kv->n_layers = cfg->n_layers;
    kv->kv_dim = kv_dim;
    kv->capacity = capacity;
    kv->prefix = prefix;
    kv->prefix_len = (int)base;
    size_t bytes = per * (size_t)(capacity > 0 ? capacity : 1) * sizeof(float);
    kv->k = malloc(bytes);
    kv->v = malloc(bytes);
    if (!kv->k || !kv->v) { kv_free(kv); return NULL; }
    return kv;
}

KVCache *kv_new(const ModelConfig *cfg, int capacity, const KVCache *prefix) {
    return kv_alloc(cfg, capacity, prefix, prefix ? kv_len(prefix) : 0);
}

KVCache *kv_new_view(const ModelConfig *cfg, int capacity, const KVSegment *view, int n_view) {
    if (n_view < 0 || (n_view > 0 && !view)) return NULL;
    long base = 0;
    for (int i = 0; i < n_view; i++) {
        if (!view[i].k || !view[i].v || view[i].len < 0 || view[i].len > view[i].capacity) return NULL;
        base += view[i].len;
    }
    KVCache *kv = kv_alloc(cfg, capacity, NULL, base);
    if (!kv || n_view == 0) return kv;
    if (!(kv->view = malloc(sizeof *kv->view * (size_t)n_view))) {
        kv_free(kv);
        return NULL;
    }
    memcpy(kv->view, view, sizeof *view * (size_t)n_view);
    kv->n_view = n_view;
    return kv;
}

void kv_free(KVCache *kv) {
    if (!kv) return;
    free(kv->k);
    free(kv->v);
    free(kv->view);
    free(kv);
}

int kv_len(const KVCache *kv) { return kv ? kv->prefix_len + kv->len : 0; }
int kv_own_len(const KVCache *kv) { return kv ? kv->len : 0; }

void kv_truncate(KVCache *kv, int own_len) {
    if (!kv) return;
    if (own_len < 0) own_len = 0;
    if (own_len < kv->len) kv->len = own_len;
}

int kv_n_segments(const KVCache *kv) {
    int n = 0;
    for (const KVCache *c = kv; c; c = c->prefix) n += c->n_view + 1;
    return n;
}

int kv_segments(const KVCache *kv, KVSegment *segs) {
    const KVCache *chain[KV_MAX_DEPTH];
    int depth = 0, n = 0;
    for (const KVCache *c = kv; c; c = c->prefix) {
        if (depth == KV_MAX_DEPTH) return -1;
        if (c->prefix && kv_len(c->prefix) != c->prefix_len) return -1;
        chain[depth++] = c;
    }
    for (int i = depth - 1; i >= 0; i--) {
        const KVCache *c = chain[i];
        for (int s = 0; s < c->n_view; s++) segs[n++] = c->view[s];
        segs[n++] = (KVSegment){c->k, c->v, c->len, c->capacity};
    }
    return n;
}
