/* kafka_util.c - librdkafka helpers (kafka_util.h): configuration with clear,
 * secret-safe errors; a synchronous producer for tools and tests; a reader
 * that assigns every partition of a topic without joining a group.
 *
 * The producer is single-threaded by design: delivery reports are served by
 * rd_kafka_poll/rd_kafka_flush in the caller's thread, so the counters need
 * no locking.
 */
#include "../model/errmsg.h"
#include "kafka_util.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One rule for what is secret, shared with the settings dump (settings.c). */
int kafka_prop_is_secret(const char *key) {
    return settings_is_secret(key);
}

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                   char *err, size_t errlen) {
    char e[512];
    if (!conf || !key || !*key || !value) {
        errmsg(err, errlen, "kafka property '%s': missing name or value", key ? key : "");
        return -1;
    }
    rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, key, value, e, sizeof e);
    if (r == RD_KAFKA_CONF_OK) return 0;
    if (r == RD_KAFKA_CONF_UNKNOWN)
        errmsg(err, errlen, "kafka property '%s': unknown property", key);
    else if (kafka_prop_is_secret(key))
        /* librdkafka's message may quote the value: never pass it on. */
        errmsg(err, errlen, "kafka property '%s': invalid value (not shown)", key);
    else
        errmsg(err, errlen, "kafka property '%s': %s", key, e);
    return -1;
}

rd_kafka_conf_t *kafka_conf_new(const char *brokers, const KafkaProp *props, int n_props,
                                char *err, size_t errlen) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (brokers && *brokers &&
        kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) < 0)
        goto fail;
    for (int i = 0; i < n_props; i++)
        if (kafka_conf_set(conf, props[i].key, props[i].value, err, errlen) < 0) goto fail;
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- producer ---- */

struct KafkaProducer {
    rd_kafka_t *rk;
    long delivered, failed;     /* totals */
    long failed_since_flush;
    char first_err[256];        /* first failure since the last flush */
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    KafkaProducer *p = opaque;
    if (!m->err) { p->delivered++; return; }
    p->failed++;
    if (p->failed_since_flush++ == 0)
        snprintf(p->first_err, sizeof p->first_err, "delivery to %s [%d] failed: %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
}

KafkaProducer *kafka_producer_new(const char *brokers, const KafkaProp *props, int n_props,
                                  char *err, size_t errlen) {
    if (!brokers || !*brokers) { errmsg(err, errlen, "no brokers given"); return NULL; }
    KafkaProducer *p = calloc(1, sizeof *p);
    if (!p) { errmsg(err, errlen, "out of memory"); return NULL; }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    /* Our defaults first so props can override them. */
    if (kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) < 0 ||
        kafka_conf_set(conf, "acks", "all", err, errlen) < 0 ||
        kafka_conf_set(conf, "linger.ms", "5", err, errlen) < 0 ||
        kafka_conf_set(conf, "log.connection.close", "false", err, errlen) < 0)
        goto fail;
    for (int i = 0; i < n_props; i++)
        if (kafka_conf_set(conf, props[i].key, props[i].value, err, errlen) < 0) goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    char e[512];
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    if (!p->rk) { errmsg(err, errlen, "cannot create producer: %s", e); goto fail; }
    return p;
fail:
    rd_kafka_conf_destroy(conf);
    free(p);
    return NULL;
}

static rd_kafka_headers_t *make_headers(const KafkaHeader *hdrs, int n) {
    if (n <= 0) return NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new((size_t)n);
    for (int i = 0; i < n; i++)
        rd_kafka_header_add(h, hdrs[i].name, -1, hdrs[i].value,
                            hdrs[i].value ? (ssize_t)hdrs[i].len : 0);
    return h;
}

int kafka_producer_send(KafkaProducer *p, const char *topic, int32_t partition,
                        const void *key, size_t keylen, const void *value, size_t len,
                        const KafkaHeader *hdrs, int n_hdrs, char *err, size_t errlen) {
    if (!p || !topic || !*topic) { errmsg(err, errlen, "no topic given"); return -1; }
    rd_kafka_resp_err_t e;
    /* A full local queue is transient: serve delivery reports and retry (~60 s). */
    for (int tries = 0;; tries++) {
        rd_kafka_headers_t *h = make_headers(hdrs, n_hdrs);
        e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_KEY(key, key ? keylen : 0),
                              RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!e) return 0;
        if (h) rd_kafka_headers_destroy(h);  /* ownership passes only on success */
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries >= 600) break;
        rd_kafka_poll(p->rk, 100);
    }
    errmsg(err, errlen, "cannot produce to %s: %s", topic, rd_kafka_err2str(e));
    return -1;
}

int kafka_producer_flush(KafkaProducer *p, int timeout_ms, char *err, size_t errlen) {
    if (!p) return -1;
    rd_kafka_flush(p->rk, timeout_ms);
    int left = rd_kafka_outq_len(p->rk);
    long failed = p->failed_since_flush;
    if (failed) errmsg(err, errlen, "%ld message(s) failed; first: %s", failed, p->first_err);
    else if (left) errmsg(err, errlen, "%d message(s) not delivered within %d ms", left, timeout_ms);
    p->failed_since_flush = 0;
    p->first_err[0] = 0;
    return (int)failed + left;
}

