/* pipeline.c - builds and tears down guardd's pipeline (pipeline.h): the two
 * Kafka clients, the tracker, the queue and the two threads; policy snapshots
 * for reloads; the ordered graceful stop.
 *
 * Client configuration: guardd's defaults first, then the operator's
 * kafka.properties (which may override them), then the settings that the
 * at-least-once design depends on (group.id, manual commits and offset
 * stores), which nothing may override.
 */
#include "pipeline_int.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kafka_util.h"
#include "log.h"
#include "metrics.h"
#include "testhook.h"

/* ---- policy snapshots ---- */

static Policy *policy_new(const Settings *s) {
    Policy *pol = calloc(1, sizeof *pol);
    if (!pol) return NULL;
    atomic_init(&pol->refs, 1);
    for (int i = 0; i < s->categories.n; i++)
        categories_add(&pol->categories, s->categories.items[i].code, s->categories.items[i].name);
    if (s->n_exclude > 0) {
        pol->exclude = calloc((size_t)s->n_exclude, sizeof *pol->exclude);
        for (int i = 0; pol->exclude && i < s->n_exclude; i++)
            pol->exclude[pol->n_exclude++] = strdup(s->exclude[i]);
    }
    pol->threshold = s->threshold;
    pol->category_scores = s->category_scores;
    pol->max_events = s->batch_max_events > 0 ? s->batch_max_events : 1;
    pol->max_tokens = s->batch_max_tokens;
    pol->max_wait_ms = s->batch_max_wait_ms;
    pol->cache_max_bytes = s->cache_max_bytes;
    return pol;
}

Policy *policy_get(Pipeline *p) {
    pthread_mutex_lock(&p->policy_mu);
    Policy *pol = p->policy;
    atomic_fetch_add(&pol->refs, 1);
    pthread_mutex_unlock(&p->policy_mu);
    return pol;
}

void policy_put(Policy *pol) {
    if (!pol || atomic_fetch_sub(&pol->refs, 1) != 1) return;
    categories_free(&pol->categories);
    for (int i = 0; i < pol->n_exclude; i++) free(pol->exclude[i]);
    free(pol->exclude);
    free(pol);
}

void pipeline_reload(Pipeline *p, const Settings *s) {
    Policy *pol = policy_new(s);
    if (!pol) {
        log_msg(LOG_ERROR, "event=reload_failed error=\"out of memory\"");
        return;
    }
    pthread_mutex_lock(&p->policy_mu);
    Policy *old = p->policy;
    p->policy = pol;
    pthread_mutex_unlock(&p->policy_mu);
    policy_put(old);
    atomic_store(&p->stall_seconds, s->stall_seconds);
}

/* ---- items and headers ---- */

void item_free(Item *it) {
    if (!it) return;
    if (it->job) classify_job_free(it->job);
    event_free(&it->ev);
    policy_put(it->policy);
    if (it->hdrs) rd_kafka_headers_destroy(it->hdrs);
    free(it->key);
    free(it->topic);
    free(it);
}

rd_kafka_headers_t *headers_select(Pipeline *p, const rd_kafka_message_t *m) {
    rd_kafka_headers_t *in = NULL;
    if (rd_kafka_message_headers(m, &in) || !in) return NULL;
    if (p->keep_all_headers) return rd_kafka_headers_copy(in);
    rd_kafka_headers_t *out = NULL;
    for (int i = 0; i < p->n_keep_headers; i++) {
        const void *v;
        size_t len;
        if (rd_kafka_header_get_last(in, p->keep_headers[i], &v, &len)) continue;
        if (!out) out = rd_kafka_headers_new(4);
        rd_kafka_header_add(out, p->keep_headers[i], -1, v, (ssize_t)len);
    }
    return out;
}

/* ---- clients ---- */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk;
    LogLevel l = level <= 3 ? LOG_ERROR : level <= 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    /* one property list feeds both clients, so "X is a consumer property,
     * ignored by this producer" (and vice versa) is expected, not a problem */
    if (!strcmp(fac, "CONFWARN") && strstr(buf, "will be ignored by this")) l = LOG_DEBUG;
    char q[512];
    log_msg(l, "event=kafka facility=%s message=%s", fac, log_quote(buf, q, sizeof q));
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    Pipeline *p = opaque;
    char q[512];
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_fatal_error(rk, why, sizeof why);
        atomic_store(&p->fatal, 1);
        log_msg(LOG_ERROR, "event=kafka_fatal error=%s", log_quote(why, q, sizeof q));
    } else {
        /* transient (broker down, all brokers down...): librdkafka recovers */
        log_msg(LOG_WARN, "event=kafka_error error=%s reason=%s",
                rd_kafka_err2name((rd_kafka_resp_err_t)err), log_quote(reason, q, sizeof q));
    }
    metrics_kafka_error("client");
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk; (void)len;
    metrics_kafka_stats(json);
    health_stats(opaque, json);
    return 0;   /* json is librdkafka's to free */
}

