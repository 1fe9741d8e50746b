/* kvcache.h - the KV cache's inside, shared by kvcache.c and transformer.c.
 *
 * A cache owns K and V for `capacity` positions laid out
 * [layer][position][kv_dim] (one position's K for one layer is contiguous, so
 * attention walks keys with a fixed stride). It may sit on a read-only prefix
 * cache (itself possibly on another): the positions it holds start at the
 * prefix's length, recorded when the cache was made.
 */
#ifndef GUARDD_KVCACHE_H
#define GUARDD_KVCACHE_H
#include <stddef.h>
#include "transformer.h"

#define KV_MAX_DEPTH 8   /* prefix chain length limit (root .. this cache) */

struct KVCache {
    int n_layers, kv_dim;
    int capacity, len;        /* own positions */
    const KVCache *prefix;
    int prefix_len;           /* kv_len(prefix) when this cache was made */
    float *k, *v;             /* [n_layers][capacity][kv_dim] */
};

/* One link of a prefix chain as attention sees it. */
typedef struct { const float *k, *v; int len, capacity; } KVSegment;

/* Fills segs root first, ending with kv itself; returns the count, or -1 if a
 * prefix changed length since a cache on it was made. */
int kv_segments(const KVCache *kv, KVSegment segs[KV_MAX_DEPTH]);

static inline float *kv_k_at(KVCache *kv, int layer, int own_pos) {
    return kv->k + ((size_t)layer * kv->capacity + own_pos) * kv->kv_dim;
}
static inline float *kv_v_at(KVCache *kv, int layer, int own_pos) {
    return kv->v + ((size_t)layer * kv->capacity + own_pos) * kv->kv_dim;
}
#endif
