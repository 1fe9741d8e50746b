/* queue.c - intrusive FIFO with flow-control marks and the micro-batch rule
 * (contract in queue.h). Waits use CLOCK_MONOTONIC condition variables so a
 * wall-clock jump cannot stretch or cut a batch window.
 */
#include "queue.h"
#include <errno.h>
#include <time.h>

double queue_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void queue_init(EventQueue *q, int capacity, int low_water, long max_pending) {
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&q->mu, NULL);
    q->head = q->tail = NULL;
    q->depth = 0;
    q->closed = 0;
    q->paused = 0;
    q->capacity = capacity < 1 ? 1 : capacity;
    q->low_water = low_water >= q->capacity ? q->capacity - 1 : low_water;
    if (q->low_water < 0) q->low_water = 0;
    q->max_pending = max_pending;
    q->pending_low = max_pending > 0 ? max_pending / 2 : 0;
}

void queue_destroy(EventQueue *q) {
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
}

void queue_push(EventQueue *q, QueueNode *n) {
    n->next = NULL;
    n->enqueued = queue_now();
    pthread_mutex_lock(&q->mu);
    if (q->tail) q->tail->next = n; else q->head = n;
    q->tail = n;
    q->depth++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

int queue_depth(EventQueue *q) {
    pthread_mutex_lock(&q->mu);
    int d = q->depth;
    pthread_mutex_unlock(&q->mu);
    return d;
}

void queue_close(EventQueue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

FlowAction queue_flow(EventQueue *q, long pending) {
    FlowAction a = FLOW_NONE;
    pthread_mutex_lock(&q->mu);
    int over = q->depth >= q->capacity || (q->max_pending > 0 && pending >= q->max_pending);
    int under = q->depth <= q->low_water && (q->max_pending <= 0 || pending <= q->pending_low);
    if (!q->paused && over) { q->paused = 1; a = FLOW_PAUSE; }
    else if (q->paused && under) { q->paused = 0; a = FLOW_RESUME; }
    pthread_mutex_unlock(&q->mu);
    return a;
}

int queue_paused(EventQueue *q) {
    pthread_mutex_lock(&q->mu);
    int p = q->paused;
    pthread_mutex_unlock(&q->mu);
    return p;
}

static struct timespec abs_after(double now, double secs) {
    double t = now + (secs > 0 ? secs : 0);
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    return ts;
}

typedef struct {
    int max_tokens, tokens;     /* budget, tokens taken so far */
    QueueCostFn cost;
    void *arg;
} Budget;

/* Pops the head into out if it fits the token budget; 1 if taken. */
static int take_head(EventQueue *q, QueueNode **out, int *n, Budget *b) {
    QueueNode *h = q->head;
    if (!h) return 0;
    int t = 0;
    if (b->max_tokens > 0) {
        t = b->cost ? b->cost(h, b->arg) : h->tokens;
        if (*n > 0 && b->tokens + t > b->max_tokens) return 0;
    }
    q->head = h->next;
    if (!q->head) q->tail = NULL;
    q->depth--;
    h->next = NULL;
    out[(*n)++] = h;
    b->tokens += t;
    return 1;
}

int queue_take_batch(EventQueue *q, QueueNode **out, int max_events, int max_tokens,
                     int max_wait_ms, int idle_ms) {
    return queue_take_batch_cost(q, out, max_events, max_tokens, max_wait_ms, idle_ms, NULL, NULL);
}

int queue_take_batch_cost(EventQueue *q, QueueNode **out, int max_events, int max_tokens,
                          int max_wait_ms, int idle_ms, QueueCostFn cost, void *arg) {
    if (max_events < 1) max_events = 1;
    int n = 0;
    Budget tokens = {max_tokens, 0, cost, arg};
    pthread_mutex_lock(&q->mu);
    struct timespec idle_until = abs_after(queue_now(), idle_ms / 1000.0);
    while (!q->head && !q->closed)
        if (pthread_cond_timedwait(&q->cv, &q->mu, &idle_until) == ETIMEDOUT) break;
    if (!q->head) goto out;
    struct timespec fill_until = abs_after(q->head->enqueued, max_wait_ms / 1000.0);
    for (;;) {
        while (n < max_events && take_head(q, out, &n, &tokens)) {}
        if (n >= max_events || q->head || q->closed) break;   /* full, token-bound or closing */
        if (pthread_cond_timedwait(&q->cv, &q->mu, &fill_until) == ETIMEDOUT) {
            while (n < max_events && take_head(q, out, &n, &tokens)) {}
            break;
        }
    }
out:
    pthread_mutex_unlock(&q->mu);
    return n;
}

QueueNode *queue_remove_if(EventQueue *q, int (*drop)(QueueNode *, void *), void *ud) {
    QueueNode *removed = NULL, **rtail = &removed;
    pthread_mutex_lock(&q->mu);
    QueueNode **pp = &q->head, *last = NULL;
    while (*pp) {
        QueueNode *n = *pp;
        if (drop(n, ud)) {
            *pp = n->next;
            n->next = NULL;
            *rtail = n;
            rtail = &n->next;
            q->depth--;
        } else {
            last = n;
            pp = &n->next;
        }
    }
    q->tail = last;
    pthread_mutex_unlock(&q->mu);
    return removed;
}
