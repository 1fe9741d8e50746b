/* check_pipeline_faults.c - guardd's pipeline in-process against the mock
 * cluster with injected broker faults: nothing may be lost.
 *
 * A 3-broker mock cluster (mockbroker.h), the real pipeline (pipeline.h) with
 * the tiny fixture model ($GUARDD_TINY_MODEL; skipped without it), a small
 * queue so backpressure pauses happen. Events (some of them garbage bytes for
 * the DLQ path) are produced in two waves around a fault schedule: a broker
 * down and up again, retriable Produce errors, non-retriable Produce errors
 * (failed delivery reports: guardd must produce again, not skip), failing
 * OffsetCommits and Fetches, and finally commits failing for good right when
 * the last progress is committed. Then every input offset must have at least one
 * output record (allow, deny or DLQ, found by its record_id header and
 * cross-checked in the payload), the graceful stop must report everything
 * committed, and the group's committed offsets must equal the input's end.
 */
#include "check_main.h"
#include "check_fixture.h"
#include <fcntl.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "classifier.h"
#include "event.h"
#include "kafka_util.h"
#include "log.h"
#include "metrics.h"
#include "mockbroker.h"
#include "pipeline.h"
#include "pipeline_int.h"  /* the stall test pauses a partition behind guardd's back */
#include "queue.h"
#include "settings.h"

#define PARTS 4
#define WAVE 120
#define MAX_OFFSETS 1024

static const char *model_dir;
static MockBroker *mb;
static char conf_path[128];

/* seen[p][o]: an output record for input partition p, offset o was read */
static unsigned char seen[PARTS][MAX_OFFSETS];

/* The first output record read for an input offset, as far as the tests
 * look at it (only kept for partition 0). */
typedef struct {
    char topic[8];
    int key_null;           /* 1: null key */
    size_t keylen;
    long traceparent_len;   /* -1: no traceparent header */
    json_t *value;          /* record_to_json of the payload */
} Output;
static Output first_out[MAX_OFFSETS];

/* seen_count[p][o]: output records read for input partition p, offset o */
static unsigned char seen_count[PARTS][MAX_OFFSETS];

/* batch and limits sections of the configs below */
static const char *batch_conf = "batch = { max_events = 3; max_wait_ms = 5; queue_capacity = 4; };\n";

/* more_props: further kafka.properties entries, each starting with ",\n" */
static void write_config_props(const char *bootstrap, const char *group, const char *more_props) {
    snprintf(conf_path, sizeof conf_path, "/tmp/check_pipeline_faults-%d.conf", (int)getpid());
    FILE *f = fopen(conf_path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f,
            "kafka = { brokers = \"%s\"; group_id = \"%s\"; input_topics = [\"in\"];\n"
            "  allow_topic = \"allow\"; deny_topic = \"deny\"; dlq_topic = \"dlq\";\n"
            "  properties = ( (\"session.timeout.ms\", \"6000\"),\n"
            "                 (\"heartbeat.interval.ms\", \"500\"),\n"
            "                 (\"message.timeout.ms\", \"8000\"),\n"
            "                 (\"message.max.bytes\", \"100000\")%s ); };\n"
            "model = { path = \"%s\"; threads = 1; };\n"
            "%s"
            "metrics = { listen = \"\"; };\n"
            "log = { level = \"warn\"; };\n"
            "shutdown_timeout_ms = 15000;\n",
            bootstrap, group, more_props, model_dir, batch_conf);
    fclose(f);
}

static void write_config(const char *bootstrap, const char *group) {
    write_config_props(bootstrap, group, "");
}

/* Two inputs whose outputs would not fit guardd's message.max.bytes
 * (100000): 150 kB of garbage (its DLQ record must carry a cut payload) and a
 * valid event with 120 kB of metadata (its verdict becomes a DLQ record).
 * Either one stuck in retries would stall its partition's commits. */