static int set_all(rd_kafka_conf_t *conf, const char *const *kv, char *err, size_t errlen) {
    for (int i = 0; kv[i]; i += 2)
        if (kafka_conf_set(conf, kv[i], kv[i + 1], err, errlen) < 0) return -1;
    return 0;
}

static int apply_props(rd_kafka_conf_t *conf, const Settings *s, char *err, size_t errlen) {
    for (int i = 0; i < s->n_props; i++)
        if (kafka_conf_set(conf, s->props[i].key, s->props[i].value, err, errlen) < 0) return -1;
    return 0;
}

static rd_kafka_t *make_client(rd_kafka_type_t type, rd_kafka_conf_t *conf, Pipeline *p,
                               char *err, size_t errlen) {
    rd_kafka_conf_set_opaque(conf, p);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, errlen);
    if (!rk) rd_kafka_conf_destroy(conf);
    return rk;
}

static rd_kafka_t *make_producer(Pipeline *p, const Settings *s, const char *brokers,
                                 char *err, size_t errlen) {
    /* one request in flight per broker keeps per-key order through retries
     * without the idempotent producer (which the mock mishandles) */
    static const char *const defaults[] = {
        "acks", "all", "linger.ms", "5", "max.in.flight.requests.per.connection", "1",
        "enable.idempotence", "false", NULL};
    rd_kafka_conf_t *conf = kafka_conf_new(brokers, NULL, 0, err, errlen);
    if (!conf) return NULL;
    if (set_all(conf, defaults, err, errlen) < 0 || apply_props(conf, s, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, out_delivery_cb);
    char v[32];
    size_t vlen = sizeof v;
    p->max_record_bytes = 1000000;
    if (rd_kafka_conf_get(conf, "message.max.bytes", v, &vlen) == RD_KAFKA_CONF_OK)
        p->max_record_bytes = strtoul(v, NULL, 10);
    return make_client(RD_KAFKA_PRODUCER, conf, p, err, errlen);
}

static rd_kafka_t *make_consumer(Pipeline *p, const Settings *s, const char *brokers,
                                 char *err, size_t errlen) {
    static const char *const defaults[] = {
        "auto.offset.reset", "earliest", "statistics.interval.ms", "10000",
        "queued.max.messages.kbytes", "16384", NULL};
    const char *const fixed[] = {
        "group.id", s->group_id, "enable.auto.commit", "false",
        "enable.auto.offset.store", "false", NULL};
    rd_kafka_conf_t *conf = kafka_conf_new(brokers, NULL, 0, err, errlen);
    if (!conf) return NULL;
    if (set_all(conf, defaults, err, errlen) < 0 || apply_props(conf, s, err, errlen) < 0 ||
        set_all(conf, fixed, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, consumer_commit_cb);
    rd_kafka_conf_set_stats_cb(conf, stats_cb);
    rd_kafka_t *rk = make_client(RD_KAFKA_CONSUMER, conf, p, err, errlen);
    if (rk) rd_kafka_poll_set_consumer(rk);
    return rk;
}

static int subscribe(Pipeline *p, const Settings *s, char *err, size_t errlen) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(s->n_input_topics);
    for (int i = 0; i < s->n_input_topics; i++)
        rd_kafka_topic_partition_list_add(l, s->input_topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(p->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
    return e ? -1 : 0;
}

/* ---- lifecycle ---- */

static void copy_settings(Pipeline *p, const Settings *s) {
    p->allow_topic = strdup(s->allow_topic);
    p->deny_topic = strdup(s->deny_topic);
    p->dlq_topic = strdup(s->dlq_topic);
    p->keep_headers = calloc((size_t)s->n_keep_headers + 1, sizeof *p->keep_headers);
    for (int i = 0; p->keep_headers && i < s->n_keep_headers; i++) {
        if (!strcmp(s->keep_headers[i], "*")) p->keep_all_headers = 1;
        p->keep_headers[p->n_keep_headers++] = strdup(s->keep_headers[i]);
    }
    p->limits = (EventLimits){s->max_event_bytes, s->max_messages, s->max_message_bytes};
    const Model *m = classifier_model(p->clf);
    snprintf(p->model_name, sizeof p->model_name, "%s", m ? m->name : "unknown");
    snprintf(p->model_revision, sizeof p->model_revision, "%s", m ? m->revision : "");
}

static void pipeline_free(Pipeline *p) {
    health_stop(p);     /* it asks the consumer handle for end offsets */
    if (p->consumer) rd_kafka_destroy(p->consumer);
    if (p->paused_parts) rd_kafka_topic_partition_list_destroy(p->paused_parts);
    health_free(p);
    out_abandon_retries(p);
    if (p->producer) rd_kafka_destroy(p->producer);
    for (QueueNode *n; (n = NULL, queue_take_batch(&p->queue, &n, 1, 0, 0, 0) == 1);)
        item_free((Item *)n);
    queue_destroy(&p->queue);
    offsets_free(p->offsets);
    policy_put(p->policy);
    free(p->allow_topic);
    free(p->deny_topic);
    free(p->dlq_topic);
    free(p->hook_path);
    for (int i = 0; i < p->n_keep_headers; i++) free(p->keep_headers[i]);
    free(p->keep_headers);
    pthread_mutex_destroy(&p->policy_mu);
    pthread_mutex_destroy(&p->retry_mu);
    pthread_mutex_destroy(&p->health_mu);
    pthread_mutex_destroy(&p->watch_mu);
    pthread_cond_destroy(&p->watch_cv);
    free(p);
}

Pipeline *pipeline_start(const Settings *s, const char *brokers, Classifier *clf,
                         char *err, size_t errlen) {
    Pipeline *p = calloc(1, sizeof *p);
    if (!p) { snprintf(err, errlen, "out of memory"); return NULL; }
    p->clf = clf;
    p->applied_threshold = -2.0f;   /* forces the first batch to apply it */
    p->applied_scores = -1;
    p->applied_cache_bytes = -2;    /* likewise */
    pthread_mutex_init(&p->policy_mu, NULL);
    pthread_mutex_init(&p->retry_mu, NULL);
    pthread_mutex_init(&p->health_mu, NULL);
    pthread_mutex_init(&p->watch_mu, NULL);
    pthread_condattr_t ca;   /* the watch's timed waits: immune to wall-clock steps */
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->watch_cv, &ca);
    pthread_condattr_destroy(&ca);
    int cap = s->queue_capacity > 0 ? s->queue_capacity : 256;
    /* records past the queue still awaiting their acks are bounded too */
    long max_pending = 4L * cap + 2L * (s->batch_max_events > 0 ? s->batch_max_events : 1);
    queue_init(&p->queue, cap, cap / 2, max_pending);
    p->offsets = offsets_new();
    p->policy = policy_new(s);
    copy_settings(p, s);
    if (!p->offsets || !p->policy || !p->allow_topic || !p->deny_topic || !p->dlq_topic) {
        snprintf(err, errlen, "out of memory");
        pipeline_free(p);
        return NULL;
    }
    if (!(p->producer = make_producer(p, s, brokers, err, errlen)) ||
        !(p->consumer = make_consumer(p, s, brokers, err, errlen)) ||
        subscribe(p, s, err, errlen) < 0) {
        pipeline_free(p);
        return NULL;
    }
    p->last_commit = queue_now();
    atomic_store(&p->stall_seconds, s->stall_seconds);
    const char *faults = testhook_path();
    if (faults) {
        char q[600];
        p->hook_path = strdup(faults);
        log_msg(LOG_WARN, "event=test_faults_enabled file=%s note=\"for tests only: %s lets "
                "that file block the consumer and hold partitions paused\"",
                log_quote(faults, q, sizeof q), TESTHOOK_ENV);
    }
    /* the consumer loop's first round is now: the inference thread, which
     * starts first, must not take the zero of calloc for a loop that last
     * came round at boot and withhold its first keep-alive */
    atomic_store(&p->consumer_beat_ms, health_now_ms());
    pthread_create(&p->batcher_th, NULL, batcher_main, p);
    pthread_create(&p->consumer_th, NULL, consumer_main, p);
    if (health_start(p) < 0)
        log_msg(LOG_ERROR, "event=health_thread_failed note=\"stall detection is off\"");
    log_msg(LOG_INFO, "event=pipeline_started brokers=%s group=%s queue_capacity=%d",
            brokers, s->group_id, cap);
    return p;
}

void pipeline_stats(Pipeline *p, PipelineStats *st) {
    st->joined = atomic_load(&p->joined);
    st->assigned = atomic_load(&p->assigned);
    st->paused = queue_paused(&p->queue);
    st->paused_partitions = atomic_load(&p->paused_partitions);
    st->queue_depth = queue_depth(&p->queue);
    st->outstanding = offsets_outstanding(p->offsets);
    st->consumed = atomic_load(&p->consumed);
    st->verdicts = atomic_load(&p->verdicts);
    st->dlq = atomic_load(&p->dlq);
    st->delivered = atomic_load(&p->delivered);
    st->delivery_failures = atomic_load(&p->delivery_failures);
    st->commits = atomic_load(&p->commits);
    st->pauses = atomic_load(&p->pauses);
    st->fatal = atomic_load(&p->fatal);
    st->outputs_failing = out_failing_topics(p);
    st->batch_running = atomic_load(&p->batch_start_ms) != 0;
    st->abandoned = atomic_load(&p->abandoned);
    st->stalled = atomic_load(&p->stalled);
    st->engine_stuck = atomic_load(&p->engine_stuck);
    st->consumer_stalled = atomic_load(&p->consumer_stuck);
}

static int ms_left(double deadline) {
    double left = (deadline - queue_now()) * 1000.0;
    return left > 0 ? (int)left : 0;
}

/* Serves delivery reports and retries until nothing is in flight. */
static void deliver_all(Pipeline *p, double deadline) {
    while (ms_left(deadline) > 0) {
        out_retry_due(p);
        rd_kafka_flush(p->producer, ms_left(deadline) < 100 ? ms_left(deadline) : 100);
        pthread_mutex_lock(&p->retry_mu);
        int retries = p->retry_head != NULL;
        pthread_mutex_unlock(&p->retry_mu);
        if (!retries && rd_kafka_outq_len(p->producer) == 0) break;
    }
}

/* Commits the final progress and waits for the coordinator's answer; a
 * failed commit is tried again (a few times, within the deadline). */
static void final_commit(Pipeline *p, double deadline) {
    for (int attempt = 0; attempt < 3 && ms_left(deadline) > 0; attempt++) {
        consumer_commit_progress(p);
        if (atomic_load(&p->commits_inflight) == 0) break;  /* nothing (more) to commit */
        while (atomic_load(&p->commits_inflight) > 0 && ms_left(deadline) > 0) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, 50);
            if (m) rd_kafka_message_destroy(m);   /* not tracked: re-read by the next owner */
        }
    }
}