int kafka_produce_sync(KafkaProducer *p, const char *topic, int32_t partition,
                       const void *key, size_t keylen, const void *value, size_t len,
                       const KafkaHeader *hdrs, int n_hdrs, int timeout_ms,
                       char *err, size_t errlen) {
    if (kafka_producer_send(p, topic, partition, key, keylen, value, len, hdrs, n_hdrs,
                            err, errlen) < 0)
        return -1;
    return kafka_producer_flush(p, timeout_ms, err, errlen) ? -1 : 0;
}

void kafka_producer_stats(const KafkaProducer *p, long *delivered, long *failed) {
    if (delivered) *delivered = p ? p->delivered : 0;
    if (failed) *failed = p ? p->failed : 0;
}

rd_kafka_t *kafka_producer_handle(KafkaProducer *p) { return p ? p->rk : NULL; }

void kafka_producer_destroy(KafkaProducer *p) {
    if (!p) return;
    if (p->rk) rd_kafka_destroy(p->rk);
    free(p);
}

/* ---- metadata and reader ---- */

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* One metadata round: partition count, 0 if the topic is not (yet) known,
 * -1 on a hard error. */
static int partitions_once(rd_kafka_t *rk, rd_kafka_topic_t *rkt, int timeout_ms,
                           char *err, size_t errlen) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    if (e) {
        errmsg(err, errlen, "metadata for %s: %s", rd_kafka_topic_name(rkt), rd_kafka_err2str(e));
        return e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__TRANSPORT ? 0 : -1;
    }
    int n = 0;
    if (md->topic_cnt == 1) {
        if (md->topics[0].err)
            errmsg(err, errlen, "topic %s: %s", rd_kafka_topic_name(rkt),
                    rd_kafka_err2str(md->topics[0].err));
        else
            n = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
    return n;
}

int kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                           char *err, size_t errlen) {
    if (!rk || !topic || !*topic) { errmsg(err, errlen, "no topic given"); return -1; }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) { errmsg(err, errlen, "bad topic '%s'", topic); return -1; }
    long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int n;
    errmsg(err, errlen, "topic %s: not found within %d ms", topic, timeout_ms);
    for (;;) {
        long left = deadline - now_ms();
        n = partitions_once(rk, rkt, left > 1000 ? 1000 : (left > 100 ? (int)left : 100),
                            err, errlen);
        if (n != 0 || now_ms() >= deadline) break;
        usleep(100 * 1000);  /* topic not there yet: ask again */
    }
    rd_kafka_topic_destroy(rkt);
    return n > 0 ? n : -1;
}

rd_kafka_t *kafka_reader_new(const char *brokers, const KafkaProp *props, int n_props,
                             const char *topic, int64_t start_offset, int timeout_ms,
                             char *err, size_t errlen) {
    if (!brokers || !*brokers) { errmsg(err, errlen, "no brokers given"); return NULL; }
    char group[64], e[512];
    snprintf(group, sizeof group, "guardd-reader-%ld-%ld", (long)getpid(), now_ms());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kafka_conf_set(conf, "bootstrap.servers", brokers, err, errlen) < 0 ||
        kafka_conf_set(conf, "group.id", group, err, errlen) < 0 ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) < 0 ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) < 0 ||
        kafka_conf_set(conf, "log.connection.close", "false", err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    for (int i = 0; i < n_props; i++)
        if (kafka_conf_set(conf, props[i].key, props[i].value, err, errlen) < 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        errmsg(err, errlen, "cannot create consumer: %s", e);
        return NULL;
    }
    int n = kafka_topic_partitions(rk, topic, timeout_ms, err, errlen);
    if (n < 0) { rd_kafka_destroy(rk); return NULL; }
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(tp, topic, i)->offset = start_offset;
    rd_kafka_resp_err_t ae = rd_kafka_assign(rk, tp);
    rd_kafka_topic_partition_list_destroy(tp);
    if (ae) {
        errmsg(err, errlen, "cannot assign %s: %s", topic, rd_kafka_err2str(ae));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

void kafka_reader_destroy(rd_kafka_t *rk) {
    if (!rk) return;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* ---- -X key=value parsing ---- */

int kafka_prop_parse(const char *kv, KafkaProp **props, int *n, char *err, size_t errlen) {
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv) {
        /* Never echo the argument: it may carry a secret value. */
        errmsg(err, errlen, "kafka property: expected NAME=VALUE");
        return -1;
    }
    if (*n >= 1024) { errmsg(err, errlen, "too many properties"); return -1; }
    KafkaProp *np = realloc(*props, (size_t)(*n + 1) * sizeof *np);
    if (!np) { errmsg(err, errlen, "out of memory"); return -1; }
    *props = np;
    np[*n].key = strndup(kv, (size_t)(eq - kv));
    np[*n].value = strdup(eq + 1);
    if (!np[*n].key || !np[*n].value) {
        free(np[*n].key); free(np[*n].value);
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    (*n)++;
    return 0;
}

void kafka_props_free(KafkaProp *props, int n) {
    for (int i = 0; i < n; i++) { free(props[i].key); free(props[i].value); }
    free(props);
}
