/* check_prefix_cache.c - the block prefix cache on its own (model/prefix_cache.c),
 * with synthetic K/V: every stored value encodes (token sequence so far,
 * layer, position, element), so a test can tell exactly which prompt a
 * reused position was computed for. No model needed.
 */
#include "check_main.h"
#include <stdlib.h>
#include <string.h>
#include "prefix_cache.h"

enum { B = 4, LAYERS = 2, KVH = 1, HD = 2, KVD = KVH * HD };

static ModelConfig cfg(void) {
    ModelConfig c = {0};
    c.n_layers = LAYERS;
    c.n_kv_heads = KVH;
    c.head_dim = HD;
    return c;
}

/* A sequence's K/V as one segment: value = f(hash of ids[0..p], layer, p, d),
 * V the negative of K. */
typedef struct { float *k, *v; KVSegment seg; } Fake;

static float value(const int *ids, int p, int l, int d) {
    unsigned h = 17;
    for (int i = 0; i <= p; i++) h = h * 31u + (unsigned)ids[i];
    return (float)(h % 100003u) + 0.25f * (float)l + 0.125f * (float)d;
}

static Fake fake(const int *ids, int n) {
    Fake f;
    f.k = malloc(sizeof(float) * LAYERS * (size_t)n * KVD);
    f.v = malloc(sizeof(float) * LAYERS * (size_t)n * KVD);
    for (int l = 0; l < LAYERS; l++)
        for (int p = 0; p < n; p++)
            for (int d = 0; d < KVD; d++) {
                f.k[((size_t)l * n + p) * KVD + d] = value(ids, p, l, d);
                f.v[((size_t)l * n + p) * KVD + d] = -value(ids, p, l, d);
            }
    f.seg = (KVSegment){f.k, f.v, n, n};
    return f;
}
static void fake_free(Fake *f) { free(f->k); free(f->v); }

/* Every position m covers holds the K/V computed for ids. */
static void assert_kv_of(const PrefixMatch *m, const int *ids) {
    int p = 0;
    for (int s = 0; s < m->n_segs; s++)
        for (int j = 0; j < m->segs[s].len; j++, p++)
            for (int l = 0; l < LAYERS; l++)
                for (int d = 0; d < KVD; d++) {
                    size_t at = ((size_t)l * m->segs[s].capacity + j) * KVD + d;
                    ck_assert_float_eq(m->segs[s].k[at], value(ids, p, l, d));
                    ck_assert_float_eq(m->segs[s].v[at], -value(ids, p, l, d));
                }
    ck_assert_int_eq(p, m->n_tokens);
}

static PrefixCache *make(size_t blocks, int collide) {
    ModelConfig c = cfg();
    PrefixCacheOptions o = {.block_tokens = B, .max_bytes = 0, .test_collide = collide};
    PrefixCache *pc = prefix_cache_new(&c, &o);
    ck_assert_ptr_nonnull(pc);
    prefix_cache_set_max_bytes(pc, blocks * prefix_cache_block_bytes(pc));
    return pc;
}

static void put(PrefixCache *pc, const int *ids, int n) {
    Fake f = fake(ids, n);
    prefix_cache_insert(pc, ids, n, &f.seg, 1);
    fake_free(&f);
}

/* The match's length, which a peek must announce exactly. */
static int match_len(PrefixCache *pc, const int *ids, int n, int limit) {
    int peeked = prefix_cache_peek(pc, ids, n, limit);
    PrefixMatch m;
    ck_assert_int_eq(prefix_cache_match(pc, ids, n, limit, &m), 0);
    assert_kv_of(&m, ids);
    int k = m.n_tokens;
    ck_assert_int_eq(peeked, k);
    prefix_cache_release(pc, &m);
    return k;
}

