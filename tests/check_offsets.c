/* check_offsets.c - the at-least-once commit rule (daemon/offsets.c).
 *
 * A fake "committer" records every (topic, partition, next) the tracker hands
 * out; the tests ack offsets in various orders and check the commit point
 * only ever covers a contiguous acknowledged prefix, that revoked partitions
 * and stale generations never produce commits, and that repeats are refused.
 */
#include "check_main.h"
#include <stdio.h>
#include <string.h>
#include "offsets.h"

typedef struct {
    int n;
    char topic[8][32];
    int32_t part[8];
    int64_t next[8];
} Commits;

static void record(void *ud, const char *topic, int32_t partition, int64_t next) {
    Commits *c = ud;
    if (c->n >= 8) return;
    snprintf(c->topic[c->n], sizeof c->topic[0], "%s", topic);
    c->part[c->n] = partition;
    c->next[c->n] = next;
    c->n++;
}

/* The single commit handed out now for (topic, part), or -1 if none. */
static int64_t take_one(OffsetTracker *t) {
    Commits c = {0};
    offsets_take_commits(t, record, &c);
    ck_assert_int_le(c.n, 1);
    return c.n ? c.next[0] : -1;
}

START_TEST(test_out_of_order_acks_commit_contiguous_prefix) {
    OffsetTracker *t = offsets_new();
    uint32_t g = offsets_assign(t, "in", 0), gen;
    for (int64_t o = 10; o < 15; o++) {
        ck_assert_int_eq(offsets_track(t, "in", 0, o, &gen), 1);
        ck_assert_uint_eq(gen, g);
    }
    ck_assert_int_eq(offsets_outstanding(t), 5);
    /* before any ack the commit point is the first outstanding offset */
    ck_assert_int_eq(take_one(t), 10);
    ck_assert_int_eq(take_one(t), -1);          /* unchanged: nothing new */
    ck_assert_int_eq(offsets_ack(t, "in", 0, 12, g), 1);
    ck_assert_int_eq(offsets_ack(t, "in", 0, 14, g), 1);
    ck_assert_int_eq(take_one(t), -1);          /* 10 still open: no move */
    ck_assert_int_eq(offsets_ack(t, "in", 0, 10, g), 1);
    ck_assert_int_eq(take_one(t), 11);          /* 11 open */
    ck_assert_int_eq(offsets_ack(t, "in", 0, 11, g), 1);
    ck_assert_int_eq(take_one(t), 13);          /* 10..12 done, 13 open */
    ck_assert_int_eq(offsets_ack(t, "in", 0, 13, g), 1);
    ck_assert_int_eq(take_one(t), 15);          /* all done */
    ck_assert_int_eq(offsets_outstanding(t), 0);
    offsets_free(t);
}
END_TEST

START_TEST(test_gaps_in_offsets) {
    /* compaction / control records leave holes: the commit point jumps them */
    OffsetTracker *t = offsets_new();
    uint32_t g = offsets_assign(t, "in", 3), gen;
    int64_t offs[] = {5, 9, 20};
    for (int i = 0; i < 3; i++) ck_assert_int_eq(offsets_track(t, "in", 3, offs[i], &gen), 1);
    ck_assert_int_eq(offsets_ack(t, "in", 3, 20, g), 1);
    ck_assert_int_eq(offsets_ack(t, "in", 3, 5, g), 1);
    ck_assert_int_eq(take_one(t), 9);
    ck_assert_int_eq(offsets_ack(t, "in", 3, 9, g), 1);
    ck_assert_int_eq(take_one(t), 21);
    offsets_free(t);
}
END_TEST

START_TEST(test_double_and_unknown_acks_ignored) {
    OffsetTracker *t = offsets_new();
    uint32_t g = offsets_assign(t, "in", 0), gen;
    offsets_track(t, "in", 0, 1, &gen);
    offsets_track(t, "in", 0, 2, &gen);
    ck_assert_int_eq(offsets_ack(t, "in", 0, 2, g), 1);
    ck_assert_int_eq(offsets_ack(t, "in", 0, 2, g), 0);   /* twice */
    ck_assert_int_eq(offsets_ack(t, "in", 0, 7, g), 0);   /* never tracked */
    ck_assert_int_eq(offsets_ack(t, "other", 0, 1, g), 0);
    ck_assert_int_eq(offsets_outstanding(t), 1);
    ck_assert_int_eq(take_one(t), 1);
    offsets_free(t);
}
END_TEST

