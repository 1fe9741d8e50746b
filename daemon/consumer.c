/* consumer.c - guardd's consumer thread: Kafka records in, prepared jobs (or
 * DLQ records) out, plus the housekeeping that must happen on one thread
 * with the consumer handle: delivery reports, retries, backpressure and
 * commits.
 *
 * Per record: track its offset (outstanding until its output is acked),
 * decode with the configured limits (msgpack, or JSON by the content-type
 * header or a leading '{': event_decode_record), render + tokenize; any failure becomes a
 * DLQ record with a reason code, never a silent drop. Prepared jobs go to the
 * bounded queue; when it is full (or too many records wait for acks) every
 * assigned partition is paused, and resumed once the queue drained to its
 * low-water mark. Pausing keeps the consumer's position, so nothing is
 * skipped. Commits are asynchronous (a synchronous commit can block for
 * minutes while the group coordinator is away) and cover only the contiguous
 * acknowledged prefix of each partition (offsets.h).
 *
 * Rebalances (eager or cooperative): on revocation the finished prefix is
 * committed, the partitions are forgotten by the tracker (late acks for them
 * are ignored) and their queued items are dropped unprocessed; the next owner
 * re-reads everything after the committed offset.
 */
#include "pipeline_int.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "log.h"
#include "metrics.h"
#include "testhook.h"

#define POLL_MS 100
#define COMMIT_INTERVAL_S 0.25

/* ---- commits ---- */

static void add_commit(void *ud, const char *topic, int32_t partition, int64_t next) {
    rd_kafka_topic_partition_list_add(ud, topic, partition)->offset = next;
}

static void commit_list(Pipeline *p, rd_kafka_topic_partition_list_t *l) {
    if (l->cnt == 0) return;
    rd_kafka_resp_err_t err = rd_kafka_commit(p->consumer, l, 1);
    if (err) {
        log_msg(LOG_WARN, "event=commit_failed error=%s", rd_kafka_err2name(err));
        metrics_kafka_error("commit");
        return;
    }
    atomic_fetch_add(&p->commits_inflight, 1);
}

void consumer_commit_progress(Pipeline *p) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    offsets_take_commits(p->offsets, add_commit, l);
    commit_list(p, l);
    rd_kafka_topic_partition_list_destroy(l);
}

void consumer_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *offsets, void *opaque) {
    (void)rk;
    Pipeline *p = opaque;
    atomic_fetch_sub(&p->commits_inflight, 1);
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
    /* a failed partition is committed again with the next progress commit;
     * until then a restart merely re-reads (duplicates, never loss) */
    int failed = 0;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        rd_kafka_resp_err_t e = err ? err : offsets->elems[i].err;
        if (!e) continue;
        offsets_commit_failed(p->offsets, offsets->elems[i].topic, offsets->elems[i].partition);
        failed++;
    }
    if (err || failed) {
        log_msg(LOG_WARN, "event=commit_failed error=%s partitions=%d", rd_kafka_err2name(err),
                failed);
        metrics_kafka_error("commit");
        return;
    }
    atomic_fetch_add(&p->commits, 1);
    for (int i = 0; log_enabled(LOG_DEBUG) && i < offsets->cnt; i++)
        log_msg(LOG_DEBUG, "event=committed topic=%s partition=%d offset=%lld",
                offsets->elems[i].topic, (int)offsets->elems[i].partition,
                (long long)offsets->elems[i].offset);
}

/* ---- backpressure ----
 *
 * librdkafka keeps a partition's paused flag on its partition object, across
 * revocation and re-assignment: a partition paused, revoked and assigned
 * again stays paused until resumed by name, whatever the assignment was when
 * the queue drained. So the partitions this member paused are kept in
 * p->paused_parts (changed by the consumer thread only, under watch_mu for
 * the stall watch's reads) and resumed by name: on the resume
 * decision, on revocation (after the unassign), and every newly assigned
 * partition is explicitly paused or resumed to match the queue's state. */

static int find_part(const rd_kafka_topic_partition_list_t *l, const char *topic,
                     int32_t partition) {
    for (int i = 0; l && i < l->cnt; i++)
        if (l->elems[i].partition == partition && !strcmp(l->elems[i].topic, topic)) return i;
    return -1;
}

static void note_paused_count(Pipeline *p) {
    int n = p->paused_parts ? p->paused_parts->cnt : 0;
    atomic_store(&p->paused_partitions, n);
    metrics_paused_partitions(n);
}

/* Pauses (or resumes) parts in the client and records them as paused (or
 * not). Returns the client's error. */
