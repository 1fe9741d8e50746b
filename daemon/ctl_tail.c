/* ctl_tail.c - guardctl tail: print the records of a topic as JSON lines.
 *
 *   guardctl tail --brokers B --topic T [--count N] [--from-beginning | --from-end]
 *                 [--timeout-ms MS] [--group G] [-X prop=value]...
 *
 * Assigns every partition of T (no group join, nothing committed; --group
 * only sets group.id) starting at the beginning (default) or the end, and
 * prints one JSON object per record:
 *
 *   {"topic": "verdicts", "partition": 0, "offset": 12, "timestamp": 1700000000000,
 *    "key": "k1" | null | {"base64": "..."},
 *    "headers": {"name": "value" | null | {"base64": "..."}, ...},
 *    "value": <record>, "raw_base64": "..." (only when the value is not msgpack)}
 *
 * <record> is record_to_json() (event.h): our three schemas (conversation
 * event, verdict, DLQ record) or any other msgpack value, converted with a
 * bounded reader; bytes that are not one complete msgpack value give
 * "value": null plus "raw_base64" (the exact bytes). NUL bytes in strings and
 * keys are printed escaped (\u0000). A key or header value that is not UTF-8 is {"base64": "..."}; a
 * repeated header name keeps its last value. Timestamp: ms since epoch or -1.
 *
 * Stops after --count records (0 = no limit) or when --timeout-ms (default
 * 10000; 0 = none) has passed, or on SIGINT/SIGTERM. Exits 0, or 1 when fewer
 * than --count records arrived in time (and on Kafka errors), 2 on usage errors.
 */
#define _GNU_SOURCE  /* asprintf */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ctl.h"
#include "event.h"
#include "kafka_util.h"

static volatile sig_atomic_t tail_stop;
static void on_signal(int sig) { (void)sig; tail_stop = 1; }

/* ---- byte encodings ---- */

static json_t *base64_json(const void *data, size_t len) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out) return json_null();
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < len ? p[i + 2] : 0);
        *o++ = tbl[v >> 18 & 63];
        *o++ = tbl[v >> 12 & 63];
        *o++ = i + 1 < len ? tbl[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? tbl[v & 63] : '=';
    }
    *o = 0;
    json_t *j = json_string(out);
    free(out);
    return j;
}

/* A JSON string when the bytes are UTF-8 (jansson checks), else {"base64"}
 * (keys and header values are often text, so text stays readable). */
static json_t *bytes_json(const void *data, size_t len) {
    if (!data) return json_null();
    json_t *s = json_stringn(data, len);
    return s ? s : json_pack("{s:o}", "base64", base64_json(data, len));
}

/* The record's value as JSON (record_to_json: our schemas and any other
 * msgpack value), or NULL when the bytes are not one complete msgpack value. */
static json_t *value_json(const void *buf, size_t len) {
    if (!buf || !len) return NULL;
    /* as a value, not text parsed again: keys and strings may hold NUL bytes
     * (printed as \u0000), which jansson's parser refuses in keys */
    return record_to_json_value(buf, len);
}

static json_t *headers_json(const rd_kafka_message_t *m) {
    json_t *h = json_object();
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs)) return h;
    const char *name;
    const void *val;
    size_t sz;
    for (size_t i = 0; !rd_kafka_header_get_all(hdrs, i, &name, &val, &sz); i++)
        json_object_set_new(h, name, bytes_json(val, sz));
    return h;
}

static void print_record(const rd_kafka_message_t *m) {
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    json_t *o = json_pack("{s:s,s:i,s:I,s:I}", "topic", rd_kafka_topic_name(m->rkt),
                          "partition", (int)m->partition, "offset", (json_int_t)m->offset,
                          "timestamp", (json_int_t)ts);
    json_object_set_new(o, "key", bytes_json(m->key, m->key_len));
    json_object_set_new(o, "headers", headers_json(m));
    json_t *v = value_json(m->payload, m->len);
    if (v) {
        json_object_set_new(o, "value", v);
    } else {
        json_object_set_new(o, "value", json_null());
        json_object_set_new(o, "raw_base64", base64_json(m->payload ? m->payload : "", m->len));
    }
    char *line = json_dumps(o, JSON_COMPACT);
    if (line) { fputs(line, stdout); fputc('\n', stdout); fflush(stdout); }
    free(line);
    json_decref(o);
}

