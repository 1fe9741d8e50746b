/* check_queue.c - the consumer->inference hand-off (daemon/queue.c): FIFO
 * order, the micro-batch limits (events, tokens fixed or from a cost
 * function, wait), the pause/resume watermarks with hysteresis, and removal
 * of revoked partitions' items.
 * No timing assertions: waits are only checked for "returns", never for how
 * long they took.
 */
#include "check_main.h"
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include "queue.h"

typedef struct {
    QueueNode node;     /* first member: a QueueNode* is an Item* */
    int id;
    int partition;
} Item;

static Item items[64];

static void push_n(EventQueue *q, int from, int n, int tokens) {
    for (int i = from; i < from + n; i++) {
        items[i].id = i;
        items[i].partition = i % 2;
        items[i].node.tokens = tokens;
        queue_push(q, &items[i].node);
    }
}

START_TEST(test_fifo_and_max_events) {
    EventQueue q;
    queue_init(&q, 100, 10, 0);
    push_n(&q, 0, 10, 1);
    QueueNode *out[64];
    int n = queue_take_batch(&q, out, 4, 0, 0, 0);
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < n; i++) ck_assert_int_eq(((Item *)out[i])->id, i);
    n = queue_take_batch(&q, out, 100, 0, 0, 0);
    ck_assert_int_eq(n, 6);
    ck_assert_int_eq(((Item *)out[0])->id, 4);
    ck_assert_int_eq(((Item *)out[5])->id, 9);
    ck_assert_int_eq(queue_depth(&q), 0);
    ck_assert_int_eq(queue_take_batch(&q, out, 4, 0, 0, 10), 0);  /* idle timeout */
    queue_destroy(&q);
}
END_TEST

START_TEST(test_token_budget) {
    EventQueue q;
    queue_init(&q, 100, 10, 0);
    push_n(&q, 0, 5, 40);
    QueueNode *out[64];
    /* 100 tokens: two of 40 fit, the third would make 120 */
    ck_assert_int_eq(queue_take_batch(&q, out, 10, 100, 0, 0), 2);
    ck_assert_int_eq(((Item *)out[0])->id, 0);
    /* an item larger than the budget still runs, alone */
    items[10].node.tokens = 500;
    items[10].id = 10;
    EventQueue q2;
    queue_init(&q2, 100, 10, 0);
    queue_push(&q2, &items[10].node);
    push_n(&q2, 11, 1, 1);
    ck_assert_int_eq(queue_take_batch(&q2, out, 10, 100, 0, 0), 1);
    ck_assert_int_eq(((Item *)out[0])->id, 10);
    ck_assert_int_eq(queue_take_batch(&q2, out, 10, 100, 0, 0), 1);
    queue_destroy(&q);
    queue_destroy(&q2);
}
END_TEST

/* Cost function of the tests: items[i]'s cost is costs[i], read when the
 * item is considered; counts its calls. */
static int costs[64], cost_calls;
static int cost_of(const QueueNode *n, void *arg) {
    (void)arg;
    cost_calls++;
    return costs[((const Item *)n)->id];
}

/* With a cost function, the budget counts what it says when an item is
 * considered (not the tokens fixed at push time), so an item's cost may
 * fall while it waits; without a token budget it is never asked. */
START_TEST(test_cost_function) {
    EventQueue q;
    queue_init(&q, 100, 10, 0);
    push_n(&q, 0, 6, 400);                  /* pushed at 400 tokens each */
    for (int i = 0; i < 6; i++) costs[i] = 400;
    QueueNode *out[64];
    ck_assert_int_eq(queue_take_batch_cost(&q, out, 10, 1000, 0, 0, cost_of, NULL), 2);
    for (int i = 2; i < 6; i++) costs[i] = 100;  /* e.g. their prefix got cached */
    ck_assert_int_eq(queue_take_batch_cost(&q, out, 10, 1000, 0, 0, cost_of, NULL), 4);
    ck_assert_int_eq(((Item *)out[0])->id, 2);
    /* an item over the budget still runs alone */
    push_n(&q, 6, 2, 1);
    costs[6] = 5000;
    costs[7] = 1;
    ck_assert_int_eq(queue_take_batch_cost(&q, out, 10, 1000, 0, 0, cost_of, NULL), 1);
    ck_assert_int_eq(queue_take_batch_cost(&q, out, 10, 1000, 0, 0, cost_of, NULL), 1);
    push_n(&q, 8, 3, 1);
    cost_calls = 0;
    ck_assert_int_eq(queue_take_batch_cost(&q, out, 10, 0, 0, 0, cost_of, NULL), 3);
    ck_assert_int_eq(cost_calls, 0);
    queue_destroy(&q);
}
END_TEST

typedef struct { EventQueue *q; int from, n; } Feeder;

static void *feed_later(void *arg) {
    Feeder *f = arg;
    usleep(20000);
    push_n(f->q, f->from, f->n, 1);
    return NULL;
}

