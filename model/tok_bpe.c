/* tok_bpe.c - the tokenizer's lookup tables and its byte-pair merge loop.
 *
 * Two open-addressing hash maps, both sized to a load factor <= 1/2 at load:
 * token bytes -> id (the vocabulary) and (left id, right id) -> (rank, merged id)
 * (the merges). tok_bpe() turns one pre-token into ids: with ignore_merges a
 * pre-token that is itself a vocabulary entry maps directly (one lookup, the
 * common case for words); otherwise it starts from one token per byte and
 * repeatedly merges the adjacent pair of lowest rank, leftmost first, exactly
 * as Hugging Face's BPE model does. Short pre-tokens use flat arrays on the
 * stack; long ones a linked list and a tournament tree, so the cost stays
 * O(n log n) for pathological inputs (megabytes without a break).
 * Nothing here writes shared state after load, so encode is thread-safe.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "tok_internal.h"

#define SHORT_MAX TOK_BPE_SHORT_MAX

size_t tok_bpe_short_max = TOK_BPE_SHORT_MAX;

uint32_t tok_hash_bytes(const char *s, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    }
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(h >> 32);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

int tok_vocab_init(TokVocabMap *m, size_t expected)
{
    size_t cap = pow2_at_least(expected * 2 + 1);
    m->slot = calloc(cap, sizeof *m->slot);
    m->hash = calloc(cap, sizeof *m->hash);
    m->mask = cap - 1;
    return m->slot && m->hash ? 0 : -1;
}

void tok_vocab_free(TokVocabMap *m)
{
    free(m->slot);
    free(m->hash);
    m->slot = NULL;
    m->hash = NULL;
}

static inline int vocab_probe(const Tokenizer *t, const char *s, size_t n, uint32_t h, size_t *where)
{
    const TokVocabMap *m = &t->vocab;
    size_t i = h & m->mask;
    for (;;) {
        uint32_t v = m->slot[i];
        if (!v) {
            *where = i;
            return -1;
        }
        if (m->hash[i] == h) {
            uint32_t id = v - 1;
            if (t->tok_len[id] == n && memcmp(t->arena + t->tok_off[id], s, n) == 0)
                return (int)id;
        }
        i = (i + 1) & m->mask;
    }
}

int tok_vocab_insert(Tokenizer *t, int id)
{
    const char *s = t->arena + t->tok_off[id];
    size_t n = t->tok_len[id], where = 0;
    uint32_t h = tok_hash_bytes(s, n);
    if (vocab_probe(t, s, n, h, &where) >= 0)
        return 1;
    t->vocab.slot[where] = (uint32_t)id + 1;
    t->vocab.hash[where] = h;
    return 0;
}

int tok_vocab_find(const Tokenizer *t, const char *s, size_t n)
{
    size_t where;
    return vocab_probe(t, s, n, tok_hash_bytes(s, n), &where);
}

static inline size_t merge_hash(uint64_t k, size_t mask)
{
    k ^= k >> 29;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 32;
    return (size_t)k & mask;
}

static inline uint64_t pair_key(int left, int right)
{
    return ((uint64_t)(uint32_t)left << 22) | (uint32_t)right;
}

int tok_merge_init(TokMergeMap *m, size_t expected)
{
    size_t cap = pow2_at_least(expected * 2 + 1);
    m->slot = malloc(cap * sizeof *m->slot);
    m->merged = malloc((expected ? expected : 1) * sizeof *m->merged);
    if (!m->slot || !m->merged)
        return -1;
    memset(m->slot, 0xff, cap * sizeof *m->slot);   /* every slot TOK_EMPTY_SLOT */
    m->mask = cap - 1;
    return 0;
}

void tok_merge_free(TokMergeMap *m)
{
    free(m->slot);
    free(m->merged);
    m->slot = NULL;
    m->merged = NULL;
}

/* rank < TOK_MAX_MERGES and ids < TOK_MAX_ID (checked at load). Keeps the
 * first (lowest) rank if a pair is listed twice. */
