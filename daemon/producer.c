/* producer.c - producing guardd's output records and settling their input
 * offsets.
 *
 * Each verdict/DLQ record travels as an Outbound that remembers its input
 * (topic, partition, offset, tracker generation). librdkafka retries
 * retriable errors by itself; what reaches the delivery callback as a failure
 * (message timeout, a non-retriable broker error) is produced again after a
 * backoff, forever: the input offset stays outstanding meanwhile, so the
 * commit point can never pass it and a crash re-consumes it. Only a
 * successful ack marks the offset done. Records of a partition revoked in
 * the meantime are dropped instead (the new owner re-reads the input).
 *
 * Size: a record that can never be delivered would stall its partition
 * forever, so DLQ payloads are cut to fit message.max.bytes, a verdict over
 * it becomes a DLQ record "output_too_large", and a record the broker
 * refuses as too large (its limit may be lower than ours) is replaced by a
 * payload-less DLQ record "output_too_large".
 *
 * Every record carries the header "record_id" (event_source_id of its input)
 * next to the kept input headers, so duplicates after a crash can be dropped
 * by consumers that do not decode the payload.
 */
#include "pipeline_int.h"
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "log.h"
#include "metrics.h"

#define RETRY_MIN_S 0.5
#define RETRY_MAX_S 30.0
/* room for a DLQ record's fields besides the payload, and for the record
 * framing the producer counts against message.max.bytes */
#define RECORD_OVERHEAD 8192
/* a payload-less DLQ record is at most this big: never shrunk further */
#define MINIMAL_RECORD_BYTES 2048

void out_free(Outbound *ob) {
    if (!ob) return;
    free(ob->payload);
    free(ob->key);
    free(ob->src_topic);
    if (ob->hdrs) rd_kafka_headers_destroy(ob->hdrs);
    free(ob);
}

static void schedule_retry(Pipeline *p, Outbound *ob) {
    double backoff = RETRY_MIN_S;
    for (int i = 1; i < ob->attempts && backoff < RETRY_MAX_S; i++) backoff *= 2;
    if (backoff > RETRY_MAX_S) backoff = RETRY_MAX_S;
    ob->retry_at = queue_now() + backoff;
    pthread_mutex_lock(&p->retry_mu);
    ob->next = p->retry_head;
    p->retry_head = ob;
    pthread_mutex_unlock(&p->retry_mu);
}

void out_send(Pipeline *p, Outbound *ob) {
    ob->attempts++;
    rd_kafka_headers_t *h = ob->hdrs ? rd_kafka_headers_copy(ob->hdrs) : NULL;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->producer, RD_KAFKA_V_TOPIC(ob->dest), RD_KAFKA_V_VALUE(ob->payload, ob->len),
        RD_KAFKA_V_KEY(ob->key, ob->keylen), RD_KAFKA_V_MSGFLAGS(0),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(ob), RD_KAFKA_V_END);
    if (!err) return;
    if (h) rd_kafka_headers_destroy(h);     /* not taken on failure */
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        log_msg(LOG_WARN, "event=produce_failed topic=%s error=%s src_partition=%d src_offset=%lld",
                ob->dest, rd_kafka_err2name(err), (int)ob->partition, (long long)ob->offset);
    metrics_kafka_error("produce");
    schedule_retry(p, ob);
}

/* A record whose input partition was revoked since is abandoned instead of
 * retried: its offset is not ours to commit, the new owner re-reads it. */
static int still_ours(Pipeline *p, const Outbound *ob) {
    return offsets_is_current(p->offsets, ob->src_topic, ob->partition, ob->gen);
}

void out_retry_due(Pipeline *p) {
    double now = queue_now();
    Outbound *due = NULL;
    pthread_mutex_lock(&p->retry_mu);
    for (Outbound **pp = &p->retry_head; *pp;) {
        Outbound *ob = *pp;
        if (ob->retry_at <= now) {
            *pp = ob->next;
            ob->next = due;
            due = ob;
        } else {
            pp = &ob->next;
        }
    }
    pthread_mutex_unlock(&p->retry_mu);
    while (due) {
        Outbound *ob = due;
        due = ob->next;
        ob->next = NULL;
        if (still_ours(p, ob)) out_send(p, ob);
        else out_free(ob);
    }
}