START_TEST(test_wait_collects_late_items) {
    /* with a long max_wait, items pushed after the first join the batch;
     * reaching max_events ends the wait early */
    EventQueue q;
    queue_init(&q, 100, 10, 0);
    push_n(&q, 0, 1, 1);
    Feeder f = {&q, 1, 3};
    pthread_t th;
    pthread_create(&th, NULL, feed_later, &f);
    QueueNode *out[64];
    int n = queue_take_batch(&q, out, 4, 0, 60000, 0);
    pthread_join(th, NULL);
    ck_assert_int_eq(n, 4);
    for (int i = 0; i < 4; i++) ck_assert_int_eq(((Item *)out[i])->id, i);
    queue_destroy(&q);
}
END_TEST

START_TEST(test_idle_wait_wakes_on_push_and_close) {
    EventQueue q;
    queue_init(&q, 100, 10, 0);
    Feeder f = {&q, 0, 1};
    pthread_t th;
    pthread_create(&th, NULL, feed_later, &f);
    QueueNode *out[64];
    ck_assert_int_eq(queue_take_batch(&q, out, 4, 0, 0, 60000), 1);
    pthread_join(th, NULL);
    queue_close(&q);
    ck_assert_int_eq(queue_take_batch(&q, out, 4, 0, 60000, 60000), 0); /* closed, empty */
    queue_destroy(&q);
}
END_TEST

START_TEST(test_pause_resume_watermarks) {
    EventQueue q;
    queue_init(&q, 8, 2, 0);
    QueueNode *out[64];
    push_n(&q, 0, 7, 1);
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_NONE);
    push_n(&q, 7, 1, 1);                        /* depth 8 = capacity */
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_PAUSE);
    ck_assert(queue_paused(&q));
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_NONE);     /* already paused */
    push_n(&q, 8, 2, 1);                        /* stragglers after the pause */
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_NONE);
    queue_take_batch(&q, out, 7, 0, 0, 0);      /* depth 3: between the marks */
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_NONE);
    ck_assert(queue_paused(&q));
    queue_take_batch(&q, out, 1, 0, 0, 0);      /* depth 2 = low water */
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_RESUME);
    ck_assert(!queue_paused(&q));
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_NONE);
    queue_destroy(&q);
}
END_TEST

START_TEST(test_pending_acks_also_pause) {
    /* records waiting for delivery acks count too (broker down: the queue
     * drains into the producer, memory must still stay bounded) */
    EventQueue q;
    queue_init(&q, 8, 2, 100);
    ck_assert_int_eq(queue_flow(&q, 99), FLOW_NONE);
    ck_assert_int_eq(queue_flow(&q, 100), FLOW_PAUSE);
    ck_assert_int_eq(queue_flow(&q, 51), FLOW_NONE);    /* above pending low mark */
    ck_assert_int_eq(queue_flow(&q, 50), FLOW_RESUME);
    queue_destroy(&q);
}
END_TEST

START_TEST(test_low_water_clamped) {
    EventQueue q;
    queue_init(&q, 1, 5, 0);                    /* low >= capacity: clamped to 0 */
    push_n(&q, 0, 1, 1);
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_PAUSE);
    QueueNode *out[4];
    queue_take_batch(&q, out, 4, 0, 0, 0);
    ck_assert_int_eq(queue_flow(&q, 0), FLOW_RESUME);
    queue_destroy(&q);
}
END_TEST

static int odd_partition(QueueNode *n, void *ud) {
    (void)ud;
    return ((Item *)n)->partition == 1;
}

START_TEST(test_remove_revoked_items) {
    EventQueue q;
    queue_init(&q, 100, 10, 0);
    push_n(&q, 0, 6, 1);                        /* partitions 0,1,0,1,0,1 */
    QueueNode *gone = queue_remove_if(&q, odd_partition, NULL);
    int removed = 0;
    for (QueueNode *n = gone; n; n = n->next) {
        ck_assert_int_eq(((Item *)n)->partition, 1);
        removed++;
    }
    ck_assert_int_eq(removed, 3);
    ck_assert_int_eq(queue_depth(&q), 3);
    push_n(&q, 6, 2, 1);                        /* tail still valid after removal */
    QueueNode *out[64];
    int n = queue_take_batch(&q, out, 64, 0, 0, 0);
    ck_assert_int_eq(n, 5);
    int want[] = {0, 2, 4, 6, 7};
    for (int i = 0; i < n; i++) ck_assert_int_eq(((Item *)out[i])->id, want[i]);
    queue_destroy(&q);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("queue");
    TCase *tc = check_case(s, "core", 0);
    tcase_add_test(tc, test_fifo_and_max_events);
    tcase_add_test(tc, test_token_budget);
    tcase_add_test(tc, test_cost_function);
    tcase_add_test(tc, test_wait_collects_late_items);
    tcase_add_test(tc, test_idle_wait_wakes_on_push_and_close);
    tcase_add_test(tc, test_pause_resume_watermarks);
    tcase_add_test(tc, test_pending_acks_also_pause);
    tcase_add_test(tc, test_low_water_clamped);
    tcase_add_test(tc, test_remove_revoked_items);
    return s;
}

int main(void) {
    return check_run(suite());
}