static rd_kafka_resp_err_t pause_parts(Pipeline *p, rd_kafka_topic_partition_list_t *parts,
                                       int pause) {
    if (!parts || parts->cnt == 0) return 0;
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(p->consumer, parts)
                                    : rd_kafka_resume_partitions(p->consumer, parts);
    if (err) log_msg(LOG_WARN, "event=%s_failed error=%s", pause ? "pause" : "resume",
                     rd_kafka_err2name(err));
    pthread_mutex_lock(&p->watch_mu);
    if (pause && !p->paused_parts) p->paused_parts = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; p->paused_parts && i < parts->cnt; i++) {
        int at = find_part(p->paused_parts, parts->elems[i].topic, parts->elems[i].partition);
        if (pause && at < 0)
            rd_kafka_topic_partition_list_add(p->paused_parts, parts->elems[i].topic,
                                              parts->elems[i].partition);
        else if (!pause && at >= 0)
            rd_kafka_topic_partition_list_del_by_idx(p->paused_parts, at);
    }
    pthread_mutex_unlock(&p->watch_mu);
    note_paused_count(p);
    return err;
}

static void set_paused(Pipeline *p, int pause) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(p->consumer, &parts) || !parts)
        parts = rd_kafka_topic_partition_list_new(1);
    int n = parts->cnt;
    if (!pause && p->paused_parts) {
        /* everything paused by name, assigned now or not, plus the assignment */
        for (int i = 0; i < p->paused_parts->cnt; i++)
            if (find_part(parts, p->paused_parts->elems[i].topic,
                          p->paused_parts->elems[i].partition) < 0)
                rd_kafka_topic_partition_list_add(parts, p->paused_parts->elems[i].topic,
                                                  p->paused_parts->elems[i].partition);
    }
    pause_parts(p, parts, pause);
    log_msg(LOG_INFO, "event=%s partitions=%d queue_depth=%d outstanding=%ld",
            pause ? "backpressure_pause" : "backpressure_resume", pause ? n : parts->cnt,
            queue_depth(&p->queue), offsets_outstanding(p->offsets));
    if (pause) atomic_fetch_add(&p->pauses, 1);
    rd_kafka_topic_partition_list_destroy(parts);
}

static void flow_control(Pipeline *p) {
    FlowAction a = queue_flow(&p->queue, offsets_outstanding(p->offsets));
    if (a != FLOW_NONE) set_paused(p, a == FLOW_PAUSE);
}

/* ---- rebalances ---- */

static int item_revoked(QueueNode *n, void *ud) {
    Item *it = (Item *)n;
    return !offsets_is_current(ud, it->topic, it->partition, it->gen);
}

static void log_parts(const char *what, const rd_kafka_topic_partition_list_t *parts) {
    char buf[512];
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < parts->cnt && o + 64 < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s/%d", i ? "," : "",
                              parts->elems[i].topic, (int)parts->elems[i].partition);
    log_msg(LOG_INFO, "event=%s count=%d partitions=%s", what, parts->cnt, o ? buf : "-");
}

static void on_assign(Pipeline *p, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                      int cooperative) {
    for (int i = 0; i < parts->cnt; i++)
        offsets_assign(p->offsets, parts->elems[i].topic, parts->elems[i].partition);
    rd_kafka_resp_err_t err = 0;
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
        if (e) { err = rd_kafka_error_code(e); rd_kafka_error_destroy(e); }
    } else {
        err = rd_kafka_assign(rk, parts);
    }
    if (err) log_msg(LOG_ERROR, "event=assign_failed error=%s", rd_kafka_err2name(err));
    /* a partition paused before (here, then revoked) comes back paused:
     * state the wanted flag explicitly */
    pause_parts(p, parts, queue_paused(&p->queue));
    atomic_fetch_add(&p->assigned, parts->cnt);
    atomic_store(&p->joined, 1);
    metrics_set_group_joined(1);
    log_parts("partitions_assigned", parts);
}

static void on_revoke(Pipeline *p, rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts,
                      int cooperative) {
    /* commit what is finished while we still own it, then forget the rest */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts->cnt + 1);
    for (int i = 0; i < parts->cnt; i++)
        offsets_take_partition(p->offsets, parts->elems[i].topic, parts->elems[i].partition,
                               add_commit, l);
    commit_list(p, l);
    rd_kafka_topic_partition_list_destroy(l);
    for (int i = 0; i < parts->cnt; i++)
        offsets_revoke(p->offsets, parts->elems[i].topic, parts->elems[i].partition);
    QueueNode *gone = queue_remove_if(&p->queue, item_revoked, p->offsets);
    int dropped = 0;
    while (gone) {
        QueueNode *n = gone;
        gone = n->next;
        item_free((Item *)n);
        dropped++;
    }
    if (cooperative) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e) rd_kafka_error_destroy(e);
        atomic_fetch_sub(&p->assigned, parts->cnt);
    } else {
        rd_kafka_assign(rk, NULL);
        atomic_store(&p->assigned, 0);
    }
    /* no longer ours: clear the paused flag we set, so that it cannot
     * outlive the assignment (resuming by name works on unassigned ones) */
    pause_parts(p, parts, 0);
    if (atomic_load(&p->assigned) == 0) {
        atomic_store(&p->joined, 0);
        metrics_set_group_joined(0);
    }
    log_parts("partitions_revoked", parts);
    if (dropped) log_msg(LOG_INFO, "event=revoked_items_dropped count=%d", dropped);
}

void consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque) {
    Pipeline *p = opaque;
    int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(p, rk, parts, coop);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        on_revoke(p, rk, parts, coop);
    } else {
        log_msg(LOG_ERROR, "event=rebalance_error error=%s", rd_kafka_err2name(err));
        on_revoke(p, rk, parts, coop);
    }
}

/* ---- records ---- */

static void to_dlq(Pipeline *p, const rd_kafka_message_t *m, const EventSource *src,
                   uint32_t gen, const char *reason, const char *msg) {
    rd_kafka_headers_t *h = headers_select(p, m);
    rd_kafka_timestamp_type_t tt;
    out_dlq(p, src, gen, rd_kafka_message_timestamp(m, &tt), m->key, m->key_len, h,
            reason, msg, m->payload, m->len);
    if (h) rd_kafka_headers_destroy(h);
}

/* Builds the classifier request from the event, falling back to the policy. */
static ClassifyJob *prepare(Pipeline *p, ConversationEvent *ev, Policy *pol,
                            char *err, size_t errlen) {
    ClassifyRequest req = {
        .conv = &ev->conv,
        .categories = ev->categories.n ? &ev->categories
                      : pol->categories.n ? &pol->categories : NULL,
        .exclude = (const char *const *)(ev->has_exclude ? ev->exclude : pol->exclude),
        .n_exclude = ev->has_exclude ? ev->n_exclude : pol->n_exclude,
        .role = ev->role,
    };
    return classifier_prepare(p->clf, &req, err, errlen);
}

/* Decodes and prepares m. NULL, with *reason and msg set, when the record
 * belongs on the DLQ instead. */
static Item *build_item(Pipeline *p, const rd_kafka_message_t *m, const char *topic,
                        const char **reason, char *msg, size_t msglen) {
    Item *it = calloc(1, sizeof *it);
    if (!it || !(it->topic = strdup(topic))) {
        free(it);
        *reason = "internal_error";
        snprintf(msg, msglen, "out of memory");
        return NULL;
    }
    rd_kafka_headers_t *in_hdrs = NULL;
    if (rd_kafka_message_headers(m, &in_hdrs)) in_hdrs = NULL;
    if (event_decode_record(m->payload, m->len, in_hdrs, &p->limits, &it->ev, reason,
                            msg, msglen) < 0) {
        if (!*reason) *reason = "invalid";
        item_free(it);
        return NULL;
    }
    it->policy = policy_get(p);
    it->job = prepare(p, &it->ev, it->policy, msg, msglen);
    if (!it->job) {
        /* the classifier enforces limits.max_prompt_tokens ("prompt is N tokens...") */
        *reason = strncmp(msg, "prompt is ", 10) ? "invalid_conversation" : "prompt_too_long";
        item_free(it);
        return NULL;
    }
    it->partition = m->partition;
    it->offset = m->offset;
    rd_kafka_timestamp_type_t tt;
    it->ts_ms = rd_kafka_message_timestamp(m, &tt);
    if (m->key) {   /* an empty key stays empty, not null */
        if (!(it->key = malloc(m->key_len ? m->key_len : 1))) {
            *reason = "internal_error";
            snprintf(msg, msglen, "out of memory");
            item_free(it);
            return NULL;
        }
        memcpy(it->key, m->key, m->key_len);
        it->keylen = m->key_len;
    }
    it->hdrs = headers_select(p, m);
    it->node.tokens = classify_job_new_tokens(it->job);
    return it;
}

static void handle_record(Pipeline *p, const rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    uint32_t gen;
    int tr = offsets_track(p->offsets, topic, m->partition, m->offset, &gen);
    if (tr <= 0) {  /* a repeat of an offset in hand, or not ours (any more) */
        log_msg(LOG_DEBUG, "event=record_skipped topic=%s partition=%d offset=%lld why=%s",
                topic, (int)m->partition, (long long)m->offset, tr ? "not_assigned" : "repeat");
        return;
    }
    atomic_fetch_add(&p->consumed, 1);
    metrics_event_consumed(topic);
    const char *reason = NULL;
    char msg[512];
    Item *it = build_item(p, m, topic, &reason, msg, sizeof msg);
    if (!it) {
        EventSource src = {topic, m->partition, m->offset};
        to_dlq(p, m, &src, gen, reason, msg);
        return;
    }
    it->gen = gen;
    queue_push(&p->queue, &it->node);
    metrics_queue_depth(queue_depth(&p->queue));
}