int out_abandon_retries(Pipeline *p) {
    int n = 0;
    pthread_mutex_lock(&p->retry_mu);
    while (p->retry_head) {
        Outbound *ob = p->retry_head;
        p->retry_head = ob->next;
        out_free(ob);
        n++;
    }
    pthread_mutex_unlock(&p->retry_mu);
    return n;
}

static int refused_as_too_large(rd_kafka_resp_err_t e) {
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/* The broker will never take these bytes (its size limit is below ours):
 * the next attempt carries a DLQ record without payload instead, so the
 * input still gets exactly one small, deliverable output. */
static void shrink_to_dlq(Pipeline *p, Outbound *ob, rd_kafka_resp_err_t e) {
    EventSource src = {ob->src_topic, ob->partition, ob->offset};
    char msg[200];
    snprintf(msg, sizeof msg, "a %zu-byte record for %s was refused by the broker (%s)",
             ob->len, ob->dest, rd_kafka_err2name(e));
    size_t len = 0;
    void *rec = dlq_encode(&src, "output_too_large", msg, NULL, 0, &len);
    if (!rec) return;
    free(ob->payload);
    ob->payload = rec;
    ob->len = len;
    ob->dest = p->dlq_topic;
    ob->attempts = 0;
    atomic_fetch_add(&p->dlq, 1);
    metrics_dlq("output_too_large");
}

static double wall_ms(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec * 1000.0 + (double)tv.tv_usec / 1000.0;
}

void out_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    Pipeline *p = opaque;
    Outbound *ob = m->_private;
    if (!ob) return;
    if (m->err) {
        atomic_fetch_add(&p->delivery_failures, 1);
        metrics_kafka_error("delivery");
        log_msg(LOG_WARN, "event=delivery_failed topic=%s error=%s attempt=%d src_topic=%s "
                "src_partition=%d src_offset=%lld",
                ob->dest, rd_kafka_err2name(m->err), ob->attempts, ob->src_topic,
                (int)ob->partition, (long long)ob->offset);
        /* small records are simply retried: a size refusal of those can only
         * be transient (or injected by a test) */
        if (refused_as_too_large(m->err) && ob->len > MINIMAL_RECORD_BYTES)
            shrink_to_dlq(p, ob, m->err);
        if (still_ours(p, ob)) schedule_retry(p, ob);
        else out_free(ob);
        return;
    }
    atomic_fetch_add(&p->delivered, 1);
    offsets_ack(p->offsets, ob->src_topic, ob->partition, ob->offset, ob->gen);
    if (ob->ts_ms > 0) {
        double e2e = (wall_ms() - (double)ob->ts_ms) / 1000.0;
        if (e2e >= 0) metrics_end_to_end(e2e);
    }
    out_free(ob);
}

/* Copies key and headers and adds the record_id header. */
static Outbound *outbound_new(Pipeline *p, const char *dest, const EventSource *src,
                              uint32_t gen, int64_t ts_ms, const void *key, size_t keylen,
                              rd_kafka_headers_t *hdrs) {
    (void)p;
    Outbound *ob = calloc(1, sizeof *ob);
    if (!ob) return NULL;
    ob->dest = dest;
    ob->src_topic = strdup(src->topic);
    ob->partition = src->partition;
    ob->offset = src->offset;
    ob->gen = gen;
    ob->ts_ms = ts_ms;
    if (key && keylen) {
        ob->key = malloc(keylen);
        if (ob->key) memcpy(ob->key, key, keylen);
        ob->keylen = keylen;
    }
    ob->hdrs = hdrs ? rd_kafka_headers_copy(hdrs) : rd_kafka_headers_new(1);
    char rid[128];
    event_source_id(src, rid, sizeof rid);
    rd_kafka_header_add(ob->hdrs, "record_id", -1, rid, -1);
    if (!ob->src_topic || (keylen && !ob->key)) {
        out_free(ob);
        return NULL;
    }
    return ob;
}

/* Builds and sends one output record; payload is taken over. On an
 * allocation failure the input stays outstanding (never committed). */
