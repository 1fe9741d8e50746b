/* offsets.c - per-partition outstanding-offset sets and commit points
 * (contract in offsets.h).
 *
 * A partition keeps its outstanding records in a ring buffer in consumption
 * order, which is ascending offset order, so an ack finds its entry by binary
 * search and the commit point is simply "offset of the first entry still
 * unfinished": finished entries at the front are popped as soon as they are
 * acknowledged, moving the commit point past them. Partitions live in a small
 * array (a member owns a handful); revoked ones are deleted outright, which is
 * what makes their late acks stale.
 */
#include "offsets.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t offset;
    int done;
} Entry;

typedef struct {
    char *topic;
    int32_t partition;
    uint32_t gen;
    Entry *ring;
    int cap, head, count;
    int64_t last_tracked;   /* -1: nothing tracked yet */
    int64_t commit_next;    /* -1: unknown (nothing tracked yet) */
    int64_t reported_next;  /* last value handed to take_commits */
} Part;

struct OffsetTracker {
    pthread_mutex_t mu;
    Part *parts;
    int n, cap;
    uint32_t next_gen;
    long outstanding;
};

OffsetTracker *offsets_new(void) {
    OffsetTracker *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->next_gen = 1;
    return t;
}

static void part_clear(Part *p) {
    free(p->topic);
    free(p->ring);
    memset(p, 0, sizeof *p);
}

void offsets_free(OffsetTracker *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) part_clear(&t->parts[i]);
    free(t->parts);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static Part *find(OffsetTracker *t, const char *topic, int32_t partition) {
    for (int i = 0; i < t->n; i++)
        if (t->parts[i].partition == partition && !strcmp(t->parts[i].topic, topic))
            return &t->parts[i];
    return NULL;
}

static Entry *at(Part *p, int i) { return &p->ring[(p->head + i) % p->cap]; }

/* Removes parts[i] (swap with last); its outstanding records stop counting.
 * Entries acked out of order (done, behind an unfinished one) were counted
 * off already. */
static void remove_part(OffsetTracker *t, int i) {
    Part *p = &t->parts[i];
    for (int k = 0; k < p->count; k++) t->outstanding -= !at(p, k)->done;
    part_clear(p);
    t->parts[i] = t->parts[--t->n];
}

uint32_t offsets_assign(OffsetTracker *t, const char *topic, int32_t partition) {
    pthread_mutex_lock(&t->mu);
    Part *p = find(t, topic, partition);
    if (p) remove_part(t, (int)(p - t->parts));
    uint32_t gen = 0;
    if (t->n == t->cap) {
        int nc = t->cap ? t->cap * 2 : 8;
        Part *np = realloc(t->parts, (size_t)nc * sizeof *np);
        if (!np) goto out;
        t->parts = np;
        t->cap = nc;
    }
    p = &t->parts[t->n];
    memset(p, 0, sizeof *p);
    p->topic = strdup(topic);
    if (!p->topic) goto out;
    p->partition = partition;
    p->gen = gen = t->next_gen++;
    if (t->next_gen == 0) t->next_gen = 1;   /* 0 never names a live assignment */
    p->last_tracked = p->commit_next = p->reported_next = -1;
    t->n++;
out:
    pthread_mutex_unlock(&t->mu);
    return gen;
}

void offsets_revoke(OffsetTracker *t, const char *topic, int32_t partition) {
    pthread_mutex_lock(&t->mu);
    Part *p = find(t, topic, partition);
    if (p) remove_part(t, (int)(p - t->parts));
    pthread_mutex_unlock(&t->mu);
}

static int grow(Part *p) {
    int nc = p->cap ? p->cap * 2 : 64;
    Entry *nr = malloc((size_t)nc * sizeof *nr);
    if (!nr) return -1;
    for (int i = 0; i < p->count; i++) nr[i] = *at(p, i);
    free(p->ring);
    p->ring = nr;
    p->cap = nc;
    p->head = 0;
    return 0;
}

int offsets_track(OffsetTracker *t, const char *topic, int32_t partition, int64_t offset,
                  uint32_t *gen) {
    int rc = -1;
    pthread_mutex_lock(&t->mu);
    Part *p = find(t, topic, partition);
    if (!p) goto out;
    if (offset <= p->last_tracked) { rc = 0; goto out; }
    if (p->count == p->cap && grow(p) < 0) goto out;
    *at(p, p->count) = (Entry){offset, 0};
    p->count++;
    p->last_tracked = offset;
    if (p->count == 1) p->commit_next = offset;
    t->outstanding++;
    *gen = p->gen;
    rc = 1;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* Index of offset among p's entries, or -1 (binary search: entries ascend). */
static int locate(Part *p, int64_t offset) {
    int lo = 0, hi = p->count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int64_t o = at(p, mid)->offset;
        if (o == offset) return mid;
        if (o < offset) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

int offsets_ack(OffsetTracker *t, const char *topic, int32_t partition, int64_t offset,
                uint32_t gen) {
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    Part *p = find(t, topic, partition);
    if (!p || p->gen != gen) goto out;
    int i = locate(p, offset);
    if (i < 0 || at(p, i)->done) goto out;
    at(p, i)->done = 1;
    t->outstanding--;
    /* pop the finished prefix: the commit point moves over it */
    while (p->count > 0 && at(p, 0)->done) {
        p->commit_next = at(p, 0)->offset + 1;
        p->head = (p->head + 1) % p->cap;
        p->count--;
    }
    if (p->count > 0) p->commit_next = at(p, 0)->offset;
    rc = 1;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

int offsets_is_current(OffsetTracker *t, const char *topic, int32_t partition, uint32_t gen) {
    pthread_mutex_lock(&t->mu);
    Part *p = find(t, topic, partition);
    int cur = p && p->gen == gen;
    pthread_mutex_unlock(&t->mu);
    return cur;
}

long offsets_outstanding(OffsetTracker *t) {
    pthread_mutex_lock(&t->mu);
    long n = t->outstanding;
    pthread_mutex_unlock(&t->mu);
    return n;
}

int offsets_take_commits(OffsetTracker *t, OffsetCommitFn fn, void *ud) {
    int n = 0;
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->n; i++) {
        Part *p = &t->parts[i];
        if (p->commit_next < 0 || p->commit_next == p->reported_next) continue;
        p->reported_next = p->commit_next;
        fn(ud, p->topic, p->partition, p->commit_next);
        n++;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

int offsets_take_partition(OffsetTracker *t, const char *topic, int32_t partition,
                           OffsetCommitFn fn, void *ud) {
    int n = 0;
    pthread_mutex_lock(&t->mu);
    Part *p = find(t, topic, partition);
    if (p && p->commit_next >= 0) {
        p->reported_next = p->commit_next;
        fn(ud, p->topic, p->partition, p->commit_next);
        n = 1;
    }
    pthread_mutex_unlock(&t->mu);
    return n;
}

void offsets_commit_failed(OffsetTracker *t, const char *topic, int32_t partition) {
    pthread_mutex_lock(&t->mu);
    Part *p = find(t, topic, partition);
    if (p) p->reported_next = -1;
    pthread_mutex_unlock(&t->mu);
}

int offsets_progress(OffsetTracker *t, OffsetProgressFn fn, void *ud) {
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->n; i++) {
        Part *p = &t->parts[i];
        long open = 0;
        for (int k = 0; k < p->count; k++) open += !at(p, k)->done;
        fn(ud, p->topic, p->partition, p->last_tracked < 0 ? -1 : p->last_tracked + 1,
           p->commit_next, open);
    }
    int n = t->n;
    pthread_mutex_unlock(&t->mu);
    return n;
}
