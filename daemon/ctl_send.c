/* ctl_send.c - guardctl send: produce conversation events (msgpack) to Kafka.
 *
 *   guardctl send --brokers B --topic T [--key K] [--header k=v]...
 *                 [--partition N] [--count N] [-X prop=value]... [--raw] [--dump] [TEXT]
 *
 * TEXT: one event {id, messages: [{role: "user", content: TEXT}]}.
 * No TEXT: conversation JSON on stdin, one per line (blank lines skipped).
 *   A line is an event object ({"id", "messages", "categories", "exclude",
 *   "metadata", "role", ...}) or a bare messages array. Objects are encoded
 *   faithfully, WITHOUT validation (tests need malformed events too): JSON
 *   string/integer/real/true/false/null/array/object become msgpack
 *   str/int/float64/bool/nil/array/map, keys in their JSON order. A missing
 *   "id" is generated (random, UUID-shaped).
 * --raw: stdin bytes are sent as-is as ONE record (malformed-input tests).
 * --count N: each record is sent N times; copies of an event whose id was
 *   given get ids "ID-1".."ID-N", generated ids are fresh for every copy.
 * --dump: write the encoded records to stdout instead of Kafka (no broker).
 *
 * Prints each queued event's id on stdout (one per line) and a summary on
 * stderr. Waits for every delivery report; exits 1 if any record was not
 * acknowledged (the summary says how many), 2 on a usage or input error.
 */
#define _GNU_SOURCE  /* asprintf */
#include <getopt.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "ctl.h"
#include "kafka_util.h"

#define SEND_MAX_INPUT (16u << 20)   /* one stdin line or --raw payload */
#define SEND_MAX_HEADERS 64
#define SEND_MAX_COUNT 10000000

typedef struct {
    const char *brokers, *topic, *key, *text;
    int32_t partition;
    long count;
    int raw, dump;
    KafkaHeader hdrs[SEND_MAX_HEADERS];
    int n_hdrs;
    KafkaProp *props; int n_props;
    KafkaProducer *prod;
    long sent;
} SendOpts;

/* ---- JSON -> msgpack ---- */

static void pack_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* jansson bounds nesting depth while parsing, so this recursion is bounded. */
static void pack_json(msgpack_packer *pk, json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k; json_t *v;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach(j, k, v) { pack_str(pk, k, strlen(k)); pack_json(pk, v); }
        break;
    }
    case JSON_ARRAY: {
        size_t i; json_t *v;
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, i, v) pack_json(pk, v);
        break;
    }
    case JSON_STRING: pack_str(pk, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    case JSON_NULL: msgpack_pack_nil(pk); break;
    }
}

/* 36-char UUID-v4-shaped random id. */
static void gen_id(char out[37]) {
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)rand();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
             b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* Normalizes one input to an event object (a bare array becomes its
 * "messages"); returns a new reference or NULL with msg set. */
static json_t *as_event(json_t *in, char *msg, size_t msglen) {
    if (json_is_array(in)) {
        json_t *ev = json_object();
        json_object_set(ev, "messages", in);
        return ev;
    }
    if (json_is_object(in)) return json_incref(in);
    snprintf(msg, msglen, "expected a JSON object or a messages array");
    return NULL;
}

/* ---- sending ---- */

static int emit(SendOpts *o, const void *buf, size_t len, const char *id) {
    char err[512];
    if (o->dump) {
        if (fwrite(buf, 1, len, stdout) != len) { perror("guardctl send: stdout"); return -1; }
    } else if (kafka_producer_send(o->prod, o->topic, o->partition, o->key,
                                   o->key ? strlen(o->key) : 0, buf, len,
                                   o->hdrs, o->n_hdrs, err, sizeof err) < 0) {
        fprintf(stderr, "guardctl send: %s\n", err);
        return -1;
    } else if (id) {
        printf("%s\n", id);
    }
    o->sent++;
    return 0;
}