static void handle_message(Pipeline *p, rd_kafka_message_t *m) {
    if (!m->err) {
        handle_record(p, m);
    } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        log_msg(LOG_WARN, "event=consume_error error=%s detail=%s", rd_kafka_err2name(m->err),
                rd_kafka_message_errstr(m));
        metrics_kafka_error("consume");
    }
    rd_kafka_message_destroy(m);
}

/* ---- test faults (testhook.h) ---- */

/* Pauses (pause 0: resumes) one partition in the client only. */
static void hold_one(Pipeline *p, const char *topic, int32_t partition, int pause) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    if (pause) rd_kafka_pause_partitions(p->consumer, l);
    else if (find_part(p->paused_parts, topic, partition) < 0)
        rd_kafka_resume_partitions(p->consumer, l);     /* unless we paused it ourselves */
    rd_kafka_topic_partition_list_destroy(l);
}

/* The line after line in text, or NULL. */
static const char *next_line(const char *line) {
    const char *nl = strchr(line, '\n');
    return nl ? nl + 1 : NULL;
}

/* Applies the fault file: "hold" lines are paused again on every read (a
 * backpressure resume of the whole assignment would lift them), dropped
 * ones resumed; "block consumer" keeps this thread away from its loop.
 * The text is only read, never cut into lines in place: cut, it hid every
 * line after the first from the "block consumer" check. */
static void test_faults(Pipeline *p, double now) {
    if (!p->hook_path || now - p->hook_checked < TESTHOOK_EVERY_S) return;
    p->hook_checked = now;
    /* held gets "topic/partition\n" per valid hold line, shorter than the
     * line itself, so a buffer the size of the text always holds them all */
    char text[sizeof p->hook_held], held[sizeof p->hook_held] = "", topic[TESTHOOK_MAX_TOPIC];
    int32_t part;
    size_t o = 0;
    testhook_read(p->hook_path, text, sizeof text);
    for (const char *line = text; line && *line; line = next_line(line)) {
        if (!testhook_hold(line, topic, sizeof topic, &part)) continue;
        hold_one(p, topic, part, 1);
        int k = snprintf(held + o, sizeof held - o, "%s/%d\n", topic, (int)part);
        if (k > 0 && (size_t)k < sizeof held - o) o += (size_t)k;
    }
    /* entries are "topic/partition\n" as written above: "hold " + entry parses */
    for (const char *line = p->hook_held; line && *line; line = next_line(line)) {
        char probe[sizeof p->hook_held + 8];
        size_t n = strcspn(line, "\n");
        snprintf(probe, sizeof probe, "hold %.*s", (int)n, line);
        if (testhook_has(held, probe + 5) || !testhook_hold(probe, topic, sizeof topic, &part))
            continue;
        hold_one(p, topic, part, 0);
        log_msg(LOG_WARN, "event=test_fault fault=hold partition=%s state=released", probe + 5);
    }
    for (const char *line = held; line && *line; line = next_line(line)) {
        char name[sizeof held];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(line, "\n"), line);
        if (!testhook_has(p->hook_held, name))
            log_msg(LOG_WARN, "event=test_fault fault=hold partition=%s state=held", name);
    }
    memcpy(p->hook_held, held, sizeof held);
    if (!testhook_has(text, "block consumer")) return;
    log_msg(LOG_WARN, "event=test_fault fault=block_consumer state=blocked");
    while (!atomic_load(&p->stop_consume)) {
        usleep((useconds_t)(TESTHOOK_EVERY_S * 1e6));
        testhook_read(p->hook_path, text, sizeof text);
        if (!testhook_has(text, "block consumer")) break;
    }
    log_msg(LOG_WARN, "event=test_fault fault=block_consumer state=released");
}

void *consumer_main(void *arg) {
    Pipeline *p = arg;
    while (!atomic_load(&p->stop_consume)) {
        /* the stall watch (health.c) reports a loop that stops coming round */
        atomic_store(&p->consumer_beat_ms, health_now_ms());
        /* while paused there is nothing to read: just keep serving callbacks */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, POLL_MS);
        if (m) handle_message(p, m);
        rd_kafka_poll(p->producer, 0);      /* delivery reports -> tracker */
        out_retry_due(p);
        flow_control(p);
        double now = queue_now();
        if (now - p->last_commit >= COMMIT_INTERVAL_S) {
            consumer_commit_progress(p);
            p->last_commit = now;
        }
        test_faults(p, now);
    }
    return NULL;
}
