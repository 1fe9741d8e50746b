/* prefix_cache.c - block-granular K/V prefix cache (contract: prefix_cache.h).
 *
 * Blocks form a tree (parent = the block before, the root sentinel before
 * block 0); each block lists its children, which a lookup scans only where
 * the hash chain stops, to reuse the common start of a diverging block.
 * A hash table (chained, power-of-two buckets) finds whole blocks. One LRU
 * list holds every block, oldest first; a chain is touched from its end back
 * to its start, so a parent is never older than the children used with it
 * and eviction (oldest unpinned block without children) trims chains from
 * their ends. An evicted block's memory is reused for the block that needed
 * the room.
 */
#include "prefix_cache.h"
#include <stdlib.h>
#include <string.h>

struct PrefixBlock {
    uint64_t hash;
    PrefixBlock *parent, *first_child, *next_sib, *prev_sib;
    PrefixBlock *hnext;              /* hash bucket chain */
    PrefixBlock *lru_prev, *lru_next;
    int refs;                        /* pins */
    float *k, *v;                    /* [n_layers][B][kv_dim] each */
    int *ids;                        /* B, allocated right after the struct */
};

struct PrefixCache {
    int B, n_layers, kv_dim, collide;
    size_t max_bytes, bytes, peak, block_bytes;
    long n_blocks;
    unsigned long long evictions;
    PrefixBlock root;                /* sentinel: parent of every first block */
    PrefixBlock lru;                 /* sentinel: lru_next = oldest */
    PrefixBlock **buckets;
    size_t n_buckets;                /* power of two */
};

#define ROOT_HASH 0x243f6a8885a308d3ULL

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t block_hash(const PrefixCache *pc, uint64_t parent, const int *ids) {
    if (pc->collide) return 0;
    uint64_t h = parent;
    for (int i = 0; i < pc->B; i++) h = mix64(h ^ ((uint64_t)(uint32_t)ids[i] + 0x9e3779b97f4a7c15ULL));
    return h;
}

static size_t floats_per_block(const PrefixCache *pc) {
    return (size_t)pc->n_layers * (size_t)pc->B * (size_t)pc->kv_dim;
}

PrefixCache *prefix_cache_new(const ModelConfig *cfg, const PrefixCacheOptions *opt) {
    if (!cfg || !opt || opt->block_tokens <= 0 || opt->block_tokens > 4096 || cfg->n_layers <= 0 ||
        cfg->n_kv_heads <= 0 || cfg->head_dim <= 0)
        return NULL;
    PrefixCache *pc = calloc(1, sizeof *pc);
    if (!pc) return NULL;
    pc->B = opt->block_tokens;
    pc->n_layers = cfg->n_layers;
    pc->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    pc->collide = opt->test_collide;
    pc->max_bytes = opt->max_bytes;
    pc->block_bytes = sizeof(PrefixBlock) + sizeof(int) * (size_t)pc->B + 2 * sizeof(float) * floats_per_block(pc);
    pc->root.hash = ROOT_HASH;
    pc->lru.lru_next = pc->lru.lru_prev = &pc->lru;
    pc->n_buckets = 64;
    if (!(pc->buckets = calloc(pc->n_buckets, sizeof *pc->buckets))) {
        free(pc);
        return NULL;
    }
    return pc;
}

static void block_free(PrefixBlock *b) {
    if (!b) return;
    free(b->k);
    free(b);
}

void prefix_cache_free(PrefixCache *pc) {
    if (!pc) return;
    for (PrefixBlock *b = pc->lru.lru_next, *next; b != &pc->lru; b = next) {
        next = b->lru_next;
        block_free(b);
    }
    free(pc->buckets);
    free(pc);
}

int prefix_cache_block_tokens(const PrefixCache *pc) { return pc->B; }
size_t prefix_cache_block_bytes(const PrefixCache *pc) { return pc->block_bytes; }

void prefix_cache_stats(const PrefixCache *pc, PrefixCacheStats *s) {
    *s = (PrefixCacheStats){.bytes = pc->bytes, .max_bytes = pc->max_bytes, .peak_bytes = pc->peak,
                            .blocks = pc->n_blocks, .evictions = pc->evictions};
}

/* ---- lists ---------------------------------------------------------------- */

static void lru_unlink(PrefixBlock *b) {
    b->lru_prev->lru_next = b->lru_next;
    b->lru_next->lru_prev = b->lru_prev;
}

static void lru_append(PrefixCache *pc, PrefixBlock *b) {
    b->lru_prev = pc->lru.lru_prev;
    b->lru_next = &pc->lru;
    pc->lru.lru_prev->lru_next = b;
    pc->lru.lru_prev = b;
}

static void touch(PrefixCache *pc, PrefixBlock *b) {
    lru_unlink(b);
    lru_append(pc, b);
}

/* From the chain's end back to its first block. */
static void touch_chain(PrefixCache *pc, PrefixBlock *last) {
    for (PrefixBlock *b = last; b && b != &pc->root; b = b->parent) touch(pc, b);
}

static PrefixBlock **bucket(const PrefixCache *pc, uint64_t h) { return &pc->buckets[h & (pc->n_buckets - 1)]; }

