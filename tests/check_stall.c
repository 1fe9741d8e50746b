/* check_stall.c - the stall detector's rules (daemon/stall.h), driven step
 * by step with an injected clock and hand-made progress snapshots: what is
 * flagged (work waiting, nothing moving, no excuse), what must never be
 * (backpressure pauses, idle partitions, records behind a long batch that
 * advances), when a flag clears, and the engine stuck on a batch.
 */
#include "check_main.h"
#include <string.h>
#include "stall.h"

#define T 300.0     /* health.stall_seconds */

static StallPart part(int partition, int64_t position, int64_t commit, long outstanding, int64_t unread) {
    return (StallPart){"in", partition, 0, position, commit, outstanding, unread};
}

static const StallEngine idle = {0, 0};

/* Feeds the same snapshot every 10 s from `from` to `to` (inclusive);
 * returns the last count. */
static int feed(StallDetector *d, double from, double to, StallPart *p, int n, const StallEngine *e,
                int *stuck) {
    int r = 0;
    for (double t = from; t <= to; t += 10) r = stall_update(d, t, T, p, n, e, stuck);
    return r;
}

/* Records on the broker, consumer never reads them (the partition the
 * client kept paused after a rebalance while guardd thought it resumed). */
START_TEST(unread_records_not_read_are_flagged) {
    StallDetector *d = stall_new();
    StallPart p[2] = {part(0, 40, 40, 0, 12), part(1, 7, 7, 0, 0)};
    int stuck = -1;
    ck_assert_int_eq(feed(d, 0, 290, p, 2, &idle, &stuck), 0);
    ck_assert_int_eq(stuck, 0);
    ck_assert_int_eq(stall_update(d, 300, T, p, 2, &idle, NULL), 1);
    char names[64];
    ck_assert_int_eq(stall_names(d, names, sizeof names), 1);
    ck_assert_str_eq(names, "in/0");        /* in/1 is idle: no work, never flagged */
    ck_assert(stall_longest(d, 300) >= 300);
    /* it reads again: cleared at once */
    p[0].position = 41;
    ck_assert_int_eq(stall_update(d, 310, T, p, 2, &idle, NULL), 0);
    ck_assert_int_eq(stall_names(d, names, sizeof names), 0);
    ck_assert_str_eq(names, "");
    stall_free(d);
}
END_TEST

/* Consumed records that never get their output acknowledged (commit point
 * frozen) with the engine idle: flagged. A moving commit point clears it. */
START_TEST(outstanding_without_commits_is_flagged) {
    StallDetector *d = stall_new();
    StallPart p = part(2, 100, 90, 10, 0);
    ck_assert_int_eq(feed(d, 0, 300, &p, 1, &idle, NULL), 1);
    p.commit_next = 91;
    ck_assert_int_eq(stall_update(d, 310, T, &p, 1, &idle, NULL), 0);
    /* the clock restarts from that move */
    ck_assert_int_eq(feed(d, 320, 600, &p, 1, &idle, NULL), 0);
    ck_assert_int_eq(stall_update(d, 610, T, &p, 1, &idle, NULL), 1);
    stall_free(d);
}
END_TEST

/* Paused by backpressure for far longer than the threshold while the
 * engine advances through a long batch: never flagged; neither are records
 * in hand waiting behind that batch with nothing left unread. */
START_TEST(backpressure_and_long_batch_not_flagged) {
    StallDetector *d = stall_new();
    StallPart p[2] = {part(0, 500, 200, 300, 5000), part(1, 80, 60, 20, 0)};
    p[0].paused = 1;
    int stuck = -1;
    for (double t = 0; t <= 3600; t += 10) {
        StallEngine e = {1, t - 1};             /* a layer finished a second ago */
        ck_assert_int_eq(stall_update(d, t, T, p, 2, &e, &stuck), 0);
        ck_assert_int_eq(stuck, 0);
    }
    /* the batch ends, the engine goes idle, nothing moves after that */
    ck_assert_int_eq(feed(d, 3610, 3890, p, 2, &idle, NULL), 0);   /* in/0 still paused */
    ck_assert_int_eq(stall_update(d, 3900, T, p, 2, &idle, NULL), 1); /* in/1: 300 s, engine idle */
    stall_free(d);
}
END_TEST

