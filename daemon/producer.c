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
 * forever. The producer counts key + value + headers against
 * message.max.bytes, and so does guardd: DLQ payloads are cut to fit next to
 * the key and headers, and a record over the limit - found by our own count,
 * refused by rd_kafka_producev at send time, or refused by the broker in a
 * delivery report (its limit may be lower than ours) - is replaced by a
 * payload-less DLQ record "output_too_large". When even the key or the kept
 * headers do not fit next to such a record, they are left out (the bigger
 * first; the record_id header always stays) and its message says so.
 *
 * Keys are kept exactly: NULL is a null key, a non-NULL key of length 0 an
 * empty one (Kafka tells them apart: partitioning, compaction).
 *
 * Output health: a topic whose records fail (missing topic, no leader,
 * broker down...) is "failing" from a failed attempt until its next
 * delivery; guardd is not ready meanwhile (metrics_set_outputs_failing). The
 * warning about it is logged at most once per topic and WARN_INTERVAL_S,
 * with the number of warnings held back since, not once per record and
 * retry; its recovery is logged once.
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
/* at most one warning per output topic in this many seconds */
#define WARN_INTERVAL_S 10.0
/* room for a DLQ record's fields besides the payload, and for the record
 * framing the producer counts against message.max.bytes */
#define RECORD_OVERHEAD 8192
/* a payload-less DLQ record is at most this big: never shrunk further */
#define MINIMAL_RECORD_BYTES 2048
/* the producer's framing of one record besides key, value and headers
 * (librdkafka's RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD is below this) */
#define WIRE_OVERHEAD 128

void out_free(Outbound *ob) {
    if (!ob) return;
    free(ob->payload);
    free(ob->key);
    free(ob->src_topic);
    if (ob->hdrs) rd_kafka_headers_destroy(ob->hdrs);
    free(ob);
}

static struct OutputHealth *health_of(Pipeline *p, const char *dest) {
    return &p->health[dest == p->allow_topic ? 0 : dest == p->deny_topic ? 1 : 2];
}

static int failing_locked(Pipeline *p) {
    int n = 0;
    for (int i = 0; i < 3; i++) n += p->health[i].failing;
    return n;
}

int out_failing_topics(Pipeline *p) {
    pthread_mutex_lock(&p->health_mu);
    int n = failing_locked(p);
    pthread_mutex_unlock(&p->health_mu);
    return n;
}

/* A failed attempt of ob to reach dest: dest is failing (when down) and a
 * warning is logged unless one was within WARN_INTERVAL_S. */
static void out_failed(Pipeline *p, const char *dest, const Outbound *ob, const char *event,
                       rd_kafka_resp_err_t err, int down) {
    double now = queue_now();
    pthread_mutex_lock(&p->health_mu);
    struct OutputHealth *h = health_of(p, dest);
    if (down) h->failing = 1;
    long held = -1;
    if (h->last_warn <= 0 || now - h->last_warn >= WARN_INTERVAL_S) {
        held = h->suppressed;
        h->suppressed = 0;
        h->last_warn = now;
    } else {
        h->suppressed++;
    }
    int n = failing_locked(p);
    pthread_mutex_unlock(&p->health_mu);
    metrics_set_outputs_failing(n);
    if (held >= 0)
        log_msg(LOG_WARN, "event=%s topic=%s error=%s attempt=%d src_topic=%s src_partition=%d "
                "src_offset=%lld held_back=%ld", event, dest, rd_kafka_err2name(err), ob->attempts,
                ob->src_topic, (int)ob->partition, (long long)ob->offset, held);
}

