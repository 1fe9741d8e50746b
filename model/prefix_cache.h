/* prefix_cache.h - K/V of computed prompts, kept in fixed-size blocks of
 * positions and shared read-only by every sequence that starts with the same
 * tokens (automatic prefix caching), within a memory budget.
 *
 * Block b of a token sequence holds positions [b*B, (b+1)*B). It is
 * identified by a hash chain: hash(block b) = H(hash(block b-1), its B ids),
 * so the hash stands for the whole sequence up to the block's end. A hash is
 * only a hint: a block is reused only if its stored ids and its parent block
 * (itself verified the same way) match, so a collision can never hand out
 * wrong K/V. Only whole blocks are stored, but a lookup may also reuse the
 * first positions of a cached block whose ids diverge from the sequence
 * inside the block (a child of the last matching block): K/V of a position
 * depends only on the ids up to it.
 *
 * Memory: every block costs prefix_cache_block_bytes(); the blocks never
 * exceed max_bytes in total (0: nothing is ever stored). To make room, the
 * least recently used block that no pinned match holds and that has no
 * cached continuation is evicted (a chain loses its end first, so every
 * cached block stays reachable). A match pins its blocks until released.
 *
 * Not thread-safe: one caller at a time (the classifier's run).
 */
#ifndef GUARDD_PREFIX_CACHE_H
#define GUARDD_PREFIX_CACHE_H
#include <stddef.h>
#include <stdint.h>
#include "kvcache.h"
#include "model.h"

typedef struct PrefixCache PrefixCache;
typedef struct PrefixBlock PrefixBlock;

typedef struct {
    int block_tokens;   /* B, positions per block (> 0) */
    size_t max_bytes;   /* budget; 0: keep nothing */
    int test_collide;   /* tests only: every block hashes to the same value */
} PrefixCacheOptions;

/* NULL if the options or the model shape are invalid, or out of memory. */
PrefixCache *prefix_cache_new(const ModelConfig *cfg, const PrefixCacheOptions *opt);
void prefix_cache_free(PrefixCache *pc);   /* no match may be pinned */

/* New budget; evicts down to it at once (pinned blocks excepted, they go
 * when a later insert or budget change finds them released). */
void prefix_cache_set_max_bytes(PrefixCache *pc, size_t max_bytes);
int prefix_cache_block_tokens(const PrefixCache *pc);
size_t prefix_cache_block_bytes(const PrefixCache *pc);

typedef struct {
    int n_tokens;        /* positions covered, from 0 */
    int n_segs;          /* one per block used */
    KVSegment *segs;     /* the last may cover only the first part of its block */
    PrefixBlock **blocks;
} PrefixMatch;

/* The longest cached prefix of tokens[0..n), at most `limit` positions:
 * whole blocks by the hash chain, then the longest common start of one block
 * continuing the chain. Pins the blocks and marks them recently used. Returns
 * 0 (m may cover 0 tokens), or -1 when out of memory (m then covers none). */
int prefix_cache_match(PrefixCache *pc, const int *tokens, int n, int limit, PrefixMatch *m);
/* The n_tokens prefix_cache_match would cover right now, without pinning
 * blocks or marking them used (no allocation, nothing changes): for
 * planning, e.g. sizing a batch before it runs. Valid until the cache next
 * changes (an insert, an eviction, a new budget). */
int prefix_cache_peek(const PrefixCache *pc, const int *tokens, int n, int limit);
/* Unpins and frees m's arrays; m is then empty. */
void prefix_cache_release(PrefixCache *pc, PrefixMatch *m);

/* Stores the whole blocks of tokens[0..n) that are not cached yet, copying
 * their K/V from segs (positions [0, n) of the sequence, in order). Evicts as
 * needed; stops early when no room can be made or memory runs out (the
 * cache is an optimisation: nothing fails). Blocks already cached are marked
 * recently used. Returns the number of blocks added. */
int prefix_cache_insert(PrefixCache *pc, const int *tokens, int n, const KVSegment *segs, int n_segs);

/* Marks the cached blocks holding tokens[0..n) most recently used (e.g. a
 * policy preamble, so it outlives the conversation blocks that follow). */
void prefix_cache_touch(PrefixCache *pc, const int *tokens, int n);

typedef struct {
    size_t bytes, max_bytes;
    size_t peak_bytes;          /* highest bytes held since the budget was last set */
    long blocks;
    unsigned long long evictions;  /* blocks evicted since creation */
} PrefixCacheStats;
void prefix_cache_stats(const PrefixCache *pc, PrefixCacheStats *s);

#endif