/* Leaves the group (revocation callback included) within the deadline. */
static int close_consumer(Pipeline *p, double deadline) {
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(p->consumer);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(p->consumer, q);
    if (e) rd_kafka_error_destroy(e);
    while (!rd_kafka_consumer_closed(p->consumer) && ms_left(deadline) > 0) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 50);
        if (ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
            /* leaving: a plain unassign (progress was committed already) */
            rd_kafka_topic_partition_list_t *parts = rd_kafka_event_topic_partition_list(ev);
            consumer_rebalance_cb(p->consumer, rd_kafka_event_error(ev), parts, p);
        }
        if (ev) rd_kafka_event_destroy(ev);
    }
    int closed = rd_kafka_consumer_closed(p->consumer);
    rd_kafka_queue_destroy(q);
    return closed;
}

int pipeline_stop(Pipeline *p, int timeout_ms) {
    double start = queue_now(), deadline = start + timeout_ms / 1000.0;
    /* 0. stop the stall watch: the consumer loop is about to end on purpose */
    health_stop(p);
    /* 1. stop reading; 2. classify what is queued while time allows (keep
     * ~40% of the budget for delivery, commit and leaving the group) */
    atomic_store(&p->stop_consume, 1);
    pthread_join(p->consumer_th, NULL);
    atomic_store(&p->drain, 1);
    queue_close(&p->queue);
    double infer_until = start + timeout_ms * 0.6 / 1000.0;
    while (queue_depth(&p->queue) > 0 && queue_now() < infer_until) {
        rd_kafka_poll(p->producer, 50);
    }
    atomic_store(&p->stop_infer, 1);
    /* a batch still running may need minutes (a long prompt): it may finish
     * within the same window, else the engine abandons it at its next layer
     * boundary, without verdicts; its offsets stay uncommitted, so it is
     * re-read on restart (waiting for it got the service killed by systemd's
     * stop timeout, the same outcome minus the clean exit) */
    while (atomic_load(&p->batch_start_ms) != 0 && queue_now() < infer_until)
        rd_kafka_poll(p->producer, 50);
    atomic_store(&p->abort_infer, 1);
    pthread_join(p->batcher_th, NULL);
    /* 3. deliver, 4. commit, 5. leave the group */
    deliver_all(p, start + timeout_ms * 0.8 / 1000.0);
    final_commit(p, start + timeout_ms * 0.9 / 1000.0);
    long outstanding = offsets_outstanding(p->offsets);
    int closed = close_consumer(p, deadline);
    int abandoned = out_abandon_retries(p);
    log_msg(LOG_INFO, "event=pipeline_stopped outstanding=%ld abandoned_retries=%d "
            "abandoned_events=%ld left_group=%s seconds=%.3f", outstanding, abandoned,
            atomic_load(&p->abandoned), closed ? "yes" : "no", queue_now() - start);
    if (!closed) {
        rd_kafka_destroy_flags(p->consumer, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        p->consumer = NULL;
    }
    pipeline_free(p);
    return outstanding == 0 && closed ? 0 : 1;
}