static void produce_oversized(KafkaProducer *kp) {
    char err[256];
    size_t n = 150000;
    char *junk = malloc(n);
    ck_assert_ptr_nonnull(junk);
    memset(junk, 0xc1, n);      /* 0xc1 is never valid msgpack */
    ck_assert_int_eq(kafka_producer_send(kp, "in", 0, "big", 3, junk, n, NULL, 0, err, sizeof err), 0);
    free(junk);
    /* {"id": "meta", "messages": [{"role": "user", "content": "hi"}], "metadata": {"m": <120 kB str>}} */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str(&pk, 2); msgpack_pack_str_body(&pk, "id", 2);
    msgpack_pack_str(&pk, 4); msgpack_pack_str_body(&pk, "meta", 4);
    msgpack_pack_str(&pk, 8); msgpack_pack_str_body(&pk, "messages", 8);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str(&pk, 4); msgpack_pack_str_body(&pk, "role", 4);
    msgpack_pack_str(&pk, 4); msgpack_pack_str_body(&pk, "user", 4);
    msgpack_pack_str(&pk, 7); msgpack_pack_str_body(&pk, "content", 7);
    msgpack_pack_str(&pk, 2); msgpack_pack_str_body(&pk, "hi", 2);
    msgpack_pack_str(&pk, 8); msgpack_pack_str_body(&pk, "metadata", 8);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 1); msgpack_pack_str_body(&pk, "m", 1);
    char *big = malloc(120000);
    ck_assert_ptr_nonnull(big);
    memset(big, 'm', 120000);
    msgpack_pack_str(&pk, 120000); msgpack_pack_str_body(&pk, big, 120000);
    free(big);
    ck_assert_int_eq(kafka_producer_send(kp, "in", 1, "meta", 4, sb.data, sb.size, NULL, 0,
                                         err, sizeof err), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* A small valid event "ev-I" (malloc'd msgpack). */
static void *valid_event(int i, size_t *len) {
    ConversationEvent ev = {0};
    char id[32], text[128];
    snprintf(id, sizeof id, "ev-%d", i);
    snprintf(text, sizeof text, "message number %d: how do I bake bread?", i);
    ev.id = id;
    conversation_add(&ev.conv, ROLE_USER, text);
    void *buf = event_encode(&ev, len);
    conversation_free(&ev.conv);
    ck_assert_ptr_nonnull(buf);
    return buf;
}

static void produce_wave(KafkaProducer *kp, int from, int n) {
    char err[256], key[16];
    for (int i = from; i < from + n; i++) {
        snprintf(key, sizeof key, "k%d", i % 7);
        if (i % 10 == 9) {  /* garbage: a msgpack fixarray header, then nothing */
            ck_assert_int_eq(kafka_producer_send(kp, "in", KAFKA_ANY_PARTITION, key, strlen(key),
                                                 "\x93", 1, NULL, 0, err, sizeof err), 0);
            continue;
        }
        size_t len = 0;
        void *buf = valid_event(i, &len);
        ck_assert_int_eq(kafka_producer_send(kp, "in", KAFKA_ANY_PARTITION, key, strlen(key),
                                             buf, len, NULL, 0, err, sizeof err), 0);
        free(buf);
    }
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "input not delivered: %s", err);
}

/* Marks the input offset named by a record's record_id header; checks the
 * payload names the same record. */
static void note_record(const rd_kafka_message_t *m) {
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t len = 0;
    ck_assert_int_eq(rd_kafka_message_headers(m, &h), 0);
    ck_assert_int_eq(rd_kafka_header_get_last(h, "record_id", &v, &len), 0);
    char rid[128];
    ck_assert_uint_lt(len, sizeof rid);
    memcpy(rid, v, len);
    rid[len] = 0;
    int part;
    long off;
    ck_assert_int_eq(sscanf(rid, "in/%d/%ld", &part, &off), 2);
    ck_assert(part >= 0 && part < PARTS && off >= 0 && off < MAX_OFFSETS);
    char *js = record_to_json(m->payload, m->len);
    ck_assert_ptr_nonnull(js);
    json_t *j = json_loads(js, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(json_string_value(json_object_get(j, "record_id")), rid);
    free(js);
    if (part == 0 && !seen[part][off]) {
        Output *o = &first_out[off];
        snprintf(o->topic, sizeof o->topic, "%s", rd_kafka_topic_name(m->rkt));
        o->key_null = m->key == NULL;
        o->keylen = m->key_len;
        o->traceparent_len = rd_kafka_header_get_last(h, "traceparent", &v, &len) ? -1 : (long)len;
        o->value = json_incref(j);
    }
    json_decref(j);
    seen[part][off] = 1;
    if (seen_count[part][off] < 255) seen_count[part][off]++;
}

static int64_t end_offset(rd_kafka_t *rk, int part) {
    int64_t lo = 0, hi = 0;
    ck_assert_int_eq(rd_kafka_query_watermark_offsets(rk, "in", part, &lo, &hi, 10000), 0);
    return hi;
}

static int all_seen(rd_kafka_t *rk, int64_t *missing_part, int64_t *missing_off) {
    for (int p = 0; p < PARTS; p++) {
        int64_t hi = end_offset(rk, p);
        for (int64_t o = 0; o < hi; o++)
            if (!seen[p][o]) { *missing_part = p; *missing_off = o; return 0; }
    }
    return 1;
}

/* Notes every record the three output topics hold now. */
static void drain_outputs(rd_kafka_t *readers[3]) {
    for (int r = 0; r < 3; r++) {
        rd_kafka_message_t *m;
        while ((m = rd_kafka_consumer_poll(readers[r], 0))) {
            if (!m->err) note_record(m);
            rd_kafka_message_destroy(m);
        }
    }
}

/* Reads the output topics for about `seconds`. */
static void read_outputs(rd_kafka_t *readers[3], int seconds) {
    for (int t = 0; t < seconds * 10; t++) {
        drain_outputs(readers);
        usleep(100000);
    }
}

/* Reads the three output topics until every input offset is covered. */
static void wait_all_seen(rd_kafka_t *readers[3], int timeout_s) {
    int64_t mp = -1, mo = -1;
    for (int t = 0; t < timeout_s * 10; t++) {
        drain_outputs(readers);
        if (t % 10 == 0 && all_seen(readers[0], &mp, &mo)) return;
        usleep(100000);
    }
    ck_abort_msg("no output record for input in/%lld/%lld", (long long)mp, (long long)mo);
}

static void check_committed(const char *bootstrap, const char *group) {
    char err[256];
    KafkaProp props[] = {{"group.id", (char *)group}};
    rd_kafka_conf_t *conf = kafka_conf_new(bootstrap, props, 1, err, sizeof err);
    ck_assert_ptr_nonnull(conf);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    ck_assert_ptr_nonnull(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
    for (int p = 0; p < PARTS; p++) rd_kafka_topic_partition_list_add(l, "in", p);
    ck_assert_int_eq(rd_kafka_committed(rk, l, 10000), 0);
    for (int p = 0; p < PARTS; p++)     /* an empty partition has nothing to commit */
        ck_assert_msg(l->elems[p].offset == end_offset(rk, p) ||
                      (end_offset(rk, p) == 0 && l->elems[p].offset < 0),
                      "partition %d committed %lld, end %lld", p,
                      (long long)l->elems[p].offset, (long long)end_offset(rk, p));
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

static const char *topics[] = {"in", "allow", "deny", "dlq"};

/* Starts the mock cluster with the four topics; returns its bootstrap list. */
static const char *cluster_start(void) {
    char err[512];
    mb = mockbroker_start(3, err, sizeof err);
    ck_assert_msg(mb != NULL, "%s", err);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(mockbroker_create_topic(mb, topics[i], PARTS, err, sizeof err), 0);
    return mockbroker_bootstraps(mb);
}

/* One group member: the pipeline with its own settings and classifier. */
typedef struct {
    Settings s;
    Classifier *clf;
    Pipeline *p;
} Member;

static void member_start(Member *m, const char *bs) {
    char err[512];
    ck_assert_msg(settings_load(conf_path, &m->s, err, sizeof err) == 0, "%s", err);
    log_set_level(m->s.log_level);
    ClassifierOptions o = {.model_dir = model_dir, .threads = 1, .threshold = -1};
    m->clf = check_classifier_open(&o);
    m->p = pipeline_start(&m->s, bs, m->clf, err, sizeof err);
    ck_assert_msg(m->p != NULL, "%s", err);
}

/* pipeline_stop's result (0: everything delivered and committed). */
static int member_stop(Member *m, int timeout_ms) {
    int rc = pipeline_stop(m->p, timeout_ms);
    classifier_close(m->clf);
    settings_free(&m->s);
    return rc;
}

/* Readers of the three output topics, from the beginning. */
static void readers_open(rd_kafka_t *readers[3], const char *bs) {
    char err[512];
    for (int r = 0; r < 3; r++) {
        readers[r] = kafka_reader_new(bs, NULL, 0, topics[r + 1], RD_KAFKA_OFFSET_BEGINNING,
                                      10000, err, sizeof err);
        ck_assert_msg(readers[r] != NULL, "%s", err);
    }
}

static void readers_close(rd_kafka_t *readers[3]) {
    for (int r = 0; r < 3; r++) kafka_reader_destroy(readers[r]);
}

START_TEST(test_nothing_lost_under_faults) {
    char err[512];
    const char *bs = cluster_start();
    write_config(bs, "faults");
    Member a;
    member_start(&a, bs);
    Pipeline *p = a.p;

    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    rd_kafka_t *readers[3];
    readers_open(readers, bs);
    produce_oversized(kp);
    produce_wave(kp, 0, WAVE);
    sleep(4);   /* group join, processing under way */

    /* a broker goes away and comes back */
    mockbroker_broker_down(mb, 2);
    sleep(2);
    mockbroker_broker_up(mb, 2);
    /* retriable errors: librdkafka retries them itself */
    rd_kafka_resp_err_t retriable[] = {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                       RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                       RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS};
    mockbroker_push_request_errors(mb, MOCK_API_PRODUCE, 3, retriable);
    rd_kafka_resp_err_t commit_errs[] = {RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                                         RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT};
    mockbroker_push_request_errors(mb, MOCK_API_OFFSET_COMMIT, 2, commit_errs);
    rd_kafka_resp_err_t fetch_errs[] = {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION};
    mockbroker_push_request_errors(mb, MOCK_API_FETCH, 1, fetch_errs);
    produce_wave(kp, WAVE, WAVE);
    /* non-retriable: these deliveries fail and guardd must produce again
     * (pushed after our own input is in, so only guardd's producer meets them) */
    rd_kafka_resp_err_t fatal[] = {RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                                   RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE};
    mockbroker_push_request_errors(mb, MOCK_API_PRODUCE, 2, fatal);

    wait_all_seen(readers, 90);
    /* commits that fail for good (non-retriable) right when the last progress
     * is committed: guardd must commit that progress again, or the group
     * would restart from an old offset after the stop below */
    sleep(1);
    rd_kafka_resp_err_t bad_commit[5];
    for (int i = 0; i < 5; i++) bad_commit[i] = RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE;
    mockbroker_push_request_errors(mb, MOCK_API_OFFSET_COMMIT, 5, bad_commit);
    produce_wave(kp, 2 * WAVE, 3);
    wait_all_seen(readers, 30);
    sleep(3);   /* progress commits and their re-tries */
    PipelineStats st;
    pipeline_stats(p, &st);
    ck_assert_int_ge(st.consumed, 2 * WAVE);
    ck_assert_int_ge(st.dlq, 2 * WAVE / 10 + 2);
    ck_assert_int_gt(st.pauses, 0);     /* a 4-slot queue must have pushed back */
    ck_assert_int_gt(st.delivery_failures, 0);  /* the injected failures reached guardd */
    /* the graceful stop delivers and commits everything */
    ck_assert_int_eq(member_stop(&a, 15000), 0);
    check_committed(bs, "faults");

    readers_close(readers);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
    unlink(conf_path);
}
END_TEST

/* Output topics without a leader: nothing guardd produces can be delivered
 * (leader -1) until they get one again (leader 1). */
static void set_output_leaders(int32_t broker) {
    for (int t = 1; t < 4; t++)
        for (int part = 0; part < PARTS; part++)
            ck_assert_int_eq(mockbroker_partition_set_leader(mb, topics[t], part, broker), 0);
}

/* Waits until cond(stats of m) holds; fails naming what after timeout_s. */
static void wait_stats(Member *m, int (*cond)(const PipelineStats *), int timeout_s,
                       const char *what) {
    PipelineStats st;
    for (int t = 0; t < timeout_s * 10; t++) {
        pipeline_stats(m->p, &st);
        if (cond(&st)) return;
        usleep(100000);
    }
    ck_abort_msg("%s: not within %d s (assigned %d, paused %d of them, consumed %ld)", what,
                 timeout_s, st.assigned, st.paused_partitions, st.consumed);
}

static int all_paused(const PipelineStats *st) {
    return st->paused && st->assigned == PARTS && st->paused_partitions == PARTS;
}
static int has_partitions(const PipelineStats *st) { return st->assigned > 0; }
static int owns_all_unpaused(const PipelineStats *st) {
    return st->assigned == PARTS && !st->paused && st->paused_partitions == 0;
}

/* Member A pauses its partitions (its outputs cannot be delivered, so acks
 * stop), B joins the group (A's partitions are revoked while paused, A gets
 * half of them back), the outputs recover, B leaves (A gets all of them
 * back). librdkafka keeps a partition's paused state across re-assignment:
 * unless A resumes what it paused, it never reads those partitions again.
 * Every input must get its output, and the paused count must say so. */
START_TEST(test_resume_after_rebalance) {
    char err[512];
    const char *bs = cluster_start();
    write_config(bs, "rebalance");
    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    rd_kafka_t *readers[3];
    readers_open(readers, bs);
    set_output_leaders(-1);
    Member a, b;
    member_start(&a, bs);
    produce_wave(kp, 0, 80);
    wait_stats(&a, all_paused, 60, "A pausing all partitions");
    member_start(&b, bs);
    wait_stats(&b, has_partitions, 60, "B getting partitions");
    set_output_leaders(1);
    sleep(5);
    member_stop(&b, 15000);
    wait_stats(&a, owns_all_unpaused, 60, "A owning all partitions, unpaused");
    produce_wave(kp, 80, 20);
    wait_all_seen(readers, 90);
    PipelineStats st;
    pipeline_stats(a.p, &st);
    ck_assert_int_eq(st.paused_partitions, 0);
    ck_assert_int_eq(member_stop(&a, 15000), 0);
    check_committed(bs, "rebalance");
    readers_close(readers);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
}
END_TEST

/* Sends one record to partition 0 (key NULL: null key; "" + 0: empty key). */
static void send_p0(KafkaProducer *kp, const void *key, size_t keylen, const KafkaHeader *h,
                    int nh, const void *val, size_t len) {
    char err[256];
    ck_assert_msg(kafka_producer_send(kp, "in", 0, key, keylen, val, len, h, nh, err,
                                      sizeof err) == 0, "%s", err);
}

static void *filled(size_t n, int byte) {
    char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    memset(b, byte, n);
    return b;
}

/* The first output of input in/0/off: on topic, with this key (null or
 * keylen bytes); for the DLQ also the error code and a word of its message. */
static void expect_out(int off, const char *topic, int key_null, size_t keylen,
                       const char *code, const char *msg_word) {
    Output *o = &first_out[off];
    ck_assert_msg(o->value != NULL, "in/0/%d: no output", off);
    ck_assert_msg(!strcmp(o->topic, topic), "in/0/%d: on %s, want %s", off, o->topic, topic);
    ck_assert_msg(o->key_null == key_null && (key_null || o->keylen == keylen),
                  "in/0/%d: key %s of %zu bytes, want %s of %zu", off,
                  o->key_null ? "null" : "set", o->keylen, key_null ? "null" : "set", keylen);
    if (!code) return;
    json_t *e = json_object_get(o->value, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    ck_assert_msg(c && !strcmp(c, code), "in/0/%d: error %s, want %s", off, c ? c : "-", code);
    ck_assert_msg(msg && strstr(msg, msg_word), "in/0/%d: message '%s' lacks '%s'", off,
                  msg ? msg : "-", msg_word);
}

/* Length of the DLQ record's payload (bytes, from its base64 text). */
static size_t dlq_payload_len(int off) {
    const char *b64 = json_string_value(json_object_get(first_out[off].value, "payload"));
    size_t n = b64 ? strlen(b64) : 0;
    return n / 4 * 3 - (n && b64[n - 1] == '=') - (n > 1 && b64[n - 2] == '=');
}

/* Keys kept exactly (empty is not null), and outputs that would pass
 * message.max.bytes (100000 here) because of the key or the headers: each
 * input still gets exactly one deliverable output, and the partition goes
 * on (the last record's verdict arrives, everything is committed). */
START_TEST(test_keys_and_oversized_outputs) {
    char err[512];
    const char *bs = cluster_start();
    write_config(bs, "keys");
    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    rd_kafka_t *readers[3];
    readers_open(readers, bs);
    Member a;
    member_start(&a, bs);
    size_t len;
    void *ev = valid_event(1, &len);
    char *bigkey = filled(99500, 'K'), *junk = filled(20000, 0xc1);
    KafkaHeader trace = {"traceparent", filled(99500, 't'), 99500};
    send_p0(kp, "", 0, NULL, 0, ev, len);                  /* 0: empty key */
    send_p0(kp, NULL, 0, NULL, 0, ev, len);                /* 1: null key */
    send_p0(kp, "", 0, NULL, 0, "\x93", 1);                /* 2: empty key, invalid */
    send_p0(kp, bigkey, 99500, NULL, 0, ev, len);          /* 3: key too big for a verdict */
    send_p0(kp, "t", 1, &trace, 1, ev, len);               /* 4: header too big */
    send_p0(kp, bigkey, 96000, NULL, 0, junk, 5000);       /* 5: invalid, key too big */
    send_p0(kp, bigkey, 60000, NULL, 0, ev, len);          /* 6: big key that fits */
    send_p0(kp, bigkey, 90000, NULL, 0, junk, 20000);      /* 7: key fits, payload cut */
    send_p0(kp, "k", 1, NULL, 0, ev, len);                 /* 8: the partition goes on */
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "%s", err);
    wait_all_seen(readers, 60);
    expect_out(0, "deny", 0, 0, NULL, NULL);
    expect_out(1, "deny", 1, 0, NULL, NULL);
    expect_out(2, "dlq", 0, 0, NULL, NULL);
    expect_out(3, "dlq", 1, 0, "output_too_large", "key (99500 bytes)");
    expect_out(4, "dlq", 0, 1, "output_too_large", "left out to fit: headers");
    ck_assert_int_eq(first_out[4].traceparent_len, -1);
    expect_out(5, "dlq", 1, 0, "bad_msgpack", "key (96000 bytes)");
    ck_assert_uint_eq(dlq_payload_len(5), 5000);
    expect_out(6, "deny", 0, 60000, NULL, NULL);
    expect_out(7, "dlq", 0, 90000, "bad_msgpack", "truncated");
    ck_assert_uint_gt(dlq_payload_len(7), 0);
    ck_assert_uint_lt(dlq_payload_len(7), 20000);
    expect_out(8, "deny", 0, 1, NULL, NULL);
    ck_assert_int_eq(member_stop(&a, 15000), 0);
    check_committed(bs, "keys");
    free(ev); free(bigkey); free(junk); free((void *)trace.value);
    readers_close(readers);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
}
END_TEST

/* Lines of the log file at path containing all of the given words. */
static int count_lines(const char *path, const char *w1, const char *w2) {
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, w1) && strstr(line, w2);
    fclose(f);
    return n;
}

static int outputs_failing(const PipelineStats *st) { return st->outputs_failing > 0; }
static int outputs_fine(const PipelineStats *st) { return st->outputs_failing == 0; }

/* The deny topic is missing (the cluster answers UNKNOWN_TOPIC_OR_PART):
 * guardd reports not-ready while its verdicts cannot be delivered, warns
 * about it once per topic and interval (with the count it held back) instead
 * of once per record and retry, and delivers everything once the topic is
 * there. */
START_TEST(test_missing_output_topic) {
    char err[512], log_path[128];
    const char *bs = cluster_start();
    write_config_props(bs, "missing",
                       ",\n (\"topic.metadata.propagation.max.ms\", \"1000\"),\n"
                       " (\"topic.metadata.refresh.interval.ms\", \"1000\")");
    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    rd_kafka_t *readers[3];
    readers_open(readers, bs);
    ck_assert_int_eq(mockbroker_topic_set_error(mb, "deny", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART), 0);
    snprintf(log_path, sizeof log_path, "/tmp/check_pipeline_faults-%d.log", (int)getpid());
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    log_set_fd(fd);
    metrics_set_model_loaded(1);
    Member a;
    member_start(&a, bs);
    produce_wave(kp, 0, 40);
    wait_stats(&a, outputs_failing, 60, "deny reported failing");
    ck_assert_int_eq(metrics_ready(), 0);
    sleep(12);
    int warned = count_lines(log_path, "level=warn", "topic=deny");
    ck_assert_msg(warned >= 1 && warned <= 4, "%d warnings about topic deny in ~12 s", warned);
    ck_assert_int_eq(metrics_ready(), 0);
    ck_assert_int_eq(mockbroker_topic_set_error(mb, "deny", RD_KAFKA_RESP_ERR_NO_ERROR), 0);
    wait_all_seen(readers, 90);
    wait_stats(&a, outputs_fine, 30, "deny reported fine again");
    ck_assert_int_eq(metrics_ready(), 1);
    ck_assert_int_eq(count_lines(log_path, "event=output_recovered", "topic=deny"), 1);
    ck_assert_int_eq(member_stop(&a, 15000), 0);
    log_set_fd(-1);
    close(fd);
    unlink(log_path);
    check_committed(bs, "missing");
    readers_close(readers);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
}
END_TEST

static int batch_running(const PipelineStats *st) { return st->batch_running && st->consumed >= 2; }

/* SIGTERM while the engine is on a long prompt (tens of seconds here; up to
 * hours for 65,536 tokens of the 1B): the stop abandons the batch at a layer
 * boundary once its classifying window (60% of the timeout) is over, so it
 * returns within the timeout; the abandoned event gets no verdict and is not
 * committed, and the next member of the group classifies it: exactly one
 * verdict. Before, the stop waited for the batch to finish (systemd killed
 * the service at TimeoutStopSec) and its verdict came from the stopping
 * member. */
START_TEST(test_stop_abandons_long_batch) {
    char err[512];
    const char *bs = cluster_start();
    batch_conf = "batch = { max_events = 3; max_wait_ms = 5; max_tokens = 32768; };\n"
                 "limits = { max_prompt_tokens = 32768; };\n"
                 "health = { stall_seconds = 10; };\n";
    write_config(bs, "abandon");
    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    rd_kafka_t *readers[3];
    readers_open(readers, bs);
    Member a, b;
    member_start(&a, bs);
    size_t len;
    void *ev = valid_event(0, &len);
    send_p0(kp, "s", 1, NULL, 0, ev, len);                    /* in/0/0: short */
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "%s", err);
    for (int t = 0; t < 60 && !seen[0][0]; t++) read_outputs(readers, 1);
    ck_assert_msg(seen[0][0], "no verdict for the short event");
    /* in/0/1: about 25,000 tokens */
    ConversationEvent le = {0};
    size_t n = strlen("lorem ipsum dolor sit amet ") * 4500;
    char *text = malloc(n + 1);
    ck_assert_ptr_nonnull(text);
    for (size_t o = 0; o < n; o += 27) memcpy(text + o, "lorem ipsum dolor sit amet ", 27);
    text[n] = 0;
    le.id = "long";
    conversation_add(&le.conv, ROLE_USER, text);
    free(text);
    size_t llen;
    void *lbuf = event_encode(&le, &llen);
    conversation_free(&le.conv);
    ck_assert_ptr_nonnull(lbuf);
    send_p0(kp, "l", 1, NULL, 0, lbuf, llen);
    free(lbuf);
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "%s", err);
    wait_stats(&a, batch_running, 60, "A on the long event's batch");
    usleep(500000);
    PipelineStats st;
    pipeline_stats(a.p, &st);
    ck_assert_msg(st.batch_running, "the long batch ended within half a second: not long enough");
    double t0 = queue_now();
    ck_assert_int_eq(member_stop(&a, 2000), 1);      /* in/0/1 left uncommitted */
    double took = queue_now() - t0;
    /* 2 s of budget plus the layer in progress (well under a second, a few
     * under sanitizers on a loaded machine); the batch itself takes 10+ s */
    ck_assert_msg(took < 6.0, "stop took %.1f s", took);
    read_outputs(readers, 2);
    ck_assert_msg(!seen[0][1], "the stopping member produced a verdict for the long event");
    /* committed: the short event only */
    KafkaProp props[] = {{"group.id", "abandon"}};
    rd_kafka_conf_t *conf = kafka_conf_new(bs, props, 1, err, sizeof err);
    ck_assert_ptr_nonnull(conf);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    ck_assert_ptr_nonnull(rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "in", 0);
    ck_assert_int_eq(rd_kafka_committed(rk, l, 10000), 0);
    ck_assert_int_eq(l->elems[0].offset, 1);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    /* the next member re-reads it: one verdict in all, none repeated; its
     * batch outlasts health.stall_seconds (10 s here) while the engine
     * advances: neither the partition nor the engine may be called stalled */
    member_start(&b, bs);
    int max_stalled = 0, max_stuck = 0, running = 0;
    for (int t = 0; t < 300 && !seen[0][1]; t++) {
        read_outputs(readers, 1);
        pipeline_stats(b.p, &st);
        max_stalled = st.stalled > max_stalled ? st.stalled : max_stalled;
        max_stuck |= st.engine_stuck;
        running += st.batch_running;
    }
    printf("abandon: B's batch ran ~%d s (health.stall_seconds 10): stalled %d, engine stuck %d\n",
           running, max_stalled, max_stuck);
    ck_assert_msg(running >= 3, "B's batch ran only ~%d s", running);
    ck_assert_int_eq(max_stalled, 0);
    ck_assert_int_eq(max_stuck, 0);
    wait_all_seen(readers, 300);
    read_outputs(readers, 1);
    ck_assert_int_eq(seen_count[0][0], 1);
    ck_assert_int_eq(seen_count[0][1], 1);
    ck_assert_int_eq(member_stop(&b, 15000), 0);
    check_committed(bs, "abandon");
    free(ev);
    readers_close(readers);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
}
END_TEST

static int stalled_one(const PipelineStats *st) { return st->stalled == 1; }
static int not_stalled(const PipelineStats *st) { return st->stalled == 0 && st->consumed >= 8; }

/* The failure of issue "paused partitions never resumed", reproduced by
 * pausing in/0 in the client behind guardd's back: records wait on the
 * broker, guardd holds nothing and believes the partition resumed, so only
 * the broker offsets (statistics) show the work. After health.stall_seconds
 * /readyz must say 503 naming in/0, the gauge 1; resumed, it reads again
 * and the stall clears. The other partitions, idle, are never flagged. */
START_TEST(test_stall_detected_and_cleared) {
    char err[512], why[512];
    const char *bs = cluster_start();
    batch_conf = "batch = { max_events = 3; max_wait_ms = 5; queue_capacity = 4; };\n"
                 "health = { stall_seconds = 10; };\n";
    write_config_props(bs, "stall", ",\n (\"statistics.interval.ms\", \"1000\")");
    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    metrics_set_model_loaded(1);
    Member a;
    member_start(&a, bs);
    wait_stats(&a, owns_all_unpaused, 60, "A owning all partitions");
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "in", 0);
    ck_assert_int_eq(rd_kafka_pause_partitions(a.p->consumer, l), 0);
    size_t len;
    void *ev = valid_event(7, &len);
    for (int i = 0; i < 4; i++) send_p0(kp, "k", 1, NULL, 0, ev, len);
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "%s", err);
    double t0 = queue_now();
    wait_stats(&a, stalled_one, 60, "in/0 reported stalled");
    double after = queue_now() - t0;
    ck_assert_msg(after >= 9.0, "flagged after %.1f s, before health.stall_seconds", after);
    ck_assert_int_eq(metrics_ready(), 0);
    metrics_not_ready_reason(why, sizeof why);
    ck_assert_msg(strstr(why, "stalled") && strstr(why, "in/0") && !strstr(why, "in/1"), "%s", why);
    char *text = metrics_render();
    ck_assert_ptr_nonnull(strstr(text, "\nguardd_stalled_partitions 1\n"));
    free(text);
    /* resumed: the records are read and answered, the stall clears */
    ck_assert_int_eq(rd_kafka_resume_partitions(a.p->consumer, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    for (int i = 0; i < 4; i++) send_p0(kp, "k", 1, NULL, 0, ev, len);
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "%s", err);
    wait_stats(&a, not_stalled, 60, "in/0 read again, stall cleared");
    ck_assert_int_eq(metrics_ready(), 1);
    ck_assert_int_eq(member_stop(&a, 15000), 0);
    free(ev);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
}
END_TEST