/* A delivery to dest: it is not failing (any more). */
static void out_delivered_to(Pipeline *p, const char *dest) {
    pthread_mutex_lock(&p->health_mu);
    struct OutputHealth *h = health_of(p, dest);
    int was = h->failing;
    long held = h->suppressed;
    if (was) {
        h->failing = 0;
        h->suppressed = 0;
        h->last_warn = 0;
    }
    int n = failing_locked(p);
    pthread_mutex_unlock(&p->health_mu);
    if (!was) return;
    metrics_set_outputs_failing(n);
    /* at the warning's level: whoever sees the warnings sees their end */
    log_msg(LOG_WARN, "event=output_recovered topic=%s held_back=%ld", dest, held);
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

/* What the producer counts for headers: names, values and their length
 * fields (an upper bound). */
static size_t headers_bytes(const rd_kafka_headers_t *h) {
    size_t n = 0, len;
    const char *name;
    const void *v;
    for (size_t i = 0; h && !rd_kafka_header_get_all(h, i, &name, &v, &len); i++)
        n += strlen(name) + len + 12;
    return n;
}

/* ob's size as the producer counts it against message.max.bytes. */
static size_t record_bytes(const Outbound *ob) {
    return ob->len + ob->keylen + headers_bytes(ob->hdrs) + WIRE_OVERHEAD;
}

/* Which of a key (keylen) and headers (hb bytes) can stay next to a value of
 * value_bytes within limit: when not both, the bigger goes first. */
static void fit_key_headers(size_t limit, size_t value_bytes, size_t keylen, size_t hb,
                            int *drop_key, int *drop_hdrs) {
    *drop_key = *drop_hdrs = 0;
    if (value_bytes + keylen + hb <= limit) return;
    if (hb >= keylen) *drop_hdrs = 1;
    else *drop_key = 1;
    if (value_bytes + (*drop_key ? 0 : keylen) + (*drop_hdrs ? 0 : hb) > limit)
        *drop_key = *drop_hdrs = 1;
}

/* Appends "; left out to fit: key (N bytes), headers (N bytes)" (what was
 * dropped) to msg. */
static void note_dropped(char *msg, size_t msglen, int drop_key, size_t keylen, int drop_hdrs,
                         size_t hb) {
    size_t o = strlen(msg);
    if (drop_key) {
        snprintf(msg + o, msglen - o, "; left out to fit: key (%zu bytes)", keylen);
        o = strlen(msg);
    }
    if (drop_hdrs)
        snprintf(msg + o, msglen - o, "%s headers (%zu bytes)",
                 drop_key ? "," : "; left out to fit:", hb);
}

/* Headers carrying only the record_id of src. */
static rd_kafka_headers_t *record_id_headers(const EventSource *src) {
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    char rid[128];
    event_source_id(src, rid, sizeof rid);
    rd_kafka_header_add(h, "record_id", -1, rid, -1);
    return h;
}

static int refused_as_too_large(rd_kafka_resp_err_t e) {
    return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

/* ob can never be delivered as it is (over our limit or the broker's): it
 * becomes a DLQ record without payload, keeping the key and headers if they
 * fit next to it. A second refusal of that record drops them too. Returns 0
 * when ob cannot get any smaller. */
static int shrink_to_dlq(Pipeline *p, Outbound *ob, rd_kafka_resp_err_t e, const char *by) {
    if (ob->shrunk >= 2 || (ob->shrunk == 1 && !ob->keylen && !ob->hdrs_kept)) return 0;
    EventSource src = {ob->src_topic, ob->partition, ob->offset};
    size_t hb = headers_bytes(ob->hdrs);
    int drop_key = 1, drop_hdrs = 1;
    if (ob->shrunk == 0)
        fit_key_headers(p->max_record_bytes, MINIMAL_RECORD_BYTES, ob->keylen, hb, &drop_key,
                        &drop_hdrs);
    char msg[320];
    snprintf(msg, sizeof msg, "a %zu-byte record for %s (key %zu bytes, headers %zu bytes) was "
             "refused by the %s (%s, message.max.bytes %zu)", record_bytes(ob), ob->dest,
             ob->keylen, hb, by, rd_kafka_err2name(e), p->max_record_bytes);
    note_dropped(msg, sizeof msg, drop_key && ob->keylen, ob->keylen, drop_hdrs && ob->hdrs_kept, hb);
    size_t len = 0;
    void *rec = dlq_encode(&src, "output_too_large", msg, NULL, 0, &len);
    if (!rec) return 0;
    free(ob->payload);
    ob->payload = rec;
    ob->len = len;
    ob->dest = p->dlq_topic;
    ob->attempts = 0;
    ob->shrunk++;
    if (drop_key && ob->key) {
        free(ob->key);
        ob->key = NULL;
        ob->keylen = 0;
    }
    if (drop_hdrs && ob->hdrs_kept) {
        rd_kafka_headers_destroy(ob->hdrs);
        ob->hdrs = record_id_headers(&src);
        ob->hdrs_kept = 0;
    }
    atomic_fetch_add(&p->dlq, 1);
    metrics_dlq("output_too_large");
    char q[400];
    log_msg(LOG_INFO, "event=dlq reason=output_too_large src_topic=%s src_partition=%d "
            "src_offset=%lld message=%s", ob->src_topic, (int)ob->partition,
            (long long)ob->offset, log_quote(msg, q, sizeof q));
    return 1;
}

void out_send(Pipeline *p, Outbound *ob) {
    for (;;) {
        ob->attempts++;
        /* our own count first: the same refusal as the producer's */
        rd_kafka_resp_err_t err = record_bytes(ob) > p->max_record_bytes
                                      ? RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE : 0;
        if (!err) {
            rd_kafka_headers_t *h = ob->hdrs ? rd_kafka_headers_copy(ob->hdrs) : NULL;
            err = rd_kafka_producev(
                p->producer, RD_KAFKA_V_TOPIC(ob->dest), RD_KAFKA_V_VALUE(ob->payload, ob->len),
                RD_KAFKA_V_KEY(ob->key, ob->keylen), RD_KAFKA_V_MSGFLAGS(0),
                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(ob), RD_KAFKA_V_END);
            if (!err) return;
            if (h) rd_kafka_headers_destroy(h);     /* not taken on failure */
        }
        /* too large is for good: send a smaller record instead, now */
        if (refused_as_too_large(err) && shrink_to_dlq(p, ob, err, "producer")) continue;
        /* a full local queue is a backlog, not a failing topic */
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            out_failed(p, ob->dest, ob, "produce_failed", err, 1);
        metrics_kafka_error("produce");
        schedule_retry(p, ob);
        return;
    }
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
        const char *dest = ob->dest;
        /* small records are simply retried: a size refusal of those can only
         * be transient (or injected by a test) */
        int shrunk = refused_as_too_large(m->err) && record_bytes(ob) > MINIMAL_RECORD_BYTES &&
                     shrink_to_dlq(p, ob, m->err, "broker");
        out_failed(p, dest, ob, "delivery_failed", m->err, !shrunk);
        if (still_ours(p, ob)) schedule_retry(p, ob);
        else out_free(ob);
        return;
    }
    atomic_fetch_add(&p->delivered, 1);
    out_delivered_to(p, ob->dest);
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
    if (key) {  /* an empty key stays empty, not null */
        ob->key = malloc(keylen ? keylen : 1);
        if (ob->key) memcpy(ob->key, key, keylen);
        ob->keylen = keylen;
    }
    if (hdrs) {
        ob->hdrs = rd_kafka_headers_copy(hdrs);
        char rid[128];
        event_source_id(src, rid, sizeof rid);
        rd_kafka_header_add(ob->hdrs, "record_id", -1, rid, -1);
        ob->hdrs_kept = 1;
    } else {
        ob->hdrs = record_id_headers(src);
    }
    if (!ob->src_topic || (key && !ob->key)) {
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
    const size_t keylen_in = keylen;
    const int had_hdrs = hdrs != NULL;
    /* the record must fit the producer's message.max.bytes with its key and
     * headers, or it could never be delivered and its partition would stall:
     * keep a prefix of the payload, leave out a key or headers that leave
     * no room, and say so */
    char note[800];
    const size_t rid_bytes = 160;   /* the record_id header, always added */
    size_t hb = headers_bytes(hdrs), fixed = RECORD_OVERHEAD + rid_bytes;
    int drop_key, drop_hdrs;
    fit_key_headers(p->max_record_bytes, fixed, keylen, hb, &drop_key, &drop_hdrs);
    snprintf(note, sizeof note, "%s", message);
    if (drop_key) { key = NULL; keylen = 0; }
    if (drop_hdrs) hdrs = NULL;
    fixed += keylen + (hdrs ? hb : 0);
    size_t room = p->max_record_bytes > fixed ? p->max_record_bytes - fixed : 0;
    if (len > room) {
        size_t o = strlen(note);
        snprintf(note + o, sizeof note - o, " (payload truncated to its first %zu of %zu bytes)",
                 room, len);
        len = room;
    }
    note_dropped(note, sizeof note, drop_key && keylen_in, keylen_in, drop_hdrs && had_hdrs, hb);
    message = note;
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
static const char **score_codes(const Pipeline *p, const Item *it, const ClassifyResult *r) {
    if (!r->category_scores || r->n_category_scores <= 0) return NULL;
    const CategoryList *cats = it->ev.categories.n ? &it->ev.categories
                               : it->policy->categories.n ? &it->policy->categories
                               : classifier_default_categories(p->clf);
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
    const char **codes = score_codes(p, it, r);
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