/* A batch whose layers stopped finishing: the engine is stuck, and then a
 * pause is no excuse (the queue it waits for never drains). */
START_TEST(engine_stuck_flags_paused_partitions) {
    StallDetector *d = stall_new();
    StallPart p = part(0, 500, 200, 300, 40);
    p.paused = 1;
    StallEngine e = {1, 0};                     /* last layer at t = 0 */
    int stuck = -1;
    ck_assert_int_eq(feed(d, 0, 290, &p, 1, &e, &stuck), 0);
    ck_assert_int_eq(stuck, 0);
    ck_assert_int_eq(stall_update(d, 300, T, &p, 1, &e, &stuck), 0);  /* excuse ended just now */
    ck_assert_int_eq(stuck, 1);
    ck_assert_int_eq(feed(d, 310, 600, &p, 1, &e, &stuck), 1);
    ck_assert_int_eq(stuck, 1);
    e.last_progress = 605;                      /* a layer finished */
    ck_assert_int_eq(stall_update(d, 610, T, &p, 1, &e, &stuck), 0);
    ck_assert_int_eq(stuck, 0);
    stall_free(d);
}
END_TEST

/* A partition revoked and assigned again starts afresh; threshold 0 turns
 * detection off; a lagging partition whose position moves is fine. */
START_TEST(revoke_off_and_moving) {
    StallDetector *d = stall_new();
    StallPart p = part(3, 10, 10, 0, 50);
    ck_assert_int_eq(feed(d, 0, 300, &p, 1, &idle, NULL), 1);
    ck_assert_int_eq(stall_update(d, 310, T, NULL, 0, &idle, NULL), 0);   /* revoked */
    ck_assert_int_eq(feed(d, 320, 610, &p, 1, &idle, NULL), 0);          /* back: < 300 s */
    ck_assert_int_eq(stall_update(d, 620, 0, &p, 1, &idle, NULL), 0);    /* off */
    int stuck = -1;
    StallEngine e = {1, 0};
    ck_assert_int_eq(stall_update(d, 10000, 0, &p, 1, &e, &stuck), 0);
    ck_assert_int_eq(stuck, 0);
    StallDetector *m = stall_new();
    for (int t = 0; t <= 3600; t += 10) {
        p.position = 10 + t;                    /* reading, however far behind */
        ck_assert_int_eq(stall_update(m, t, T, &p, 1, &idle, NULL), 0);
    }
    stall_free(m);
    stall_free(d);
}
END_TEST

/* Unknown broker offsets (statistics off) and many stalled partitions: the
 * names are cut with "..." but the count is whole. */
START_TEST(names_cut_and_unknown_offsets) {
    StallDetector *d = stall_new();
    StallPart p[40];
    for (int i = 0; i < 40; i++) p[i] = part(i, 5, 5, 0, -1);     /* no work known: idle */
    ck_assert_int_eq(feed(d, 0, 400, p, 40, &idle, NULL), 0);
    for (int i = 0; i < 40; i++) p[i].outstanding = 1;             /* now work, stuck */
    ck_assert_int_eq(feed(d, 410, 710, p, 40, &idle, NULL), 40);
    char names[32];
    ck_assert_int_eq(stall_names(d, names, sizeof names), 40);
    ck_assert_uint_lt(strlen(names), sizeof names);
    ck_assert_ptr_nonnull(strstr(names, "..."));
    ck_assert(!strncmp(names, "in/", 3));
    stall_free(d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("stall");
    TCase *tc = check_case(s, "rules", 0);
    tcase_add_test(tc, unread_records_not_read_are_flagged);
    tcase_add_test(tc, outstanding_without_commits_is_flagged);
    tcase_add_test(tc, backpressure_and_long_batch_not_flagged);
    tcase_add_test(tc, engine_stuck_flags_paused_partitions);
    tcase_add_test(tc, revoke_off_and_moving);
    tcase_add_test(tc, names_cut_and_unknown_offsets);
    return check_run(s);
}