/* Sends one event object count times (ids as described at the top). */
static int send_event(SendOpts *o, json_t *ev) {
    json_t *idj = json_object_get(ev, "id");
    int given = idj != NULL;
    char *base = json_is_string(idj) ? strdup(json_string_value(idj)) : NULL;
    int rc = 0;
    for (long i = 1; i <= o->count && rc == 0; i++) {
        char idbuf[64], *full = NULL;
        const char *id = NULL;
        if (!given || (base && o->count > 1)) {
            if (!given) { gen_id(idbuf); id = idbuf; }
            else if (asprintf(&full, "%s-%ld", base, i) >= 0) id = full;
            json_object_set_new(ev, "id", json_string(id ? id : ""));
        } else {
            id = base;  /* as given (may be a non-string: sent faithfully) */
        }
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_json(&pk, ev);
        rc = emit(o, sb.data, sb.size, id ? id : "(non-string id)");
        msgpack_sbuffer_destroy(&sb);
        free(full);
    }
    free(base);
    return rc;
}

static int send_text(SendOpts *o) {
    json_t *ev = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content", o->text);
    if (!ev) { fprintf(stderr, "guardctl send: TEXT is not valid UTF-8\n"); return 2; }
    int rc = send_event(o, ev);
    json_decref(ev);
    return rc ? 1 : 0;
}

/* Reads one line (with its '\n') into *buf, never holding more than max
 * bytes: returns its length, -1 at end of input, -2 if the line is longer
 * (getline would grow without limit on hostile input). */
static long read_line(FILE *f, char **buf, size_t *cap, size_t max) {
    size_t len = 0;
    for (;;) {
        if (*cap - len < 2) {
            if (*cap >= max + 2) return -2;
            size_t ncap = *cap ? *cap * 2 : 4096;
            if (ncap > max + 2) ncap = max + 2;
            char *nb = realloc(*buf, ncap);
            if (!nb) return -2;
            *buf = nb; *cap = ncap;
        }
        if (!fgets(*buf + len, (int)(*cap - len), f)) return len ? (long)len : -1;
        len += strlen(*buf + len);
        if (len && (*buf)[len - 1] == '\n') return (long)len;
    }
}

static int send_lines(SendOpts *o) {
    char *line = NULL;
    size_t cap = 0;
    long n, lineno = 0;
    int rc = 0;
    while (rc == 0 && (n = read_line(stdin, &line, &cap, SEND_MAX_INPUT)) != -1) {
        lineno++;
        if (n == -2) {
            fprintf(stderr, "guardctl send: stdin line %ld: longer than %u bytes\n", lineno, SEND_MAX_INPUT);
            rc = 2; break;
        }
        if (strspn(line, " \t\r\n") == (size_t)n) continue;
        json_error_t je;
        char msg[256];
        json_t *in = json_loadb(line, (size_t)n, 0, &je);
        json_t *ev = in ? as_event(in, msg, sizeof msg) : NULL;
        if (!in) snprintf(msg, sizeof msg, "%s (column %d)", je.text, je.column);
        if (!ev) { fprintf(stderr, "guardctl send: stdin line %ld: %s\n", lineno, msg); rc = 2; }
        else if (send_event(o, ev) < 0) rc = 1;
        json_decref(ev);
        json_decref(in);
    }
    free(line);
    return rc;
}

static int send_raw(SendOpts *o) {
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, stdin)) > 0) {
        len += got;
        if (len == cap) {
            if (cap >= SEND_MAX_INPUT) {
                fprintf(stderr, "guardctl send: --raw input longer than %u bytes\n", SEND_MAX_INPUT);
                free(buf); return 2;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb; cap *= 2;
        }
    }
    if (!buf) { fprintf(stderr, "guardctl send: out of memory\n"); return 1; }
    int rc = 0;
    for (long i = 0; i < o->count && rc == 0; i++) rc = emit(o, buf, len, NULL) ? 1 : 0;
    free(buf);
    return rc;
}

/* ---- options ---- */

static void send_usage(FILE *f) {
    fprintf(f, "usage: guardctl send --brokers B --topic T [--key K] [--header k=v]...\n"
               "         [--partition N] [--count N] [-X prop=value]... [--raw] [--dump] [TEXT]\n"
               "TEXT: one user message. Otherwise conversation JSON objects (or messages\n"
               "arrays) on stdin, one per line. --raw: stdin bytes as one record as-is.\n"
               "--dump: write the msgpack records to stdout instead of Kafka.\n");
}

