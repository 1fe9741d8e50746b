/* check_mockbroker.c - the mock Kafka cluster module (daemon/mockbroker.c) and
 * the shared Kafka helpers (daemon/kafka_util.c), end to end over real TCP:
 * start a cluster, create topics, produce with the sync producer, read back
 * with the all-partition reader, and inject faults (broker down/up, request
 * errors) checking that nothing already delivered is lost and that a
 * permanent error surfaces as a failed delivery with a clear message.
 *
 * Reads tolerate duplicates (the mock does not de-duplicate retried produce
 * requests, see shared/reference/kafka-mock.md): tests check "every expected
 * message is present" by value, never exact counts after faults.
 */
#include "check_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "mockbroker.h"
#include "kafka_util.h"

/* Quiet producers/readers: the mock provokes noisy but harmless client logs. */
static const KafkaProp quiet[] = {{"log_level", "3"}};

static MockBroker *start(int n) {
    char err[256] = "";
    MockBroker *mb = mockbroker_start(n, err, sizeof err);
    ck_assert_msg(mb != NULL, "mockbroker_start: %s", err);
    return mb;
}

/* A quiet producer for mb's cluster, or the test fails with the error. */
static KafkaProducer *producer(MockBroker *mb) {
    char err[256] = "";
    KafkaProducer *p = kafka_producer_new(mockbroker_bootstraps(mb), quiet, 1, err, sizeof err);
    ck_assert_msg(p != NULL, "kafka_producer_new: %s", err);
    return p;
}

/* p's delivery reports so far: ok delivered, bad failed. */
static void expect_deliveries(KafkaProducer *p, long ok, long bad) {
    long got_ok, got_bad;
    kafka_producer_stats(p, &got_ok, &got_bad);
    ck_assert_int_eq(got_ok, ok);
    ck_assert_int_eq(got_bad, bad);
}

/* ---- cluster basics ---- */

START_TEST(test_start_bootstraps) {
    MockBroker *mb = start(3);
    const char *bs = mockbroker_bootstraps(mb);
    ck_assert_ptr_nonnull(bs);
    int commas = 0;
    for (const char *p = bs; *p; p++) commas += *p == ',';
    ck_assert_int_eq(commas, 2);
    ck_assert_ptr_nonnull(strstr(bs, "127.0.0.1:"));
    ck_assert_int_eq(mockbroker_broker_count(mb), 3);
    mockbroker_stop(mb);
    mockbroker_stop(NULL); /* no-op */
}
END_TEST

START_TEST(test_bad_arguments) {
    char err[256] = "";
    ck_assert_ptr_null(mockbroker_start(0, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "1..16"));
    ck_assert_ptr_null(mockbroker_start(17, err, sizeof err));
    MockBroker *mb = start(2);
    ck_assert_int_eq(mockbroker_create_topic(mb, "", 1, err, sizeof err), -1);
    ck_assert_int_eq(mockbroker_create_topic(mb, "t", 0, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "partitions"));
    ck_assert_int_eq(mockbroker_broker_down(mb, 0), -1);
    ck_assert_int_eq(mockbroker_broker_down(mb, 3), -1);
    ck_assert_int_eq(mockbroker_set_rtt(mb, 1, -5), -1);
    ck_assert_int_eq(mockbroker_set_rtt(mb, 1, 10), 0);
    ck_assert_int_eq(mockbroker_set_rtt(mb, 1, 0), 0);
    ck_assert_int_eq(mockbroker_partition_set_leader(mb, "t", 0, 9), -1);
    ck_assert_int_eq(mockbroker_push_request_errors(mb, MOCK_API_PRODUCE, 1, NULL), -1);
    mockbroker_stop(mb);
}
END_TEST

START_TEST(test_topic_partitions) {
    char err[256] = "";
    MockBroker *mb = start(1);
    ck_assert_int_eq(mockbroker_create_topic(mb, "three", 3, err, sizeof err), 0);
    ck_assert_int_eq(mockbroker_create_topic(mb, "seven", 7, err, sizeof err), 0);
    KafkaProducer *p = producer(mb);
    rd_kafka_t *rk = kafka_producer_handle(p);
    ck_assert_int_eq(kafka_topic_partitions(rk, "three", 5000, err, sizeof err), 3);
    ck_assert_int_eq(kafka_topic_partitions(rk, "seven", 5000, err, sizeof err), 7);
    kafka_producer_destroy(p);
    mockbroker_stop(mb);
}
END_TEST

/* ---- produce / read helpers ---- */

/* Sends values "PREFIX-i" for i in [from, to) with key "k-i" and one header. */
static void send_range(KafkaProducer *p, const char *topic, const char *prefix, int from, int to) {
    char err[256], key[32], val[64];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "k-%d", i);
        snprintf(val, sizeof val, "%s-%d", prefix, i);
        KafkaHeader h = {"seq", val, strlen(val)};
        ck_assert_msg(kafka_producer_send(p, topic, KAFKA_ANY_PARTITION, key, strlen(key),
                                          val, strlen(val), &h, 1, err, sizeof err) == 0,
                      "send: %s", err);
    }
}

