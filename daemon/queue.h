/* queue.h - the bounded hand-off between guardd's consumer thread and its
 * inference thread, and the micro-batch rule.
 *
 * Items are caller structs embedding a QueueNode (intrusive FIFO, no copies).
 * push never blocks: the consumer thread must keep polling Kafka, so the bound
 * is enforced by flow control instead. queue_flow() says when to pause the
 * input partitions (depth reached the capacity, or too many records are
 * still waiting for their delivery ack) and when to resume them (both fell to
 * their low-water marks); between the two marks nothing changes (hysteresis).
 *
 * queue_take_batch() forms a micro-batch: it waits for a first item, then
 * keeps adding items in FIFO order until max_events, until the next item's
 * tokens would pass max_tokens (a single oversized item still runs alone),
 * or until max_wait_ms after the OLDEST item was queued (so an item that
 * already waited long goes at once). An item's tokens are its `tokens`
 * field, fixed when it was queued, or what a cost function says when the
 * item is considered (queue_take_batch_cost: the cost of an item can fall
 * while it waits, e.g. once the batch before it cached its prefix).
 *
 * Thread-safe (one mutex, one condition variable).
 */
#ifndef GUARDD_QUEUE_H
#define GUARDD_QUEUE_H
#include <pthread.h>

typedef struct QueueNode {
    struct QueueNode *next;
    int tokens;             /* cost for max_tokens (without a cost function) */
    double enqueued;        /* monotonic seconds, set by queue_push */
} QueueNode;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    QueueNode *head, *tail;
    int depth;
    int closed;
    /* flow control */
    int capacity, low_water;            /* depth marks */
    long max_pending, pending_low;      /* marks for records awaiting acks */
    int paused;
} EventQueue;

typedef enum { FLOW_NONE = 0, FLOW_PAUSE, FLOW_RESUME } FlowAction;

/* capacity >= 1; low_water < capacity (clamped); max_pending <= 0: no limit. */
void queue_init(EventQueue *q, int capacity, int low_water, long max_pending);
void queue_destroy(EventQueue *q);  /* items still queued are the caller's */

double queue_now(void);             /* CLOCK_MONOTONIC seconds */

void queue_push(EventQueue *q, QueueNode *n);
int queue_depth(EventQueue *q);
/* Wakes every waiter; take_batch then returns what is queued without
 * waiting, and 0 once empty. */
void queue_close(EventQueue *q);

/* Given the records awaiting acks, decides pause/resume and remembers it. */
FlowAction queue_flow(EventQueue *q, long pending);
int queue_paused(EventQueue *q);

/* Waits up to idle_ms for a first item, then fills as described above.
 * Returns the number of items put in out[0..max_events-1]. */
int queue_take_batch(EventQueue *q, QueueNode **out, int max_events, int max_tokens,
                     int max_wait_ms, int idle_ms);
/* The same, with each item's tokens given by cost(item, arg), called in the
 * caller's thread with the queue locked (so it must be quick and must not
 * touch the queue) when the item is considered for this batch. */
typedef int (*QueueCostFn)(const QueueNode *n, void *arg);
int queue_take_batch_cost(EventQueue *q, QueueNode **out, int max_events, int max_tokens,
                          int max_wait_ms, int idle_ms, QueueCostFn cost, void *arg);

/* Removes every item for which drop(item, ud) is nonzero and returns them as
 * a list linked by next (caller frees). */
QueueNode *queue_remove_if(EventQueue *q, int (*drop)(QueueNode *, void *), void *ud);

#endif