static int add_header(SendOpts *o, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) { fprintf(stderr, "guardctl send: --header needs NAME=VALUE\n"); return -1; }
    if (o->n_hdrs >= SEND_MAX_HEADERS) { fprintf(stderr, "guardctl send: at most %d headers\n", SEND_MAX_HEADERS); return -1; }
    char *name = strndup(kv, (size_t)(eq - kv));
    if (!name) return -1;
    o->hdrs[o->n_hdrs++] = (KafkaHeader){name, eq + 1, strlen(eq + 1)};
    return 0;
}

static int parse_opts(SendOpts *o, int argc, char **argv) {
    static const struct option opts[] = {
        {"brokers", required_argument, 0, 'b'}, {"topic", required_argument, 0, 't'},
        {"key", required_argument, 0, 'k'}, {"header", required_argument, 0, 'H'},
        {"partition", required_argument, 0, 'p'}, {"count", required_argument, 0, 'n'},
        {"raw", no_argument, 0, 'r'}, {"dump", no_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    char err[256], *end;
    int c;
    while ((c = getopt_long(argc, argv, "b:t:k:H:p:n:X:rdh", opts, NULL)) != -1) {
        switch (c) {
        case 'b': o->brokers = optarg; break;
        case 't': o->topic = optarg; break;
        case 'k': o->key = optarg; break;
        case 'H': if (add_header(o, optarg) < 0) return 2; break;
        case 'p': o->partition = (int32_t)strtol(optarg, &end, 10);
                  if (*end || !*optarg || o->partition < 0) { fprintf(stderr, "guardctl send: bad --partition\n"); return 2; }
                  break;
        case 'n': o->count = strtol(optarg, &end, 10);
                  if (*end || o->count < 1 || o->count > SEND_MAX_COUNT) { fprintf(stderr, "guardctl send: --count must be 1..%d\n", SEND_MAX_COUNT); return 2; }
                  break;
        case 'X': if (kafka_prop_parse(optarg, &o->props, &o->n_props, err, sizeof err) < 0) { fprintf(stderr, "guardctl send: %s\n", err); return 2; } break;
        case 'r': o->raw = 1; break;
        case 'd': o->dump = 1; break;
        case 'h': send_usage(stdout); return 0;
        default: send_usage(stderr); return 2;
        }
    }
    if (optind < argc) o->text = argv[optind++];
    if (optind < argc) { fprintf(stderr, "guardctl send: one TEXT argument at most (quote it)\n"); return 2; }
    if (!o->dump && (!o->brokers || !o->topic)) { fprintf(stderr, "guardctl send: --brokers and --topic are required\n"); return 2; }
    if (o->raw && o->text) { fprintf(stderr, "guardctl send: --raw reads stdin; no TEXT with it\n"); return 2; }
    return -1;  /* go on */
}

int ctl_send(int argc, char **argv) {
    SendOpts o = {.partition = KAFKA_ANY_PARTITION, .count = 1};
    int rc = parse_opts(&o, argc, argv);
    char err[512];
    if (rc < 0 && !o.dump) {
        o.prod = kafka_producer_new(o.brokers, o.props, o.n_props, err, sizeof err);
        if (!o.prod) { fprintf(stderr, "guardctl send: %s\n", err); rc = 1; }
    }
    if (rc < 0) {
        rc = o.raw ? send_raw(&o) : o.text ? send_text(&o) : send_lines(&o);
        fflush(stdout);
    }
    if (o.prod) {
        /* Flush even after an error so what was queued is not silently lost. */
        int failed = kafka_producer_flush(o.prod, 30000, err, sizeof err);
        if (failed) { fprintf(stderr, "guardctl send: %s\n", err); if (!rc) rc = 1; }
        else fprintf(stderr, "guardctl send: %ld record(s) delivered to %s\n", o.sent, o.topic);
        kafka_producer_destroy(o.prod);
    }
    for (int i = 0; i < o.n_hdrs; i++) free((char *)o.hdrs[i].name);
    kafka_props_free(o.props, o.n_props);
    return rc;
}
