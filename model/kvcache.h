/* kvcache.h - the KV cache's inside: the K/V layout shared by every module
 * that reads or writes K/V directly (kvcache.c, transformer.c,
 * prefix_cache.c, classifier.c).
 *
 * A cache owns K and V for `capacity` positions laid out
 * [layer][position][kv_dim] (one position's K for one layer is contiguous, so
 * attention walks keys with a fixed stride). The positions before its own
 * come from, in order:
 *   - a read-only prefix cache (kv_new; itself possibly on another), whose
 *     length is recorded when the cache is made and must not change;
 *   - then read-only view segments (kv_new_view): any storage with this
 *     layout, e.g. blocks of the prefix cache (prefix_cache.h) or the first
 *     positions of another sequence's own storage. A view segment may point
 *     at positions another sequence of the same transformer_forward batch
 *     writes in that batch: every layer stores all K/V of the batch before
 *     any attention of that layer reads them.
 */
#ifndef GUARDD_KVCACHE_H
#define GUARDD_KVCACHE_H
#include <stddef.h>
#include "transformer.h"

#define KV_MAX_DEPTH 8   /* prefix chain length limit (root .. this cache) */

/* Positions [0, len) of storage laid out [layer][capacity][kv_dim]. */
typedef struct { const float *k, *v; int len, capacity; } KVSegment;

struct KVCache {
    int n_layers, kv_dim;
    int capacity, len;        /* own positions */
    const KVCache *prefix;
    int prefix_len;           /* positions before own: kv_len(prefix) when made + view lengths */
    KVSegment *view;          /* own copy of the view segments (kv_new_view) */
    int n_view;
    float *k, *v;             /* [n_layers][capacity][kv_dim] */
};

/* A cache for `capacity` own positions placed after the n_view segments
 * (copied; the storage they point to must stay unchanged while this cache
 * is used). NULL if a segment is malformed, the total passes the model's
 * positions, or memory runs out. */
KVCache *kv_new_view(const ModelConfig *cfg, int capacity, const KVSegment *view, int n_view);

/* Segments attention reads for kv, root first, ending with kv's own. */
int kv_n_segments(const KVCache *kv);
/* Fills segs (room for kv_n_segments(kv)); returns the count, or -1 if a
 * prefix changed length since a cache on it was made. */
int kv_segments(const KVCache *kv, KVSegment *segs);

static inline float *kv_k_at(KVCache *kv, int layer, int own_pos) {
    return kv->k + ((size_t)layer * kv->capacity + own_pos) * kv->kv_dim;
}
static inline float *kv_v_at(KVCache *kv, int layer, int own_pos) {
    return kv->v + ((size_t)layer * kv->capacity + own_pos) * kv->kv_dim;
}
#endif