static void hash_grow(PrefixCache *pc) {
    size_t n = pc->n_buckets * 2;
    PrefixBlock **nb = calloc(n, sizeof *nb);
    if (!nb) return;   /* longer chains, still correct */
    for (size_t i = 0; i < pc->n_buckets; i++)
        for (PrefixBlock *b = pc->buckets[i], *next; b; b = next) {
            next = b->hnext;
            b->hnext = nb[b->hash & (n - 1)];
            nb[b->hash & (n - 1)] = b;
        }
    free(pc->buckets);
    pc->buckets = nb;
    pc->n_buckets = n;
}

/* The cached block continuing `parent` with exactly ids, verified. */
static PrefixBlock *find(const PrefixCache *pc, const PrefixBlock *parent, uint64_t h, const int *ids) {
    for (PrefixBlock *b = *bucket(pc, h); b; b = b->hnext)
        if (b->hash == h && b->parent == parent && !memcmp(b->ids, ids, sizeof(int) * (size_t)pc->B))
            return b;
    return NULL;
}

static void link_block(PrefixCache *pc, PrefixBlock *b, PrefixBlock *parent, uint64_t h) {
    b->hash = h;
    b->parent = parent;
    b->first_child = NULL;
    b->prev_sib = NULL;
    b->next_sib = parent->first_child;
    if (b->next_sib) b->next_sib->prev_sib = b;
    parent->first_child = b;
    PrefixBlock **head = bucket(pc, h);
    b->hnext = *head;
    *head = b;
    lru_append(pc, b);
    if ((size_t)++pc->n_blocks > pc->n_buckets) hash_grow(pc);
}

static void unlink_block(PrefixCache *pc, PrefixBlock *b) {
    for (PrefixBlock **p = bucket(pc, b->hash); *p; p = &(*p)->hnext)
        if (*p == b) {
            *p = b->hnext;
            break;
        }
    if (b->prev_sib) b->prev_sib->next_sib = b->next_sib;
    else b->parent->first_child = b->next_sib;
    if (b->next_sib) b->next_sib->prev_sib = b->prev_sib;
    lru_unlink(b);
    pc->n_blocks--;
}

/* Unlinks the least recently used evictable block and returns it (its
 * memory still counted in bytes), or NULL if every block is pinned or has
 * children. */
static PrefixBlock *evict_one(PrefixCache *pc) {
    for (PrefixBlock *b = pc->lru.lru_next; b != &pc->lru; b = b->lru_next)
        if (b->refs == 0 && !b->first_child) {
            unlink_block(pc, b);
            pc->evictions++;
            return b;
        }
    return NULL;
}

void prefix_cache_set_max_bytes(PrefixCache *pc, size_t max_bytes) {
    pc->max_bytes = max_bytes;
    while (pc->bytes > pc->max_bytes) {
        PrefixBlock *b = evict_one(pc);
        if (!b) break;
        block_free(b);
        pc->bytes -= pc->block_bytes;
    }
    pc->peak = pc->bytes;
}

/* A block's worth of memory within the budget: a fresh allocation, or the
 * memory of an evicted block. NULL if neither is possible. */
static PrefixBlock *block_alloc(PrefixCache *pc) {
    if (pc->block_bytes > pc->max_bytes) return NULL;
    while (pc->bytes + pc->block_bytes > pc->max_bytes) {
        PrefixBlock *b = evict_one(pc);
        if (!b) return NULL;
        if (pc->bytes <= pc->max_bytes) return b; /* its memory holds the new block */
        block_free(b);
        pc->bytes -= pc->block_bytes;
    }
    PrefixBlock *b = malloc(sizeof *b + sizeof(int) * (size_t)pc->B);
    float *kv = b ? malloc(2 * sizeof(float) * floats_per_block(pc)) : NULL;
    if (!kv) {
        free(b);
        return NULL;
    }
    memset(b, 0, sizeof *b);
    b->ids = (int *)(b + 1);
    b->k = kv;
    b->v = kv + floats_per_block(pc);
    pc->bytes += pc->block_bytes;
    if (pc->bytes > pc->peak) pc->peak = pc->bytes;
    return b;
}

/* ---- lookup ----------------------------------------------------------------- */

/* Whole blocks of tokens[0..n) (at most limit positions) found by the hash
 * chain: stored in out (if not NULL, room for limit / B); returns the count,
 * *last = the last block (or the root). */
static int walk(const PrefixCache *pc, const int *tokens, int limit, PrefixBlock **out,
                const PrefixBlock **last) {
    const PrefixBlock *p = &pc->root;
    int nb = 0;
    for (int pos = 0; pos + pc->B <= limit; pos += pc->B) {
        PrefixBlock *b = find(pc, p, block_hash(pc, p->hash, tokens + pos), tokens + pos);
        if (!b) break;
        if (out) out[nb] = b;
        nb++;
        p = b;
    }
    *last = p;
    return nb;
}