START_TEST(whole_and_partial_blocks) {
    for (int collide = 0; collide < 2; collide++) {
        PrefixCache *pc = make(100, collide);
        int a[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
        ck_assert_int_eq(match_len(pc, a, 11, 11), 0);
        put(pc, a, 11);                 /* blocks [0,4) and [4,8); 8..10 not whole */
        PrefixCacheStats st;
        prefix_cache_stats(pc, &st);
        ck_assert_int_eq(st.blocks, 2);
        ck_assert_int_eq(match_len(pc, a, 11, 11), 8);
        ck_assert_int_eq(match_len(pc, a, 11, 7), 7);  /* limit inside a block: its start */
        int b[10] = {1, 2, 3, 4, 5, 6, 99, 8, 9, 10};  /* diverges inside block 2 */
        ck_assert_int_eq(match_len(pc, b, 10, 10), 6);
        int c[6] = {1, 2, 77, 4, 5, 6};                 /* inside block 1 */
        ck_assert_int_eq(match_len(pc, c, 6, 6), 2);
        /* the same block ids after a different start are another block */
        int d[8] = {9, 9, 9, 9, 5, 6, 7, 8};
        put(pc, d, 8);
        int e[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        ck_assert_int_eq(match_len(pc, e, 8, 8), 8);   /* a's, not d's (checked by value) */
        int f[8] = {9, 9, 9, 9, 5, 6, 7, 0};
        ck_assert_int_eq(match_len(pc, f, 8, 8), 7);
        prefix_cache_free(pc);
    }
}
END_TEST

/* Every block hashes alike: lookups still verify ids and parents, so only
 * the right K/V is handed out (assert_kv_of checks every value). */
START_TEST(forced_collisions_never_reuse_wrong_kv) {
    PrefixCache *pc = make(1000, 1);
    int seqs[20][12];
    for (int s = 0; s < 20; s++)
        for (int i = 0; i < 12; i++) seqs[s][i] = (i < 4 * (s % 3)) ? i : 1000 * s + i;
    for (int s = 0; s < 20; s++) put(pc, seqs[s], 12);
    for (int s = 0; s < 20; s++) ck_assert_int_eq(match_len(pc, seqs[s], 12, 12), 12);
    int other[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12345};
    ck_assert_int_eq(match_len(pc, other, 12, 12), 11);
    int swapped[8] = {3000, 3001, 3002, 3003, 0, 1, 2, 3};  /* known blocks, wrong order */
    ck_assert_int_eq(match_len(pc, swapped, 8, 8), 4);
    prefix_cache_free(pc);
}
END_TEST

/* The budget holds at every moment; pinned blocks and chain starts survive. */
START_TEST(budget_lru_and_pins) {
    PrefixCache *pc = make(3, 0);
    int a[20], b[20];
    for (int i = 0; i < 20; i++) { a[i] = i; b[i] = 100 + i; }
    put(pc, a, 20);                          /* 5 blocks wanted, 3 fit */
    PrefixCacheStats st;
    prefix_cache_stats(pc, &st);
    ck_assert_int_eq(st.blocks, 3);
    ck_assert_uint_le(st.peak_bytes, st.max_bytes);
    ck_assert_int_eq(match_len(pc, a, 20, 20), 12);
    PrefixMatch pin;
    ck_assert_int_eq(prefix_cache_match(pc, a, 20, 20, &pin), 0);
    put(pc, b, 20);                          /* everything is pinned: nothing fits */
    prefix_cache_stats(pc, &st);
    ck_assert_int_eq(st.blocks, 3);
    ck_assert_int_eq(st.evictions, 0);
    assert_kv_of(&pin, a);
    prefix_cache_release(pc, &pin);
    put(pc, b, 20);                          /* now a's blocks go, ends first */
    prefix_cache_stats(pc, &st);
    ck_assert_int_eq(st.blocks, 3);
    ck_assert_int_eq(st.evictions, 3);
    ck_assert_uint_le(st.peak_bytes, st.max_bytes);
    ck_assert_int_eq(match_len(pc, a, 20, 20), 0);
    ck_assert_int_eq(match_len(pc, b, 20, 20), 12);
    /* touch keeps a start: c shares b's first block, then d evicts */
    int c[8] = {100, 101, 102, 103, 7, 7, 7, 7}, d[8] = {50, 51, 52, 53, 54, 55, 56, 57};
    put(pc, c, 8);
    prefix_cache_touch(pc, b, 4);
    put(pc, d, 8);
    ck_assert_int_eq(match_len(pc, b, 20, 20) >= 4, 1);
    prefix_cache_set_max_bytes(pc, 0);
    prefix_cache_stats(pc, &st);
    ck_assert_int_eq(st.blocks, 0);
    ck_assert_uint_eq(st.bytes, 0);
    put(pc, a, 20);
    ck_assert_int_eq(match_len(pc, a, 20, 20), 0);
    prefix_cache_free(pc);
}
END_TEST

/* A peek changes nothing: no pin (its blocks can be evicted at once) and
 * no use (the LRU order stays as it was). */
START_TEST(peek_neither_pins_nor_touches) {
    PrefixCache *pc = make(2, 0);
    int a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8}, c[4] = {9, 10, 11, 12};
    put(pc, a, 4);
    put(pc, b, 4);                           /* full; a is the oldest */
    ck_assert_int_eq(prefix_cache_peek(pc, a, 4, 4), 4);
    ck_assert_int_eq(prefix_cache_peek(pc, a, 4, 3), 3);
    ck_assert_int_eq(prefix_cache_peek(pc, b, 4, 0), 0);
    put(pc, c, 4);                           /* evicts a: the peek did not make it recent */
    ck_assert_int_eq(prefix_cache_peek(pc, a, 4, 4), 0);
    ck_assert_int_eq(prefix_cache_peek(pc, b, 4, 4), 4);
    PrefixCacheStats st;
    prefix_cache_stats(pc, &st);
    ck_assert_int_eq(st.evictions, 1);
    prefix_cache_set_max_bytes(pc, 0);       /* nothing pinned: everything goes */
    prefix_cache_stats(pc, &st);
    ck_assert_int_eq(st.blocks, 0);
    ck_assert_int_eq(prefix_cache_peek(pc, b, 4, 4), 0);
    prefix_cache_free(pc);
}
END_TEST

START_TEST(bad_options) {
    ModelConfig c = cfg();
    PrefixCacheOptions o = {.block_tokens = 0};
    ck_assert_ptr_null(prefix_cache_new(&c, &o));
    o.block_tokens = 4;
    c.n_layers = 0;
    ck_assert_ptr_null(prefix_cache_new(&c, &o));
}
END_TEST

int main(void) {
    Suite *s = suite_create("prefix_cache");
    TCase *tc = check_case(s, "cache", 0);
    tcase_add_test(tc, whole_and_partial_blocks);
    tcase_add_test(tc, forced_collisions_never_reuse_wrong_kv);
    tcase_add_test(tc, budget_lru_and_pins);
    tcase_add_test(tc, peek_neither_pins_nor_touches);
    tcase_add_test(tc, bad_options);
    return check_run(s);
}