static int consumer_stalled(const PipelineStats *st) { return st->consumer_stalled; }
static int consumer_back(const PipelineStats *st) { return !st->consumer_stalled && st->stalled == 0; }

/* WATCHDOG=1 datagrams queued on the test's notify socket (drained). */
static int keepalives(int sock) {
    char buf[512];
    int n = 0;
    ssize_t k;
    while ((k = recv(sock, buf, sizeof buf - 1, MSG_DONTWAIT)) >= 0) {
        buf[k] = 0;
        n += strstr(buf, "WATCHDOG=1") != NULL;
    }
    return n;
}

/* A consumer thread that stops coming round its loop (blocked through the
 * test fault file, as a hung callback or a deadlock would): the stall
 * watch, on its own thread, must report it after health.stall_seconds
 * (/readyz 503 naming the consumer, guardd_consumer_stalled 1), and the
 * inference thread, still running, must withhold systemd's keep-alives so
 * the watchdog restarts the service; unblocked, everything clears, the
 * keep-alives resume and the records sent meanwhile are answered. Before,
 * the watch ran on the consumer thread: blocked with it, it reported ready
 * forever, and the keep-alives never stopped. */
START_TEST(test_hung_consumer_reported) {
    char err[512], why[512], faults[128], sockpath[108];
    const char *bs = cluster_start();
    batch_conf = "batch = { max_events = 3; max_wait_ms = 5; queue_capacity = 4; };\n"
                 "health = { stall_seconds = 10; };\n";
    write_config(bs, "hung");
    snprintf(faults, sizeof faults, "/tmp/check_pipeline_faults-%d.faults", (int)getpid());
    unlink(faults);
    setenv("GUARDD_TEST_FAULTS", faults, 1);
    /* the service manager: a datagram socket; keep-alives every second */
    snprintf(sockpath, sizeof sockpath, "/tmp/check_pipeline_faults-%d.notify", (int)getpid());
    unlink(sockpath);
    int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(sock, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sockpath);
    ck_assert_int_eq(bind(sock, (struct sockaddr *)&sa, sizeof sa), 0);
    setenv("NOTIFY_SOCKET", sockpath, 1);
    setenv("WATCHDOG_USEC", "2000000", 1);
    unsetenv("WATCHDOG_PID");
    KafkaProducer *kp = kafka_producer_new(bs, NULL, 0, err, sizeof err);
    ck_assert_ptr_nonnull(kp);
    rd_kafka_t *readers[3];
    readers_open(readers, bs);
    metrics_set_model_loaded(1);
    Member a;
    member_start(&a, bs);
    wait_stats(&a, owns_all_unpaused, 60, "A owning all partitions");
    sleep(3);
    ck_assert_msg(metrics_ready(), "not ready before the fault");
    ck_assert_int_ge(keepalives(sock), 2);

    FILE *f = fopen(faults, "w");
    ck_assert_ptr_nonnull(f);
    /* not on the first line: the hook once cut the text at its first
     * newline and never saw a "block consumer" below it */
    fputs("# the consumer thread hangs\nblock consumer\n", f);
    fclose(f);
    size_t len;
    void *ev = valid_event(3, &len);
    for (int i = 0; i < 4; i++) send_p0(kp, "k", 1, NULL, 0, ev, len);
    ck_assert_msg(kafka_producer_flush(kp, 30000, err, sizeof err) == 0, "%s", err);
    double t0 = queue_now();
    wait_stats(&a, consumer_stalled, 60, "the blocked consumer reported stalled");
    double after = queue_now() - t0;
    ck_assert_msg(after >= 9.0, "flagged after %.1f s, before health.stall_seconds", after);
    ck_assert_int_eq(metrics_ready(), 0);
    metrics_not_ready_reason(why, sizeof why);
    printf("hung: flagged after %.1f s: %s", after, why);
    ck_assert_msg(strstr(why, "stalled: consumer: its poll loop has not come round"), "%s", why);
    char *text = metrics_render();
    ck_assert_ptr_nonnull(strstr(text, "\nguardd_consumer_stalled 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nguardd_ready 0\n"));
    free(text);
    /* no keep-alive while it stays blocked (one may have been in flight) */
    keepalives(sock);
    sleep(3);
    ck_assert_int_eq(keepalives(sock), 0);

    ck_assert_int_eq(unlink(faults), 0);
    wait_stats(&a, consumer_back, 30, "the consumer back, nothing stalled");
    ck_assert_int_eq(metrics_ready(), 1);
    text = metrics_render();
    ck_assert_ptr_nonnull(strstr(text, "\nguardd_consumer_stalled 0\n"));
    free(text);
    sleep(3);
    ck_assert_int_ge(keepalives(sock), 2);
    for (int t = 0; t < 60 && !(seen[0][0] && seen[0][1] && seen[0][2] && seen[0][3]); t++)
        read_outputs(readers, 1);
    for (int o = 0; o < 4; o++) ck_assert_msg(seen[0][o], "no output for in/0/%d", o);
    ck_assert_int_eq(member_stop(&a, 15000), 0);
    check_committed(bs, "hung");
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("GUARDD_TEST_FAULTS");
    close(sock);
    unlink(sockpath);
    free(ev);
    readers_close(readers);
    kafka_producer_destroy(kp);
    mockbroker_stop(mb);
}
END_TEST

int main(void) {
    if (!(model_dir = check_tiny_model())) return check_skip("no tiny model at $GUARDD_TINY_MODEL");
    Suite *s = suite_create("pipeline_faults");
    TCase *tc = check_case(s, "kafka", 240);
    tcase_add_test(tc, test_nothing_lost_under_faults);
    /* separate cases so CK_RUN_CASE=rebalance runs one alone */
    TCase *rb = check_case(s, "rebalance", 240);
    tcase_add_test(rb, test_resume_after_rebalance);
    TCase *keys = check_case(s, "keys", 240);
    tcase_add_test(keys, test_keys_and_oversized_outputs);
    TCase *outs = check_case(s, "outputs", 240);
    tcase_add_test(outs, test_missing_output_topic);
    TCase *stop = check_case(s, "abandon", 600);
    tcase_add_test(stop, test_stop_abandons_long_batch);
    TCase *stall = check_case(s, "stall", 240);
    tcase_add_test(stall, test_stall_detected_and_cleared);
    TCase *hung = check_case(s, "hung", 240);
    tcase_add_test(hung, test_hung_consumer_reported);
    return check_run(s);
}