START_TEST(test_repeats_refused_and_unassigned_rejected) {
    OffsetTracker *t = offsets_new();
    uint32_t gen;
    ck_assert_int_eq(offsets_track(t, "in", 0, 1, &gen), -1);  /* not assigned */
    offsets_assign(t, "in", 0);
    ck_assert_int_eq(offsets_track(t, "in", 0, 4, &gen), 1);
    ck_assert_int_eq(offsets_track(t, "in", 0, 4, &gen), 0);   /* same again */
    ck_assert_int_eq(offsets_track(t, "in", 0, 3, &gen), 0);   /* older */
    ck_assert_int_eq(offsets_outstanding(t), 1);
    offsets_free(t);
}
END_TEST

START_TEST(test_revoked_partition_never_commits) {
    OffsetTracker *t = offsets_new();
    uint32_t g0 = offsets_assign(t, "in", 0), g1 = offsets_assign(t, "in", 1), gen;
    for (int64_t o = 0; o < 3; o++) {
        offsets_track(t, "in", 0, o, &gen);
        offsets_track(t, "in", 1, o, &gen);
    }
    Commits c = {0};
    offsets_take_commits(t, record, &c);        /* both start at 0 */
    ck_assert_int_eq(c.n, 2);
    offsets_revoke(t, "in", 1);
    ck_assert_int_eq(offsets_outstanding(t), 3);
    ck_assert(!offsets_is_current(t, "in", 1, g1));
    ck_assert(offsets_is_current(t, "in", 0, g0));
    /* late delivery acks for the revoked partition: ignored */
    ck_assert_int_eq(offsets_ack(t, "in", 1, 0, g1), 0);
    ck_assert_int_eq(offsets_ack(t, "in", 0, 0, g0), 1);
    memset(&c, 0, sizeof c);
    offsets_take_commits(t, record, &c);
    ck_assert_int_eq(c.n, 1);
    ck_assert_str_eq(c.topic[0], "in");
    ck_assert_int_eq(c.part[0], 0);
    ck_assert_int_eq(c.next[0], 1);
    offsets_free(t);
}
END_TEST

START_TEST(test_revoke_after_out_of_order_acks) {
    /* acked records behind an unacked one are no longer outstanding: a
     * revocation must not subtract them a second time (the count went
     * negative after rebalances, and a clean stop looked incomplete) */
    OffsetTracker *t = offsets_new();
    uint32_t g = offsets_assign(t, "in", 0), gen;
    for (int64_t o = 0; o < 4; o++) offsets_track(t, "in", 0, o, &gen);
    ck_assert_int_eq(offsets_ack(t, "in", 0, 2, g), 1);
    ck_assert_int_eq(offsets_ack(t, "in", 0, 3, g), 1);
    ck_assert_int_eq(offsets_outstanding(t), 2);
    offsets_revoke(t, "in", 0);
    ck_assert_int_eq(offsets_outstanding(t), 0);
    offsets_assign(t, "in", 0);     /* re-assigned: forgets the old entries too */
    offsets_track(t, "in", 0, 0, &gen);
    offsets_ack(t, "in", 0, 0, gen);
    offsets_track(t, "in", 0, 1, &gen);
    offsets_track(t, "in", 0, 2, &gen);
    offsets_ack(t, "in", 0, 2, gen);
    offsets_assign(t, "in", 0);
    ck_assert_int_eq(offsets_outstanding(t), 0);
    offsets_free(t);
}
END_TEST