static void send_record(Pipeline *p, const char *dest, const EventSource *src, uint32_t gen,
                        int64_t ts_ms, const void *key, size_t keylen,
                        rd_kafka_headers_t *hdrs, void *payload, size_t len) {
    Outbound *ob = payload ? outbound_new(p, dest, src, gen, ts_ms, key, keylen, hdrs) : NULL;
    if (!ob) {
        free(payload);
        log_msg(LOG_ERROR, "event=out_of_memory src_topic=%s src_partition=%d src_offset=%lld",
                src->topic, (int)src->partition, (long long)src->offset);
        return;
    }
    ob->payload = payload;
    ob->len = len;
    out_send(p, ob);
}

void out_dlq(Pipeline *p, const EventSource *src, uint32_t gen, int64_t ts_ms,
             const void *key, size_t keylen, rd_kafka_headers_t *hdrs,
             const char *reason, const char *message, const void *payload, size_t len) {
    /* the record must fit the producer's message.max.bytes, or it could never
     * be delivered and its partition would stall: keep a prefix of the
     * payload and say so */
    char note[600];
    size_t room = p->max_record_bytes > RECORD_OVERHEAD ? p->max_record_bytes - RECORD_OVERHEAD : 0;
    if (len > room) {
        snprintf(note, sizeof note, "%s (payload truncated to its first %zu of %zu bytes)",
                 message, room, len);
        message = note;
        len = room;
    }
    size_t out_len = 0;
    void *rec = dlq_encode(src, reason, message, payload, len, &out_len);
    atomic_fetch_add(&p->dlq, 1);
    metrics_dlq(reason);
    char q[256];
    log_msg(LOG_INFO, "event=dlq reason=%s src_topic=%s src_partition=%d src_offset=%lld message=%s",
            reason, src->topic, (int)src->partition, (long long)src->offset,
            log_quote(message, q, sizeof q));
    send_record(p, p->dlq_topic, src, gen, ts_ms, key, keylen, hdrs, rec, out_len);
}

/* Codes of the active category list without the excluded ones, in order:
 * the labels of r->category_scores. NULL when there is nothing to label. */
static const char **score_codes(const Item *it, const ClassifyResult *r) {
    if (!r->category_scores || r->n_category_scores <= 0) return NULL;
    const CategoryList *cats = it->ev.categories.n ? &it->ev.categories
                               : it->policy->categories.n ? &it->policy->categories
                               : categories_default();
    char **excl = it->ev.has_exclude ? it->ev.exclude : it->policy->exclude;
    int n_excl = it->ev.has_exclude ? it->ev.n_exclude : it->policy->n_exclude;
    const char **codes = calloc((size_t)cats->n + 1, sizeof *codes);
    int n = 0;
    for (int i = 0; codes && i < cats->n; i++) {
        int skip = 0;
        for (int j = 0; j < n_excl && !skip; j++) skip = !strcmp(excl[j], cats->items[i].code);
        if (!skip) codes[n++] = cats->items[i].code;
    }
    if (codes && n != r->n_category_scores) {   /* should not happen: leave scores out */
        free(codes);
        return NULL;
    }
    return codes;
}

/* Verdict for it from r: to the deny topic when unsafe, else allow. */
void out_verdict(Pipeline *p, const Item *it, const ClassifyResult *r, const VerdictTiming *t) {
    EventSource src = {it->topic, it->partition, it->offset};
    size_t len = 0;
    const char **codes = score_codes(it, r);
    void *rec = verdict_encode_ex(&it->ev, &src, r, t, codes, &len);
    free(codes);
    if (rec && len > p->max_record_bytes) {  /* e.g. huge metadata: undeliverable */
        free(rec);
        char msg[160];
        snprintf(msg, sizeof msg, "the verdict record would be %zu bytes, over message.max.bytes %zu",
                 len, p->max_record_bytes);
        out_dlq(p, &src, it->gen, it->ts_ms, it->key, it->keylen, it->hdrs, "output_too_large",
                msg, NULL, 0);
        return;
    }
    atomic_fetch_add(&p->verdicts, 1);
    send_record(p, r->unsafe ? p->deny_topic : p->allow_topic, &src, it->gen, it->ts_ms,
                it->key, it->keylen, it->hdrs, rec, len);
}