/* The child of p sharing the longest start with tokens[0..room), and that length. */
static PrefixBlock *best_child(const PrefixCache *pc, const PrefixBlock *p, const int *tokens, int room, int *len) {
    PrefixBlock *best = NULL;
    int max = room < pc->B ? room : pc->B;
    *len = 0;
    for (PrefixBlock *c = p->first_child; c; c = c->next_sib) {
        int k = 0;
        while (k < max && c->ids[k] == tokens[k]) k++;
        if (k > *len) {
            *len = k;
            best = c;
        }
    }
    return best;
}

int prefix_cache_match(PrefixCache *pc, const int *tokens, int n, int limit, PrefixMatch *m) {
    memset(m, 0, sizeof *m);
    if (limit > n) limit = n;
    if (limit <= 0 || pc->n_blocks == 0) return 0;
    int cap = limit / pc->B + 1;
    m->blocks = malloc(sizeof *m->blocks * (size_t)cap);
    m->segs = malloc(sizeof *m->segs * (size_t)cap);
    if (!m->blocks || !m->segs) {
        prefix_cache_release(pc, m);
        return -1;
    }
    const PrefixBlock *lastc;
    int nb = walk(pc, tokens, limit, m->blocks, &lastc);
    PrefixBlock *last = nb ? m->blocks[nb - 1] : &pc->root;   /* lastc, writable */
    for (int i = 0; i < nb; i++) m->segs[i] = (KVSegment){m->blocks[i]->k, m->blocks[i]->v, pc->B, pc->B};
    m->n_tokens = nb * pc->B;
    int part = 0;
    PrefixBlock *c = best_child(pc, last, tokens + m->n_tokens, limit - m->n_tokens, &part);
    if (c) {
        m->blocks[nb] = c;
        m->segs[nb++] = (KVSegment){c->k, c->v, part, pc->B};
        m->n_tokens += part;
        touch(pc, c);
    }
    m->n_segs = nb;
    for (int i = 0; i < nb; i++) m->blocks[i]->refs++;
    touch_chain(pc, last);
    return 0;
}

int prefix_cache_peek(const PrefixCache *pc, const int *tokens, int n, int limit) {
    if (limit > n) limit = n;
    if (limit <= 0 || pc->n_blocks == 0) return 0;
    const PrefixBlock *last;
    int covered = walk(pc, tokens, limit, NULL, &last) * pc->B, part = 0;
    best_child(pc, last, tokens + covered, limit - covered, &part);
    return covered + part;
}

void prefix_cache_release(PrefixCache *pc, PrefixMatch *m) {
    (void)pc;
    for (int i = 0; m->blocks && i < m->n_segs; i++) m->blocks[i]->refs--;
    free(m->blocks);
    free(m->segs);
    memset(m, 0, sizeof *m);
}

void prefix_cache_touch(PrefixCache *pc, const int *tokens, int n) {
    const PrefixBlock *lastc;
    int whole = n / pc->B * pc->B;
    int nb = walk(pc, tokens, whole, NULL, &lastc);
    PrefixBlock *last = (PrefixBlock *)lastc;   /* a block of pc, or its root: pc is ours to change */
    if (nb * pc->B == whole && n > whole) {
        int part;
        PrefixBlock *c = best_child(pc, last, tokens + whole, n - whole, &part);
        if (c && part == n - whole) touch(pc, c);
    }
    touch_chain(pc, last);
}

/* ---- insert ------------------------------------------------------------------ */

/* Copies positions [pos, pos + B) out of segs into b. */
static void copy_in(const PrefixCache *pc, PrefixBlock *b, const KVSegment *segs, int n_segs, int pos) {
    int s = 0, base = 0;
    for (int j = 0; j < pc->B; j++) {
        int p = pos + j;
        while (s < n_segs && p >= base + segs[s].len) base += segs[s++].len;
        const KVSegment *g = &segs[s];
        for (int l = 0; l < pc->n_layers; l++) {
            size_t from = ((size_t)l * g->capacity + (size_t)(p - base)) * pc->kv_dim;
            size_t to = ((size_t)l * pc->B + (size_t)j) * pc->kv_dim;
            memcpy(b->k + to, g->k + from, sizeof(float) * pc->kv_dim);
            memcpy(b->v + to, g->v + from, sizeof(float) * pc->kv_dim);
        }
    }
}

int prefix_cache_insert(PrefixCache *pc, const int *tokens, int n, const KVSegment *segs, int n_segs) {
    long have = 0;
    for (int s = 0; s < n_segs; s++) have += segs[s].len;
    if (have < n) n = (int)have;
    PrefixBlock *p = &pc->root;
    int added = 0;
    for (int pos = 0; pos + pc->B <= n; pos += pc->B) {
        uint64_t h = block_hash(pc, p->hash, tokens + pos);
        PrefixBlock *b = find(pc, p, h, tokens + pos);
        if (!b) {
            p->refs++;   /* making room must not evict the chain built so far */
            b = block_alloc(pc);
            p->refs--;
            if (!b) break;
            memcpy(b->ids, tokens + pos, sizeof(int) * (size_t)pc->B);
            copy_in(pc, b, segs, n_segs, pos);
            link_block(pc, b, p, h);
            added++;
        }
        p = b;
    }
    touch_chain(pc, p);
    return added;
}