/* Reads until every value "PREFIX-i" (i < n) has been seen or timeout; checks
 * the key and header of each. Returns how many distinct values were seen. */
static int read_expect(const char *brokers, const char *topic, const char *prefix, int n,
                       int timeout_ms) {
    char err[256];
    rd_kafka_t *rk = kafka_reader_new(brokers, quiet, 1, topic, RD_KAFKA_OFFSET_BEGINNING,
                                      5000, err, sizeof err);
    ck_assert_msg(rk != NULL, "reader: %s", err);
    char *seen = calloc((size_t)n, 1);
    int distinct = 0;
    for (int waited = 0; distinct < n && waited < timeout_ms; ) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) { waited += 100; continue; }
        if (!m->err) {
            char val[64], key[32];
            int len = (int)m->len < 63 ? (int)m->len : 63;
            memcpy(val, m->payload, (size_t)len); val[len] = 0;
            size_t plen = strlen(prefix);
            if (!strncmp(val, prefix, plen) && val[plen] == '-') {
                int i = atoi(val + plen + 1);
                ck_assert_int_lt(i, n);
                snprintf(key, sizeof key, "k-%d", i);
                ck_assert_int_eq((int)m->key_len, (int)strlen(key));
                ck_assert(!memcmp(m->key, key, m->key_len));
                rd_kafka_headers_t *h = NULL;
                const void *hv; size_t hl;
                ck_assert_int_eq(rd_kafka_message_headers(m, &h), 0);
                ck_assert_int_eq(rd_kafka_header_get_last(h, "seq", &hv, &hl), 0);
                ck_assert_int_eq((int)hl, len);
                ck_assert(!memcmp(hv, val, hl));
                if (!seen[i]) { seen[i] = 1; distinct++; }
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(seen);
    kafka_reader_destroy(rk);
    return distinct;
}

START_TEST(test_produce_consume) {
    char err[256] = "";
    MockBroker *mb = start(3);
    ck_assert_int_eq(mockbroker_create_topic(mb, "events", 4, err, sizeof err), 0);
    KafkaProducer *p = producer(mb);
    send_range(p, "events", "a", 0, 40);
    ck_assert_msg(kafka_producer_flush(p, 10000, err, sizeof err) == 0, "flush: %s", err);
    /* one more through the synchronous path */
    ck_assert_msg(kafka_produce_sync(p, "events", 2, "k-0", 3, "z-0", 3, NULL, 0,
                                     10000, err, sizeof err) == 0, "sync: %s", err);
    expect_deliveries(p, 41, 0);
    kafka_producer_destroy(p);
    /* read_expect checks key and header of each "a-i" (z-0 is skipped) */
    ck_assert_int_eq(read_expect(mockbroker_bootstraps(mb), "events", "a", 40, 15000), 40);
    mockbroker_stop(mb);
}
END_TEST

/* Delivered messages survive a broker going down and up, and messages sent
 * while the partition leader is down are delivered once it is back. */
START_TEST(test_broker_down_up) {
    char err[256] = "";
    MockBroker *mb = start(3);
    const char *bs = mockbroker_bootstraps(mb);
    ck_assert_int_eq(mockbroker_create_topic(mb, "f", 2, err, sizeof err), 0);
    ck_assert_int_eq(mockbroker_partition_set_leader(mb, "f", 0, 2), 0);
    ck_assert_int_eq(mockbroker_partition_set_leader(mb, "f", 1, 2), 0);
    KafkaProducer *p = producer(mb);
    send_range(p, "f", "b", 0, 20);
    ck_assert_msg(kafka_producer_flush(p, 10000, err, sizeof err) == 0, "flush 1: %s", err);

    ck_assert_int_eq(mockbroker_broker_down(mb, 2), 0);
    send_range(p, "f", "b", 20, 40);
    /* While the leader is down nothing can be acknowledged. */
    ck_assert_int_gt(kafka_producer_flush(p, 500, err, sizeof err), 0);
    ck_assert_int_eq(mockbroker_broker_up(mb, 2), 0);
    ck_assert_msg(kafka_producer_flush(p, 20000, err, sizeof err) == 0, "flush 2: %s", err);
    expect_deliveries(p, 40, 0);
    kafka_producer_destroy(p);
    ck_assert_int_eq(read_expect(bs, "f", "b", 40, 20000), 40);
    mockbroker_stop(mb);
}
END_TEST

START_TEST(test_request_errors) {
    char err[256] = "";
    MockBroker *mb = start(1);
    ck_assert_int_eq(mockbroker_create_topic(mb, "e", 1, err, sizeof err), 0);
    KafkaProducer *p = producer(mb);
    /* warm up: metadata and connection in place before errors are armed */
    ck_assert_int_eq(kafka_produce_sync(p, "e", 0, "k-0", 3, "c-0", 3, NULL, 0, 10000,
                                        err, sizeof err), 0);

    /* Retriable errors: retried by librdkafka, still delivered. */
    rd_kafka_resp_err_t retriable[] = {RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                       RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT};
    ck_assert_int_eq(mockbroker_push_request_errors(mb, MOCK_API_PRODUCE, 2, retriable), 0);
    ck_assert_msg(kafka_produce_sync(p, "e", 0, "k-1", 3, "c-1", 3, NULL, 0, 15000,
                                     err, sizeof err) == 0, "retriable: %s", err);

    /* A permanent error: the delivery fails and the error says why. */
    rd_kafka_resp_err_t fatal[] = {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE};
    ck_assert_int_eq(mockbroker_push_request_errors(mb, MOCK_API_PRODUCE, 1, fatal), 0);
    err[0] = 0;
    ck_assert_int_eq(kafka_produce_sync(p, "e", 0, "k-2", 3, "c-2", 3, NULL, 0, 15000,
                                        err, sizeof err), -1);
    ck_assert_msg(strstr(err, "failed") && strstr(err, "e [0]"), "err: %s", err);
    expect_deliveries(p, 2, 1);
    /* And the producer keeps working afterwards. */
    ck_assert_int_eq(kafka_produce_sync(p, "e", 0, "k-3", 3, "c-3", 3, NULL, 0, 10000,
                                        err, sizeof err), 0);
    kafka_producer_destroy(p);
    mockbroker_stop(mb);
}
END_TEST

/* ---- configuration helpers (no cluster) ---- */

START_TEST(test_conf_errors) {
    char err[256];
    ck_assert(kafka_prop_is_secret("sasl.password"));
    ck_assert(kafka_prop_is_secret("ssl.key.password"));
    ck_assert(kafka_prop_is_secret("sasl.oauthbearer.client.secret"));
    ck_assert(kafka_prop_is_secret("sasl.oauthbearer.config"));
    ck_assert(!kafka_prop_is_secret("sasl.username"));
    ck_assert(!kafka_prop_is_secret("security.protocol"));

    KafkaProp good[] = {{"linger.ms", "7"}, {"sasl.password", "hunter2"}};
    rd_kafka_conf_t *c = kafka_conf_new("127.0.0.1:1", good, 2, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    char v[64]; size_t vl = sizeof v;
    ck_assert_int_eq(rd_kafka_conf_get(c, "linger.ms", v, &vl), RD_KAFKA_CONF_OK);
    ck_assert_str_eq(v, "7");
    vl = sizeof v;
    ck_assert_int_eq(rd_kafka_conf_get(c, "bootstrap.servers", v, &vl), RD_KAFKA_CONF_OK);
    ck_assert_str_eq(v, "127.0.0.1:1");
    rd_kafka_conf_destroy(c);

    KafkaProp bad_value[] = {{"acks", "sometimes"}};
    ck_assert_ptr_null(kafka_conf_new("x:1", bad_value, 1, err, sizeof err));
    ck_assert_msg(strstr(err, "'acks'") != NULL, "%s", err);

    KafkaProp unknown_secret[] = {{"no.such.password", "hunter2"}};
    ck_assert_ptr_null(kafka_conf_new("x:1", unknown_secret, 1, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "unknown property"));
    ck_assert_ptr_null(strstr(err, "hunter2"));
}
END_TEST

START_TEST(test_prop_parse) {
    char err[256];
    KafkaProp *props = NULL;
    int n = 0;
    ck_assert_int_eq(kafka_prop_parse("a.b=c=d", &props, &n, err, sizeof err), 0);
    ck_assert_int_eq(kafka_prop_parse("empty=", &props, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(props[0].key, "a.b");
    ck_assert_str_eq(props[0].value, "c=d");
    ck_assert_str_eq(props[1].value, "");
    ck_assert_int_eq(kafka_prop_parse("noequals", &props, &n, err, sizeof err), -1);
    ck_assert_int_eq(kafka_prop_parse("=secretvalue", &props, &n, err, sizeof err), -1);
    ck_assert_ptr_null(strstr(err, "secretvalue"));
    ck_assert_int_eq(n, 2);
    kafka_props_free(props, n);
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("mockbroker");
    TCase *tc = check_case(s, "cluster", 60);
    tcase_add_test(tc, test_start_bootstraps);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_topic_partitions);
    tcase_add_test(tc, test_produce_consume);
    tcase_add_test(tc, test_broker_down_up);
    tcase_add_test(tc, test_request_errors);
    TCase *tu = check_case(s, "util", 0);
    tcase_add_test(tu, test_conf_errors);
    tcase_add_test(tu, test_prop_parse);
    return s;
}

int main(void) {
    return check_run(suite());
}
