/* health.c - the pipeline's stall watch: a thread of its own that feeds the
 * stall detector (stall.h) once a second and publishes its verdict (/readyz,
 * guardd_stalled_partitions, guardd_inference_stalled,
 * guardd_consumer_stalled, a warning naming what stalled, an info line when
 * it moves again).
 *
 * Why a thread of its own: the watch used to run on the consumer thread, so
 * a consumer thread hung in a call or a callback (a deadlock, a poll that
 * never returns) stopped the watch with it and /readyz kept saying ready.
 * Now the consumer thread only publishes, with timestamps, what the watch
 * reads, and the watch also checks that the consumer loop itself comes
 * round: one that has not for health.stall_seconds is reported stalled
 * (with every partition that has work, whose marks stop moving with it).
 *
 * Inputs: the offset tracker's progress marks per assigned partition (which
 * is the assignment: the tracker follows every assign and revoke), the
 * partitions this member paused (p->paused_parts), the engine's batch start
 * and last layer (written by the inference thread), the consumer loop's last
 * round, and, for records not yet read, the broker offsets of the last
 * librdkafka statistics report. Those are what catches a partition the
 * client never fetches again although guardd believes it resumed (the
 * failure of paused partitions after a rebalance): nothing consumed, so
 * nothing outstanding, but records waiting.
 * A partition the client does not fetch has no fresh broker offsets in the
 * statistics (librdkafka takes them from fetch responses: unknown, or as
 * they were when fetching stopped), so for a partition with nothing in hand
 * and not paused by us the end offset is asked of the broker: one partition
 * per tick, round robin, each at most every tenth of the threshold (5 s at
 * least: 30 s by default), with a short timeout (this thread's time only).
 */
#include "pipeline_int.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "log.h"
#include "metrics.h"

#define HEALTH_INTERVAL_S 1.0
#define QUERY_EVERY_MIN_S 5.0  /* and at least a tenth of health.stall_seconds */
#define QUERY_TIMEOUT_MS 200

typedef struct BrokerOffsets {
    char *topic;
    int32_t partition;
    int64_t end;        /* last stable offset (or high watermark) */
    int64_t next;       /* the client's next fetch offset */
    int64_t committed, lo;
    double asked;       /* queried ends only: when */
} BrokerOffsets;

long long health_now_ms(void) { return (long long)(queue_now() * 1000.0); }

static void free_offsets(BrokerOffsets *b, int n) {
    for (int i = 0; i < n; i++) free(b[i].topic);
    free(b);
}