START_TEST(test_reassign_gets_new_generation) {
    /* revoked, then assigned again (another rebalance): acks of the old
     * generation must not move the new assignment's commit point */
    OffsetTracker *t = offsets_new();
    uint32_t g1 = offsets_assign(t, "in", 2), gen;
    offsets_track(t, "in", 2, 100, &gen);
    offsets_revoke(t, "in", 2);
    uint32_t g2 = offsets_assign(t, "in", 2);
    ck_assert_uint_ne(g1, g2);
    ck_assert_int_eq(offsets_track(t, "in", 2, 100, &gen), 1);  /* re-read after re-assign */
    ck_assert_uint_eq(gen, g2);
    ck_assert_int_eq(offsets_ack(t, "in", 2, 100, g1), 0);
    ck_assert_int_eq(take_one(t), 100);
    ck_assert_int_eq(offsets_ack(t, "in", 2, 100, g2), 1);
    ck_assert_int_eq(take_one(t), 101);
    offsets_revoke(t, "in", 2);
    ck_assert_int_eq(offsets_outstanding(t), 0);
    ck_assert_int_eq(take_one(t), -1);
    offsets_free(t);
}
END_TEST

START_TEST(test_take_partition_before_revoke) {
    OffsetTracker *t = offsets_new();
    uint32_t g = offsets_assign(t, "in", 0), gen;
    offsets_assign(t, "in", 1);
    ck_assert_int_eq(offsets_take_partition(t, "in", 0, record, &(Commits){0}), 0); /* nothing read */
    offsets_track(t, "in", 0, 7, &gen);
    offsets_track(t, "in", 1, 7, &gen);
    offsets_ack(t, "in", 0, 7, g);
    Commits c = {0};
    ck_assert_int_eq(offsets_take_commits(t, record, &c), 2);  /* 0 -> 8, 1 -> 7 */
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(offsets_take_partition(t, "in", 0, record, &c), 1); /* reported again */
    ck_assert_int_eq(c.part[0], 0);
    ck_assert_int_eq(c.next[0], 8);
    offsets_free(t);
}
END_TEST

START_TEST(test_many_offsets_ring_growth) {
    /* thousands outstanding, acked in reverse: one commit at the very end */
    OffsetTracker *t = offsets_new();
    uint32_t g = offsets_assign(t, "in", 0), gen;
    const int N = 5000;
    for (int i = 0; i < N; i++) ck_assert_int_eq(offsets_track(t, "in", 0, i, &gen), 1);
    take_one(t);
    for (int i = N - 1; i >= 1; i--) ck_assert_int_eq(offsets_ack(t, "in", 0, i, g), 1);
    ck_assert_int_eq(take_one(t), -1);
    ck_assert_int_eq(offsets_ack(t, "in", 0, 0, g), 1);
    ck_assert_int_eq(take_one(t), N);
    /* interleaved track/ack wraps the ring */
    for (int i = N; i < 3 * N; i++) {
        offsets_track(t, "in", 0, i, &gen);
        if (i % 3 == 0) offsets_ack(t, "in", 0, i - 2, g);
    }
    ck_assert_int_gt(offsets_outstanding(t), 0);
    offsets_free(t);
}
END_TEST

START_TEST(test_failed_commit_reported_again) {
    OffsetTracker *t = offsets_new();
    uint32_t g = offsets_assign(t, "in", 0), gen;
    offsets_track(t, "in", 0, 0, &gen);
    offsets_ack(t, "in", 0, 0, g);
    ck_assert_int_eq(take_one(t), 1);
    ck_assert_int_eq(take_one(t), -1);          /* unchanged: nothing to do */
    offsets_commit_failed(t, "in", 0);
    ck_assert_int_eq(take_one(t), 1);           /* same point, once more */
    ck_assert_int_eq(take_one(t), -1);
    offsets_commit_failed(t, "gone", 3);        /* unknown partition: no effect */
    ck_assert_int_eq(take_one(t), -1);
    offsets_free(t);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("offsets");
    TCase *tc = check_case(s, "core", 0);
    tcase_add_test(tc, test_out_of_order_acks_commit_contiguous_prefix);
    tcase_add_test(tc, test_gaps_in_offsets);
    tcase_add_test(tc, test_double_and_unknown_acks_ignored);
    tcase_add_test(tc, test_repeats_refused_and_unassigned_rejected);
    tcase_add_test(tc, test_revoked_partition_never_commits);
    tcase_add_test(tc, test_reassign_gets_new_generation);
    tcase_add_test(tc, test_take_partition_before_revoke);
    tcase_add_test(tc, test_many_offsets_ring_growth);
    tcase_add_test(tc, test_failed_commit_reported_again);
    tcase_add_test(tc, test_revoke_after_out_of_order_acks);
    return s;
}

int main(void) {
    return check_run(suite());
}