/* ---- options and loop ---- */

typedef struct {
    const char *brokers, *topic, *group;
    long count, timeout_ms;
    int from_end;
    KafkaProp *props; int n_props;
} TailOpts;

static void tail_usage(FILE *f) {
    fprintf(f, "usage: guardctl tail --brokers B --topic T [--count N] [--from-beginning|--from-end]\n"
               "         [--timeout-ms MS] [--group G] [-X prop=value]...\n"
               "Prints each record as one JSON line: topic, partition, offset, timestamp,\n"
               "key, headers, value (decoded), raw_base64 (only for non-msgpack values).\n");
}

static int parse_long(const char *s, long lo, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo) return -1;
    *out = v;
    return 0;
}

static int tail_parse(TailOpts *o, int argc, char **argv) {
    static const struct option opts[] = {
        {"brokers", required_argument, 0, 'b'}, {"topic", required_argument, 0, 't'},
        {"count", required_argument, 0, 'n'}, {"timeout-ms", required_argument, 0, 'T'},
        {"from-beginning", no_argument, 0, 'B'}, {"from-end", no_argument, 0, 'E'},
        {"group", required_argument, 0, 'g'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    char err[256];
    int c;
    while ((c = getopt_long(argc, argv, "b:t:n:T:g:X:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': o->brokers = optarg; break;
        case 't': o->topic = optarg; break;
        case 'n': if (parse_long(optarg, 0, &o->count)) { fprintf(stderr, "guardctl tail: bad --count\n"); return 2; } break;
        case 'T': if (parse_long(optarg, 0, &o->timeout_ms)) { fprintf(stderr, "guardctl tail: bad --timeout-ms\n"); return 2; } break;
        case 'B': o->from_end = 0; break;
        case 'E': o->from_end = 1; break;
        case 'g': o->group = optarg; break;
        case 'X': if (kafka_prop_parse(optarg, &o->props, &o->n_props, err, sizeof err) < 0) { fprintf(stderr, "guardctl tail: %s\n", err); return 2; } break;
        case 'h': tail_usage(stdout); return 0;
        default: tail_usage(stderr); return 2;
        }
    }
    if (optind < argc) { fprintf(stderr, "guardctl tail: unexpected argument '%s'\n", argv[optind]); return 2; }
    if (!o->brokers || !o->topic) { fprintf(stderr, "guardctl tail: --brokers and --topic are required\n"); return 2; }
    if (o->group) {  /* just another property, appended so it wins */
        char *kv = NULL;
        int bad = asprintf(&kv, "group.id=%s", o->group) < 0 ||
                  kafka_prop_parse(kv, &o->props, &o->n_props, err, sizeof err) < 0;
        free(kv);
        if (bad) { fprintf(stderr, "guardctl tail: bad --group\n"); return 2; }
    }
    return -1;
}

static long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int tail_loop(const TailOpts *o, rd_kafka_t *rk) {
    long seen = 0, deadline = o->timeout_ms ? mono_ms() + o->timeout_ms : 0;
    while (!tail_stop && (!o->count || seen < o->count) && (!deadline || mono_ms() < deadline)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (!m->err) { print_record(m); seen++; }
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "guardctl tail: %s\n", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    if (o->count && seen < o->count) {
        fprintf(stderr, "guardctl tail: %ld of %ld record(s) before the timeout\n", seen, o->count);
        return 1;
    }
    return 0;
}

int ctl_tail(int argc, char **argv) {
    TailOpts o = {.timeout_ms = 10000};
    int rc = tail_parse(&o, argc, argv);
    if (rc < 0) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        char err[512];
        int wait = o.timeout_ms && o.timeout_ms < 10000 ? (int)o.timeout_ms : 10000;
        rd_kafka_t *rk = kafka_reader_new(o.brokers, o.props, o.n_props, o.topic,
                                          o.from_end ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING,
                                          wait, err, sizeof err);
        if (!rk) { fprintf(stderr, "guardctl tail: %s\n", err); rc = 1; }
        else { rc = tail_loop(&o, rk); kafka_reader_destroy(rk); }
    }
    kafka_props_free(o.props, o.n_props);
    return rc;
}