void tok_merge_insert(TokMergeMap *m, int left, int right, int rank, int id)
{
    uint64_t key = pair_key(left, right);
    size_t i = merge_hash(key, m->mask);
    m->merged[rank] = id;
    while (m->slot[i] != TOK_EMPTY_SLOT) {
        if (m->slot[i] >> 20 == key)
            return;
        i = (i + 1) & m->mask;
    }
    m->slot[i] = key << 20 | (uint64_t)rank;
}

/* Rank of merging left and right (INT_MAX if none); merged id in *id. */
static inline int pair_rank(const Tokenizer *t, int left, int right, int *id)
{
    const TokMergeMap *m = &t->merges;
    uint64_t key = pair_key(left, right);
    for (size_t i = merge_hash(key, m->mask);; i = (i + 1) & m->mask) {
        uint64_t s = m->slot[i];
        if (s >> 20 == key) {
            int rank = (int)(s & TOK_MAX_MERGES);
            *id = m->merged[rank];
            return rank;
        }
        if (s == TOK_EMPTY_SLOT)
            return INT_MAX;
    }
}

int tok_reserve(TokenVec *v, size_t extra)
{
    if (v->cap - v->n >= extra)
        return 0;
    size_t need = v->n + extra;
    if (need < v->n || need > SIZE_MAX / (2 * sizeof(int)))
        return -1;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < need)
        cap *= 2;
    int *p = realloc(v->ids, cap * sizeof *p);
    if (!p)
        return -1;
    v->ids = p;
    v->cap = cap;
    return 0;
}

/* Array path: rank[i] caches the rank of pair (i, i+1), so each merge costs
 * one scan for the minimum plus two lookups for the pairs it changed. */
static int bpe_short(const Tokenizer *t, const unsigned char *s, size_t n, TokenVec *out)
{
    int ids[SHORT_MAX], rank[SHORT_MAX], mid[SHORT_MAX];
    size_t m = n;
    for (size_t i = 0; i < n; i++)
        ids[i] = t->byte_id[s[i]];
    for (size_t i = 0; i + 1 < m; i++)
        rank[i] = pair_rank(t, ids[i], ids[i + 1], &mid[i]);
    while (m > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < m; i++)
            if (rank[i] < rank[best])
                best = i;
        if (rank[best] == INT_MAX)
            break;
        ids[best] = mid[best];
        size_t tail = m - best - 2;
        memmove(&ids[best + 1], &ids[best + 2], tail * sizeof ids[0]);
        memmove(&rank[best + 1], &rank[best + 2], tail * sizeof rank[0]);
        memmove(&mid[best + 1], &mid[best + 2], tail * sizeof mid[0]);
        m--;
        if (best > 0)
            rank[best - 1] = pair_rank(t, ids[best - 1], ids[best], &mid[best - 1]);
        if (best + 1 < m)
            rank[best] = pair_rank(t, ids[best], ids[best + 1], &mid[best]);
    }
    if (tok_reserve(out, m) < 0)
        return -1;
    memcpy(out->ids + out->n, ids, m * sizeof ids[0]);
    out->n += m;
    return 0;
}

/* Long path: symbols form a linked list over their start offsets, and a
 * tournament tree over those offsets holds, per symbol, the key
 * (rank << 32 | offset) of merging it with its right neighbour (NO_PAIR if
 * none). The root is the pair to merge next: lowest rank, then leftmost. A
 * merge changes three leaves (the symbol, its dead right neighbour, its left
 * neighbour), each a walk to the root, so there are no stale entries to skip
 * and the tree (2 x pow2(n) words) stays compact. */
#define NO_PAIR UINT64_MAX

typedef struct {
    int *id;        /* symbol starting at this offset (valid while alive) */
    int *mid;       /* id the pair at this offset merges into */
    int32_t *next;  /* -1 at the end */
    int32_t *prev;  /* -1 at the start */
    uint64_t *tree; /* tree[1] is the root, leaves at tree[size + offset] */
    size_t size;
} LongWord;