static int64_t int_of(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* Keeps per partition what the statistics say about the broker's side
 * (STATISTICS.md: topics.<t>.partitions.<p>; partition -1 is internal). */
void health_stats(Pipeline *p, const char *text) {
    json_t *root = json_loads(text, 0, NULL);
    json_t *topics = json_object_get(root, "topics");
    const char *type = json_string_value(json_object_get(root, "type"));
    if (!json_is_object(topics) || (type && strcmp(type, "consumer"))) {
        json_decref(root);
        return;
    }
    int n = 0, cap = 0;
    BrokerOffsets *b = NULL;
    const char *tname, *pkey;
    json_t *t, *part;
    json_object_foreach(topics, tname, t) {
        json_object_foreach(json_object_get(t, "partitions"), pkey, part) {
            int64_t id = int_of(part, "partition");
            if (id < 0) continue;
            if (n == cap) {
                BrokerOffsets *nb = realloc(b, sizeof *nb * (size_t)(cap = cap ? 2 * cap : 16));
                if (!nb) goto out;
                b = nb;
            }
            int64_t ls = int_of(part, "ls_offset"), hi = int_of(part, "hi_offset");
            b[n] = (BrokerOffsets){strdup(tname), (int32_t)id, ls >= 0 ? ls : hi,
                                   int_of(part, "next_offset"), int_of(part, "committed_offset"),
                                   int_of(part, "lo_offset"), 0};
            if (b[n].topic) n++;
        }
    }
out:
    json_decref(root);
    pthread_mutex_lock(&p->watch_mu);
    BrokerOffsets *old = p->broker_offsets;
    int n_old = p->n_broker_offsets;
    p->broker_offsets = b;
    p->n_broker_offsets = n;
    pthread_mutex_unlock(&p->watch_mu);
    free_offsets(old, n_old);
}

static BrokerOffsets *find_offsets(BrokerOffsets *b, int n, const char *topic, int32_t partition) {
    for (int i = 0; i < n; i++)
        if (b[i].partition == partition && !strcmp(b[i].topic, topic)) return &b[i];
    return NULL;
}

/* Records on the broker past what this member consumed, or -1 unknown. An
 * end offset only grows, so an old one can only underestimate. Under
 * watch_mu (broker_offsets). */
static int64_t unread(const Pipeline *p, const char *topic, int32_t partition, int64_t position) {
    const BrokerOffsets *b = find_offsets(p->broker_offsets, p->n_broker_offsets, topic, partition);
    const BrokerOffsets *q = find_offsets(p->asked_ends, p->n_asked_ends, topic, partition);
    int64_t end = b ? b->end : -1, pos = position;
    if (q && q->end > end) end = q->end;
    if (b && b->next > pos) pos = b->next;
    if (pos < 0 && b) pos = b->committed >= 0 ? b->committed : b->lo;
    if (end < 0) return -1;
    if (pos < 0) pos = 0;   /* nothing read, no committed offset known: from the start */
    return end > pos ? end - pos : 0;
}

/* Asks the broker for the end of one partition whose end nothing reports
 * (see the top of the file). */
static void ask_one_end(Pipeline *p, const StallPart *parts, int n, double now) {
    double every = atomic_load(&p->stall_seconds) / 10.0;
    if (every < QUERY_EVERY_MIN_S) every = QUERY_EVERY_MIN_S;
    for (int k = 0; k < n; k++) {
        const StallPart *sp = &parts[(p->ask_rr + k) % n];
        if (sp->paused || sp->outstanding > 0) continue;
        BrokerOffsets *q = find_offsets(p->asked_ends, p->n_asked_ends, sp->topic, sp->partition);
        if (q && now - q->asked < every) continue;
        p->ask_rr = (p->ask_rr + k + 1) % n;
        int64_t lo = -1, hi = -1;
        if (rd_kafka_query_watermark_offsets(p->consumer, sp->topic, sp->partition, &lo, &hi,
                                             QUERY_TIMEOUT_MS))
            hi = -1;
        if (!q) {
            BrokerOffsets *nq = realloc(p->asked_ends, sizeof *nq * (size_t)(p->n_asked_ends + 1));
            char *t = strdup(sp->topic);
            if (!nq || !t) { free(t); if (nq) p->asked_ends = nq; return; }
            p->asked_ends = nq;
            q = &nq[p->n_asked_ends++];
            *q = (BrokerOffsets){t, sp->partition, -1, -1, -1, -1, 0};
        }
        q->asked = now;
        if (hi > q->end) q->end = hi;
        return;
    }
}

/* Forgets asked ends of partitions no longer assigned. */
static void prune_asked(Pipeline *p, const StallPart *parts, int n) {
    for (int i = 0; i < p->n_asked_ends;) {
        BrokerOffsets *q = &p->asked_ends[i];
        int keep = 0;
        for (int k = 0; k < n && !keep; k++)
            keep = parts[k].partition == q->partition && !strcmp(parts[k].topic, q->topic);
        if (keep) { i++; continue; }
        free(q->topic);
        *q = p->asked_ends[--p->n_asked_ends];
    }
}

typedef struct {
    StallPart *parts;
    int n, cap;
} Snapshot;

static void collect(void *ud, const char *topic, int32_t partition, int64_t position,
                    int64_t commit_next, long outstanding) {
    Snapshot *s = ud;
    if (s->n == s->cap) {
        StallPart *np = realloc(s->parts, sizeof *np * (size_t)(s->cap ? 2 * s->cap : 16));
        if (!np) return;
        s->parts = np;
        s->cap = s->cap ? 2 * s->cap : 16;
    }
    char *t = strdup(topic);    /* the tracker's copy is only valid under its lock */
    if (!t) return;
    s->parts[s->n++] = (StallPart){t, partition, 0, position, commit_next, outstanding, -1};
}

/* Under watch_mu (paused_parts). */
static int is_paused(const Pipeline *p, const char *topic, int32_t partition) {
    for (int i = 0; p->paused_parts && i < p->paused_parts->cnt; i++)
        if (p->paused_parts->elems[i].partition == partition &&
            !strcmp(p->paused_parts->elems[i].topic, topic))
            return 1;
    return 0;
}

/* Warns when the stalled set (or the engine's state) changes, says when it clears. */
static void report(Pipeline *p, int n, int stuck, const char *names, double secs, double batch_secs,
                   int threshold) {
    if (strcmp(names, p->stall_names)) {
        if (n > 0)
            log_msg(LOG_WARN, "event=stall partitions=%s count=%d seconds=%.0f stall_seconds=%d "
                    "note=\"assigned, not paused, records waiting, nothing read or committed\"",
                    names, n, secs, threshold);
        else
            log_msg(LOG_INFO, "event=stall_cleared partitions=%s", p->stall_names);
        snprintf(p->stall_names, sizeof p->stall_names, "%s", names);
    }
    if (stuck != p->stall_warned_engine) {
        if (stuck)
            log_msg(LOG_WARN, "event=inference_stall batch_seconds=%.0f stall_seconds=%d "
                    "note=\"no layer of the running batch finished\"", batch_secs, threshold);
        else
            log_msg(LOG_INFO, "event=inference_stall_cleared");
        p->stall_warned_engine = stuck;
    }
}

/* Warns once when the consumer loop stops coming round, says when it is back. */
static void report_consumer(Pipeline *p, int stuck, double since, int threshold) {
    if (stuck == p->stall_warned_consumer) return;
    if (stuck)
        log_msg(LOG_WARN, "event=consumer_stall seconds=%.0f stall_seconds=%d "
                "note=\"the consumer thread's poll loop has not come round: nothing is read, "
                "acknowledged or committed\"", since, threshold);
    else
        log_msg(LOG_INFO, "event=consumer_stall_cleared");
    p->stall_warned_consumer = stuck;
}

/* One evaluation of every rule at time now. */
static void health_check(Pipeline *p, double now) {
    if (!p->stall && !(p->stall = stall_new())) return;
    int threshold = atomic_load(&p->stall_seconds);
    Snapshot s = {0};
    offsets_progress(p->offsets, collect, &s);
    pthread_mutex_lock(&p->watch_mu);
    for (int i = 0; i < s.n; i++) {
        s.parts[i].paused = is_paused(p, s.parts[i].topic, s.parts[i].partition);
        s.parts[i].unread = unread(p, s.parts[i].topic, s.parts[i].partition, s.parts[i].position);
    }
    pthread_mutex_unlock(&p->watch_mu);
    prune_asked(p, s.parts, s.n);
    if (threshold > 0 && s.n > 0) {
        ask_one_end(p, s.parts, s.n, now);
        pthread_mutex_lock(&p->watch_mu);
        for (int i = 0; i < s.n; i++)
            s.parts[i].unread = unread(p, s.parts[i].topic, s.parts[i].partition, s.parts[i].position);
        pthread_mutex_unlock(&p->watch_mu);
    }
    long long start = atomic_load(&p->batch_start_ms), beat = atomic_load(&p->engine_beat_ms);
    StallEngine eng = {start != 0, (double)(beat > start ? beat : start) / 1000.0};
    int stuck = 0;
    int n = stall_update(p->stall, now, threshold, s.parts, s.n, &eng, &stuck);
    for (int i = 0; i < s.n; i++) free((char *)s.parts[i].topic);
    free(s.parts);
    double c_since = now - (double)atomic_load(&p->consumer_beat_ms) / 1000.0;
    int c_stuck = !health_consumer_alive(p);

    char names[sizeof p->stall_names], detail[512];
    stall_names(p->stall, names, sizeof names);
    double secs = stall_longest(p->stall, now), batch_secs = eng.busy ? now - eng.last_progress : 0;
    size_t o = 0;
    detail[0] = 0;
    if (c_stuck)
        o += (size_t)snprintf(detail, sizeof detail,
                              "consumer: its poll loop has not come round for %.0f s", c_since);
    if (stuck && o < sizeof detail)
        o += (size_t)snprintf(detail + o, sizeof detail - o,
                              "%sinference: no layer of the running batch finished for %.0f s",
                              o ? "; " : "", batch_secs);
    if (n > 0 && o < sizeof detail)
        snprintf(detail + o, sizeof detail - o, "%sno progress for %.0f s on %s", o ? "; " : "", secs,
                 names);
    atomic_store(&p->stalled, n);
    atomic_store(&p->engine_stuck, stuck);
    atomic_store(&p->consumer_stuck, c_stuck);
    /* the consumer's gauge is cleared before the /readyz detail stops naming
     * it and set after the detail names it: an HTTP probe in between never
     * reads "stalled: " with an empty detail */
    if (!c_stuck) metrics_set_consumer_stalled(0);
    metrics_set_stalled(n, stuck, detail);
    if (c_stuck) metrics_set_consumer_stalled(1);
    report_consumer(p, c_stuck, c_since, threshold);
    report(p, n, stuck, names, secs, batch_secs, threshold);
}

int health_consumer_alive(Pipeline *p) {
    int threshold = atomic_load(&p->stall_seconds);
    if (threshold <= 0 || atomic_load(&p->stop_consume)) return 1;
    return health_now_ms() - atomic_load(&p->consumer_beat_ms) < (long long)threshold * 1000;
}

static void *health_main(void *arg) {
    Pipeline *p = arg;
    pthread_mutex_lock(&p->watch_mu);
    while (!p->watch_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);  /* watch_cv's clock (pipeline.c) */
        ts.tv_sec += (time_t)HEALTH_INTERVAL_S;
        pthread_cond_timedwait(&p->watch_cv, &p->watch_mu, &ts);
        if (p->watch_stop) break;
        pthread_mutex_unlock(&p->watch_mu);
        health_check(p, queue_now());
        pthread_mutex_lock(&p->watch_mu);
    }
    pthread_mutex_unlock(&p->watch_mu);
    return NULL;
}

int health_start(Pipeline *p) {
    if (pthread_create(&p->health_th, NULL, health_main, p)) return -1;
    p->watch_started = 1;
    return 0;
}

void health_stop(Pipeline *p) {
    if (!p->watch_started) return;
    pthread_mutex_lock(&p->watch_mu);
    p->watch_stop = 1;
    pthread_cond_signal(&p->watch_cv);
    pthread_mutex_unlock(&p->watch_mu);
    pthread_join(p->health_th, NULL);
    p->watch_started = 0;
}

void health_free(Pipeline *p) {
    health_stop(p);
    stall_free(p->stall);
    p->stall = NULL;
    free_offsets(p->broker_offsets, p->n_broker_offsets);
    p->broker_offsets = NULL;
    p->n_broker_offsets = 0;
    free_offsets(p->asked_ends, p->n_asked_ends);
    p->asked_ends = NULL;
    p->n_asked_ends = 0;
}
