/* kafka_util.h - small librdkafka helpers shared by guardd, guardctl's Kafka
 * toolbox (broker/send/tail) and the tests.
 *
 * API:
 *
 *   Configuration. kafka_conf_new() builds an rd_kafka_conf_t with
 *   bootstrap.servers = brokers, then applies props in order (later ones win,
 *   so a prop may even override bootstrap.servers). Errors read
 *   "kafka property 'sasl.password': invalid value (not shown)" for secrets
 *   (settings_is_secret's rule) and librdkafka's own message otherwise;
 *   a secret's VALUE is never written anywhere.
 *
 *     char err[512];
 *     rd_kafka_conf_t *conf = kafka_conf_new("127.0.0.1:9092", props, n, err, sizeof err);
 *     if (!conf || kafka_conf_set(conf, "linger.ms", "5", err, sizeof err) < 0) ...
 *
 *   Producer for tools and tests: produce and wait synchronously.
 *
 *     KafkaProducer *p = kafka_producer_new(brokers, NULL, 0, err, sizeof err);
 *     KafkaHeader h[] = {{"trace", "abc", 3}};
 *     kafka_producer_send(p, "in", KAFKA_ANY_PARTITION, "k", 1, buf, len, h, 1, err, sizeof err);
 *     int failed = kafka_producer_flush(p, 10000, err, sizeof err); // 0 = all delivered
 *     // or kafka_produce_sync(...) = send + flush of exactly one message
 *     kafka_producer_destroy(p);
 *
 *   Reader (a plain consumer that assigns ALL partitions of one topic at a start
 *   offset; no group join, no commits):
 *
 *     rd_kafka_t *rk = kafka_reader_new(brokers, NULL, 0, "verdicts",
 *                                       RD_KAFKA_OFFSET_BEGINNING, 10000, err, sizeof err);
 *     rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100); ...
 *     kafka_reader_destroy(rk);
 *
 * Functions returning int give 0 on success and -1 with err filled on failure,
 * unless documented otherwise. err may be NULL when errlen is 0.
 */
#ifndef GUARDD_KAFKA_UTIL_H
#define GUARDD_KAFKA_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include "settings.h"   /* KafkaProp */

#define KAFKA_ANY_PARTITION RD_KAFKA_PARTITION_UA

/* 1 if the property's value must never be shown: settings_is_secret()'s rule
 * (names containing "password", "secret", "credential", and a few more). */
int kafka_prop_is_secret(const char *key);

/* Sets one property; on error err names the key and, for non-secrets, why. */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                   char *err, size_t errlen);

/* New conf with bootstrap.servers=brokers (skipped if brokers is NULL or ""),
 * then props[0..n_props-1]. NULL with err on the first bad property. */
rd_kafka_conf_t *kafka_conf_new(const char *brokers, const KafkaProp *props, int n_props,
                                char *err, size_t errlen);

typedef struct {
    const char *name;
    const void *value;  /* NULL = header without value */
    size_t len;
} KafkaHeader;

typedef struct KafkaProducer KafkaProducer;

/* A plain (non-idempotent: kafkajs/mock quirks) producer with acks=all. */
KafkaProducer *kafka_producer_new(const char *brokers, const KafkaProp *props, int n_props,
                                  char *err, size_t errlen);
/* Queues one message (copied). partition: KAFKA_ANY_PARTITION or >= 0; key may
 * be NULL. Blocks briefly if the local queue is full. */
int kafka_producer_send(KafkaProducer *p, const char *topic, int32_t partition,
                        const void *key, size_t keylen, const void *value, size_t len,
                        const KafkaHeader *hdrs, int n_hdrs, char *err, size_t errlen);
/* Waits up to timeout_ms for every queued message's delivery report. Returns
 * the number of messages that failed or were still undelivered (0 = all
 * acknowledged); err describes the first failure. */
int kafka_producer_flush(KafkaProducer *p, int timeout_ms, char *err, size_t errlen);
/* send + flush of one message; 0 when acknowledged, -1 otherwise. */
int kafka_produce_sync(KafkaProducer *p, const char *topic, int32_t partition,
                       const void *key, size_t keylen, const void *value, size_t len,
                       const KafkaHeader *hdrs, int n_hdrs, int timeout_ms,
                       char *err, size_t errlen);
/* Counters since creation: delivered / failed delivery reports. */
void kafka_producer_stats(const KafkaProducer *p, long *delivered, long *failed);
rd_kafka_t *kafka_producer_handle(KafkaProducer *p);
void kafka_producer_destroy(KafkaProducer *p);

/* Number of partitions of topic (asks the cluster; waits up to timeout_ms for
 * the topic to appear, which also auto-creates it on the mock). -1 on error. */
int kafka_topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms,
                           char *err, size_t errlen);

/* Consumer assigned to every partition of topic from start_offset
 * (RD_KAFKA_OFFSET_BEGINNING / _END / an absolute offset). group.id defaults
 * to a throw-away name (props may set one); nothing is committed. */
rd_kafka_t *kafka_reader_new(const char *brokers, const KafkaProp *props, int n_props,
                             const char *topic, int64_t start_offset, int timeout_ms,
                             char *err, size_t errlen);
void kafka_reader_destroy(rd_kafka_t *rk);

/* Parses "key=value" into props (strdup'd key/value, appended, *n grows).
 * Used by the tools' -X options. -1 with err if there is no '='. */
int kafka_prop_parse(const char *kv, KafkaProp **props, int *n, char *err, size_t errlen);
void kafka_props_free(KafkaProp *props, int n);

#endif