static void tree_set(LongWord *w, int32_t pos, uint64_t key)
{
    size_t j = w->size + (size_t)pos;
    w->tree[j] = key;
    for (j >>= 1; j >= 1; j >>= 1) {
        uint64_t a = w->tree[2 * j], b = w->tree[2 * j + 1], m = a < b ? a : b;
        if (w->tree[j] == m)
            break;   /* nothing above changes */
        w->tree[j] = m;
    }
}

/* Recomputes the pair starting at pos (pos < 0: nothing). */
static void set_pair(const Tokenizer *t, LongWord *w, int32_t pos)
{
    if (pos < 0)
        return;
    int32_t r = w->next[pos];
    int rank = r < 0 ? INT_MAX : pair_rank(t, w->id[pos], w->id[r], &w->mid[pos]);
    tree_set(w, pos, rank == INT_MAX ? NO_PAIR : ((uint64_t)(uint32_t)rank << 32) | (uint32_t)pos);
}

static void bpe_long_merge(const Tokenizer *t, LongWord *w)
{
    uint64_t e;
    while ((e = w->tree[1]) != NO_PAIR) {
        int32_t pos = (int32_t)(e & 0xffffffffu), r = w->next[pos];
        w->id[pos] = w->mid[pos];
        w->next[pos] = w->next[r];
        if (w->next[r] >= 0)
            w->prev[w->next[r]] = pos;
        tree_set(w, r, NO_PAIR);
        set_pair(t, w, pos);
        set_pair(t, w, w->prev[pos]);
    }
}

/* Builds the tree bottom-up in O(n) from the leaves. */
static void tree_init(const Tokenizer *t, LongWord *w, size_t n)
{
    for (size_t i = 0; i < w->size; i++) {
        int rank = i + 1 < n ? pair_rank(t, w->id[i], w->id[i + 1], &w->mid[i]) : INT_MAX;
        w->tree[w->size + i] = rank == INT_MAX ? NO_PAIR : ((uint64_t)(uint32_t)rank << 32) | i;
    }
    for (size_t j = w->size - 1; j >= 1; j--)
        w->tree[j] = w->tree[2 * j] < w->tree[2 * j + 1] ? w->tree[2 * j] : w->tree[2 * j + 1];
}

static int bpe_long(const Tokenizer *t, const unsigned char *s, size_t n, TokenVec *out)
{
    if (n > INT32_MAX / 4)
        return -1;
    LongWord w;
    w.size = 1;
    while (w.size < n)
        w.size *= 2;
    w.id = malloc(n * sizeof *w.id);
    w.mid = malloc(n * sizeof *w.mid);
    w.next = malloc(n * sizeof *w.next);
    w.prev = malloc(n * sizeof *w.prev);
    w.tree = malloc(2 * w.size * sizeof *w.tree);
    int rc = -1;
    if (!w.id || !w.mid || !w.next || !w.prev || !w.tree)
        goto done;
    for (size_t i = 0; i < n; i++) {
        w.id[i] = t->byte_id[s[i]];
        w.prev[i] = (int32_t)i - 1;
        w.next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    tree_init(t, &w, n);
    bpe_long_merge(t, &w);
    size_t count = 0;
    for (int32_t i = 0; i >= 0; i = w.next[i])
        count++;
    if (tok_reserve(out, count) < 0)
        goto done;
    for (int32_t i = 0; i >= 0; i = w.next[i])
        out->ids[out->n++] = w.id[i];
    rc = 0;
done:
    free(w.id);
    free(w.mid);
    free(w.next);
    free(w.prev);
    free(w.tree);
    return rc;
}

int tok_bpe(const Tokenizer *t, const char *s, size_t n, TokenVec *out)
{
    if (n == 0)
        return 0;
    int id = -1;
    if (n == 1)
        id = t->byte_id[(unsigned char)s[0]];
    else if (t->ignore_merges)
        id = tok_vocab_find(t, s, n);
    if (id >= 0) {
        if (tok_reserve(out, 1) < 0)
            return -1;
        out->ids[out->n++] = id;
        return 0;
    }
    if (n <= tok_bpe_short_max && n <= SHORT_MAX)
        return bpe_short(t, (const unsigned char *)s, n, out);
    return bpe_long(t, (const unsigned char *)s, n, out);
}
