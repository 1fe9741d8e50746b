/* settings.c - loads and validates guardd's libconfig file (see settings.h and
 * the commented etc/guardd.conf, which documents every setting).
 *
 * How it works: settings_defaults() fills every field with an owned default;
 * settings_load() parses the file with libconfig, then walks it group by group.
 * Each group's members are first checked against the list of known names (a
 * typo is an error that names its line, never silently ignored), then each
 * known setting is type- and range-checked and copied over its default, and
 * finally cross-setting rules are checked. The first problem stops the load
 * and is reported as "FILE:LINE: SETTING: message", SETTING being the dotted
 * path (with [i] for list elements).
 */
#include "settings.h"
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "classifier.h"
#include "kafka_util.h"
#include "prompt.h"

/* ---- small owned-string helpers ---------------------------------------- */

static char *xstrdup(const char *s) {
    char *d = strdup(s ? s : "");
    if (!d) { perror("guardd: out of memory"); abort(); }
    return d;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) { perror("guardd: out of memory"); abort(); }
    return p;
}

static void set_str(char **dst, const char *v) {
    free(*dst);
    *dst = xstrdup(v);
}

static void free_strv(char ***v, int *n) {
    for (int i = 0; i < *n; i++) free((*v)[i]);
    free(*v);
    *v = NULL;
    *n = 0;
}

static void free_categories(CategoryList *l) {
    for (int i = 0; i < l->n; i++) { free(l->items[i].code); free(l->items[i].name); }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void free_props(Settings *s) {
    for (int i = 0; i < s->n_props; i++) { free(s->props[i].key); free(s->props[i].value); }
    free(s->props);
    s->props = NULL;
    s->n_props = 0;
}

/* ---- defaults ------------------------------------------------------------ */

void settings_defaults(Settings *s) {
    memset(s, 0, sizeof *s);
    s->brokers = xstrdup("embedded");
    s->group_id = xstrdup("guardd");
    s->input_topics = xcalloc(1, sizeof(char *));
    s->input_topics[0] = xstrdup("conversations");
    s->n_input_topics = 1;
    s->allow_topic = xstrdup("verdicts.allow");
    s->deny_topic = xstrdup("verdicts.deny");
    s->dlq_topic = xstrdup("conversations.dlq");
    s->delivery = DELIVERY_AT_LEAST_ONCE;
    s->embedded_partitions = 3;
    static const char *const hdrs[] = {"traceparent", "tracestate", "b3"};   /* W3C + Zipkin tracing */
    s->keep_headers = xcalloc(3, sizeof(char *));
    for (int i = 0; i < 3; i++) s->keep_headers[i] = xstrdup(hdrs[i]);
    s->n_keep_headers = 3;
    s->model_path = xstrdup("/var/lib/guardd/llama-guard-3-1b");
    s->threads = 0;
    s->threshold = -1.0f;
    s->batch_max_events = 16;
    s->batch_max_tokens = 4096;
    s->batch_max_wait_ms = 50;
    s->queue_capacity = 256;
    s->max_event_bytes = 1u << 20;
    s->max_messages = 64;
    s->max_message_bytes = 256u << 10;
    s->max_prompt_tokens = 4096;
    s->cache_max_bytes = 1LL << 30;
    s->metrics_listen = xstrdup("127.0.0.1:9464");
    s->log_level = LOG_INFO;
    s->shutdown_timeout_ms = 10000;
    s->watchdog = 1;
    s->stall_seconds = 300;
}

void settings_free(Settings *s) {
    if (!s) return;
    free(s->brokers); free(s->group_id);
    free_strv(&s->input_topics, &s->n_input_topics);
    free(s->allow_topic); free(s->deny_topic); free(s->dlq_topic);
    free_props(s);
    free_strv(&s->keep_headers, &s->n_keep_headers);
    free(s->model_path); free(s->tokenizer_path); free(s->blis_arch);
    free_categories(&s->categories);
    free_strv(&s->exclude, &s->n_exclude);
    free(s->metrics_listen);
    memset(s, 0, sizeof *s);
}

/* ---- secrets ----------------------------------------------------------- */

/* Redacting too much is harmless, leaking a credential into a log is not, so
 * any name that mentions a password/secret/credential counts. */
int settings_is_secret(const char *key) {
    if (!key) return 0;
    char low[256];
    size_t n = strlen(key);
    if (n >= sizeof low) n = sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)key[i]);
    low[n] = 0;
    static const char *const words[] = {"password", "secret", "credential"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(low, words[i])) return 1;
    return !strcmp(low, "sasl.oauthbearer.config") || !strcmp(low, "ssl.key.pem") ||
           !strcmp(low, "sasl.jaas.config");
}

const char *settings_redacted(const KafkaProp *p) {
    if (!p || !p->value) return "";
    return settings_is_secret(p->key) ? "***" : p->value;
}

/* ---- error reporting ----------------------------------------------------- */

typedef struct {
    const char *file;
    char *err;
    size_t errlen;
} Ctx;

/* Dotted path of a setting, list elements as [i]: "policy.categories[2]". */
static void setting_path(const config_setting_t *st, char *buf, size_t n) {
    const config_setting_t *parent = config_setting_parent(st);
    buf[0] = 0;
    if (!parent) return;                       /* the root has no name */
    setting_path(parent, buf, n);
    size_t len = strlen(buf);
    const char *name = config_setting_name(st);
    if (name)
        snprintf(buf + len, n - len, "%s%s", len ? "." : "", name);
    else
        snprintf(buf + len, n - len, "[%d]", config_setting_index(st));
}

/* "FILE:LINE: PATH: message"; st may be NULL for a default value. Returns -1. */
static int fail(Ctx *c, const config_setting_t *st, const char *path, const char *fmt, ...) {
    char msg[512], where[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (st && !path) { setting_path(st, where, sizeof where); path = where; }
    if (!c->err || !c->errlen) return -1;
    const char *file = st && config_setting_source_file(st) ? config_setting_source_file(st) : c->file;
    if (st)
        snprintf(c->err, c->errlen, "%s:%u: %s: %s", file, config_setting_source_line(st),
                 path ? path : "", msg);
    else
        snprintf(c->err, c->errlen, "%s: %s: %s", file, path ? path : "", msg);
    return -1;
}

/* ---- typed getters: absent = keep the default ---------------------------- */

static const char *type_name(int t) {
    switch (t) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT: case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "something else";
    }
}

static int wrong_type(Ctx *c, const config_setting_t *st, const char *want) {
    return fail(c, st, NULL, "expected %s, got %s", want, type_name(config_setting_type(st)));
}

static int get_string(Ctx *c, const config_setting_t *g, const char *name, char **dst,
                      int allow_empty) {
    const config_setting_t *st = config_setting_get_member(g, name);
    if (!st) return 0;
    if (config_setting_type(st) != CONFIG_TYPE_STRING) return wrong_type(c, st, "a string");
    const char *v = config_setting_get_string(st);
    if (!allow_empty && !*v) return fail(c, st, NULL, "must not be empty");
    set_str(dst, v);
    return 0;
}

static int is_int_type(const config_setting_t *st) {
    return config_setting_type(st) == CONFIG_TYPE_INT || config_setting_type(st) == CONFIG_TYPE_INT64;
}

static int get_ll(Ctx *c, const config_setting_t *g, const char *name, long long lo,
                  long long hi, long long *out, const config_setting_t **where) {
    const config_setting_t *st = config_setting_get_member(g, name);
    if (where) *where = st;
    if (!st) return 1;
    if (!is_int_type(st)) return wrong_type(c, st, "an integer");
    long long v = config_setting_get_int64(st);
    if (v < lo || v > hi) return fail(c, st, NULL, "%lld is out of range [%lld, %lld]", v, lo, hi);
    *out = v;
    return 0;
}

static int get_int(Ctx *c, const config_setting_t *g, const char *name, long long lo,
                   long long hi, int *dst) {
    long long v = 0;
    int r = get_ll(c, g, name, lo, hi, &v, NULL);
    if (r == 0) *dst = (int)v;
    return r < 0 ? -1 : 0;
}

static int get_size(Ctx *c, const config_setting_t *g, const char *name, long long lo,
                    long long hi, size_t *dst) {
    long long v = 0;
    int r = get_ll(c, g, name, lo, hi, &v, NULL);
    if (r == 0) *dst = (size_t)v;
    return r < 0 ? -1 : 0;
}

static int get_bool(Ctx *c, const config_setting_t *g, const char *name, int *dst) {
    const config_setting_t *st = config_setting_get_member(g, name);
    if (!st) return 0;
    if (config_setting_type(st) != CONFIG_TYPE_BOOL) return wrong_type(c, st, "a boolean (true/false)");
    *dst = config_setting_get_bool(st);
    return 0;
}

/* A number written either way: "0.5" or "-1" (libconfig keeps them apart). */
static int get_number(Ctx *c, const config_setting_t *g, const char *name, double *out,
                      const config_setting_t **where) {
    const config_setting_t *st = config_setting_get_member(g, name);
    *where = st;
    if (!st) return 1;
    if (config_setting_type(st) == CONFIG_TYPE_FLOAT) *out = config_setting_get_float(st);
    else if (is_int_type(st)) *out = (double)config_setting_get_int64(st);
    else return wrong_type(c, st, "a number");
    return 0;
}

static int is_list(const config_setting_t *st) {
    return config_setting_type(st) == CONFIG_TYPE_ARRAY || config_setting_type(st) == CONFIG_TYPE_LIST;
}

/* Array or list of non-empty strings; each element checked by ok() if given. */
static int get_strv(Ctx *c, const config_setting_t *g, const char *name, int min_n,
                    int (*ok)(Ctx *, const config_setting_t *), char ***dst, int *n) {
    const config_setting_t *st = config_setting_get_member(g, name);
    if (!st) return 0;
    if (!is_list(st)) return wrong_type(c, st, "an array of strings, e.g. [\"a\", \"b\"]");
    int len = config_setting_length(st);
    if (len < min_n) return fail(c, st, NULL, "needs at least %d entr%s", min_n, min_n == 1 ? "y" : "ies");
    for (int i = 0; i < len; i++) {
        const config_setting_t *e = config_setting_get_elem(st, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) return wrong_type(c, e, "a string");
        if (!*config_setting_get_string(e)) return fail(c, e, NULL, "must not be empty");
        if (ok && ok(c, e) < 0) return -1;
    }
    free_strv(dst, n);
    *dst = xcalloc((size_t)len, sizeof(char *));
    for (int i = 0; i < len; i++)
        (*dst)[i] = xstrdup(config_setting_get_string(config_setting_get_elem(st, (unsigned)i)));
    *n = len;
    return 0;
}

/* ---- unknown-name detection ---------------------------------------------- */

/* Levenshtein distance, capped: only used to suggest a fix for a typo. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int check_members(Ctx *c, const config_setting_t *g, const char *const *known) {
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        const char *near = NULL;
        int found = 0, best = 3;       /* suggest only names at most 2 edits away */
        for (const char *const *k = known; *k; k++) {
            if (!strcmp(*k, name)) { found = 1; break; }
            int dist = edit_distance(*k, name);
            if (dist < best) { best = dist; near = *k; }
        }
        if (found) continue;
        if (near) return fail(c, m, NULL, "unknown setting (did you mean \"%s\"?)", near);
        return fail(c, m, NULL, "unknown setting");
    }
    return 0;
}

/* A top-level section: absent is fine (all defaults), anything but a group is not. */
static int section(Ctx *c, const config_t *cfg, const char *name, const char *const *known,
                   const config_setting_t **out) {
    const config_setting_t *g = config_setting_get_member(config_root_setting(cfg), name);
    *out = g;
    if (!g) return 0;
    if (config_setting_type(g) != CONFIG_TYPE_GROUP)
        return wrong_type(c, g, "a group: name = { ... };");
    return check_members(c, g, known);
}

/* ---- value syntax checks --------------------------------------------------- */

/* Kafka's legal topic names: [A-Za-z0-9._-]{1,249}. */
static int topic_ok(Ctx *c, const config_setting_t *st) {
    const char *t = config_setting_get_string(st);
    size_t n = strlen(t);
    if (n > 249) return fail(c, st, NULL, "topic name longer than 249 characters");
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && t[i] != '.' && t[i] != '_' && t[i] != '-')
            return fail(c, st, NULL, "\"%s\" is not a legal topic name (letters, digits, '.', '_', '-')", t);
    if (!strcmp(t, ".") || !strcmp(t, "..")) return fail(c, st, NULL, "\"%s\" is not a legal topic name", t);
    return 0;
}

static int get_topic(Ctx *c, const config_setting_t *g, const char *name, char **dst) {
    const config_setting_t *st = config_setting_get_member(g, name);
    if (get_string(c, g, name, dst, 0) < 0) return -1;
    return st ? topic_ok(c, st) : 0;
}

static int header_ok(Ctx *c, const config_setting_t *st) {
    for (const char *p = config_setting_get_string(st); *p; p++)
        if ((unsigned char)*p <= ' ' || *p == ':' || (unsigned char)*p == 0x7f)
            return fail(c, st, NULL, "header names may not contain spaces, ':' or control characters");
    return 0;
}

/* "HOST:PORT", ":PORT" or "[V6ADDR]:PORT", port 0..65535 (0 = any free port). */
static int settings_listen_ok(const char *s) {
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close == s + 1 || close[1] != ':') return 0;
        for (const char *p = s + 1; p < close; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.') return 0;
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return 0;
        for (const char *p = s; p < colon; p++)
            if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-') return 0;
    }
    const char *port = colon + 1;
    if (!*port || strlen(port) > 5) return 0;
    for (const char *p = port; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return atol(port) <= 65535;
}

/* BLIS 0.9 configuration names (arch_t order) or the enum number itself. */
static int blis_arch_ok(const char *a) {
    static const char *const names[] = {"auto", "skx", "knl", "knc", "haswell", "sandybridge",
        "penryn", "zen3", "zen2", "zen", "excavator", "steamroller", "piledriver", "bulldozer",
        "thunderx2", "cortexa57", "cortexa53", "cortexa15", "cortexa9", "a64fx", "firestorm",
        "power10", "power9", "power7", "bgq", "generic", "zen4", "armsve", NULL};
    for (const char *const *n = names; *n; n++)
        if (!strcmp(a, *n)) return 1;
    if (!*a || strlen(a) > 2) return 0;
    for (const char *p = a; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return 1;
}

/* ---- sections ------------------------------------------------------------ */

/* Properties guardd sets itself: passing them through would fight its logic. */
static const char *managed_property(const char *k) {
    if (!strcmp(k, "bootstrap.servers") || !strcmp(k, "metadata.broker.list")) return "use kafka.brokers";
    if (!strcmp(k, "group.id")) return "use kafka.group_id";
    if (!strcmp(k, "enable.auto.commit") || !strcmp(k, "enable.auto.offset.store"))
        return "guardd commits offsets itself, after each verdict is delivered";
    if (!strcmp(k, "transactional.id")) return "exactly-once delivery is not supported";
    return NULL;
}

/* One ("name", value) pair; value a string, integer or boolean. */
static int read_prop(Ctx *c, const config_setting_t *pair, KafkaProp *out) {
    char num[32];
    if (!is_list(pair) || config_setting_length(pair) != 2)
        return fail(c, pair, NULL, "expected a (\"name\", \"value\") pair");
    const config_setting_t *k = config_setting_get_elem(pair, 0), *v = config_setting_get_elem(pair, 1);
    if (config_setting_type(k) != CONFIG_TYPE_STRING || !*config_setting_get_string(k))
        return fail(c, pair, NULL, "the property name must be a non-empty string");
    const char *key = config_setting_get_string(k), *why = managed_property(key);
    if (why) return fail(c, pair, NULL, "\"%s\" cannot be set here: %s", key, why);
    const char *val;
    if (config_setting_type(v) == CONFIG_TYPE_STRING) val = config_setting_get_string(v);
    else if (is_int_type(v)) { snprintf(num, sizeof num, "%lld", config_setting_get_int64(v)); val = num; }
    else if (config_setting_type(v) == CONFIG_TYPE_BOOL) val = config_setting_get_bool(v) ? "true" : "false";
    else return fail(c, pair, NULL, "the value of \"%s\" must be a string, integer or boolean", key);
    out->key = xstrdup(key);
    out->value = xstrdup(val);
    return 0;
}

static int read_props(Ctx *c, const config_setting_t *g, Settings *s) {
    const config_setting_t *st = config_setting_get_member(g, "properties");
    if (!st) return 0;
    if (!is_list(st))
        return wrong_type(c, st, "a list of (\"name\", \"value\") pairs (librdkafka names contain dots, "
                                 "which libconfig setting names cannot)");
    int n = config_setting_length(st);
    free_props(s);
    s->props = xcalloc((size_t)n, sizeof(KafkaProp));
    for (int i = 0; i < n; i++) {
        const config_setting_t *pair = config_setting_get_elem(st, (unsigned)i);
        if (read_prop(c, pair, &s->props[i]) < 0) return -1;
        s->n_props = i + 1;
        for (int j = 0; j < i; j++)
            if (!strcmp(s->props[j].key, s->props[i].key))
                return fail(c, pair, NULL, "property \"%s\" is set twice", s->props[i].key);
    }
    return 0;
}

/* ---- kafka properties, checked by librdkafka itself ---------------------- */

static void quiet_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    (void)rk; (void)level; (void)fac; (void)buf;
}

/* Property values (read back from librdkafka, so aliases such as
 * request.required.acks or topic.acks count) that break guardd's promise:
 * an input offset is committed only after the broker acknowledged its
 * output, and every input is read. The scratch configuration starts from
 * guardd's own values, so only a property can make one of these bad. */
static const struct { const char *key, *bad, *why; } delivery_rules[] = {
    {"acks", "0", "with acks=0 the broker never acknowledges a verdict, so guardd would commit "
                  "inputs whose verdicts may be lost (use \"all\", the default, or 1)"},
    {"delivery.report.only.error", "true", "guardd commits an input only when the delivery report "
                  "of its output arrives; without reports for successes nothing would be committed"},
    {"auto.offset.reset", "largest", "a new group, or an offset lost to retention, would skip "
                  "input without a verdict (use \"earliest\", guardd's default)"},
    {"auto.offset.reset", "error", "guardd needs a start position for a partition without a "
                  "committed offset (use \"earliest\", guardd's default)"},
};

/* Copies msg to out with every secret property value replaced by "***". */
static void redact_secrets(const Settings *s, const char *msg, char *out, size_t outlen) {
    size_t w = 0;
    while (*msg && w + 1 < outlen) {
        size_t skip = 0;
        for (int i = 0; i < s->n_props && !skip; i++)
            if (settings_is_secret(s->props[i].key) && *s->props[i].value &&
                !strncmp(msg, s->props[i].value, strlen(s->props[i].value)))
                skip = strlen(s->props[i].value);
        if (skip) {
            w += (size_t)snprintf(out + w, outlen - w, "***");
            if (w >= outlen) w = outlen - 1;
            msg += skip;
        } else {
            out[w++] = *msg++;
        }
    }
    out[w] = 0;
}

/* Builds a client of the given type from conf (a copy is taken) to catch
 * what librdkafka only checks then: combinations of properties, unreadable
 * certificate files, SASL mechanisms this build lacks. No broker is
 * contacted (no bootstrap servers are set). */
static int try_client(Ctx *c, const config_setting_t *list, const Settings *s,
                      const rd_kafka_conf_t *base, rd_kafka_type_t type) {
    char e[512], shown[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(base);
    rd_kafka_conf_set_log_cb(conf, quiet_log);
    if (type == RD_KAFKA_CONSUMER) {
        /* what guardd sets after the properties (pipeline.c) */
        const char *fixed[] = {"group.id", s->group_id, "enable.auto.commit", "false",
                               "enable.auto.offset.store", "false", NULL};
        for (int i = 0; fixed[i]; i += 2) rd_kafka_conf_set(conf, fixed[i], fixed[i + 1], e, sizeof e);
    }
    rd_kafka_t *rk = rd_kafka_new(type, conf, e, sizeof e);
    if (rk) {
        rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        return 0;
    }
    rd_kafka_conf_destroy(conf);
    redact_secrets(s, e, shown, sizeof shown);
    return fail(c, list, NULL, "librdkafka refuses these properties for the %s: %s",
                type == RD_KAFKA_PRODUCER ? "producer" : "consumer", shown);
}

/* Every property through rd_kafka_conf_set on a scratch configuration (an
 * unknown name or a bad value names its pair), the delivery rules above,
 * then a producer and a consumer built from it. Done at load time so that
 * --check-config and reload refuse what would otherwise stop the daemon
 * only after it loaded the model. Secret values are never shown. */
static int check_props(Ctx *c, const config_setting_t *g, const Settings *s) {
    if (s->n_props == 0) return 0;
    const config_setting_t *list = config_setting_get_member(g, "properties");
    char e[512];
    int rc = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "acks", "all", e, sizeof e);             /* guardd's defaults */
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", e, sizeof e);
    for (int i = 0; i < s->n_props && rc == 0; i++) {
        const config_setting_t *pair = config_setting_get_elem(list, (unsigned)i);
        if (kafka_conf_set(conf, s->props[i].key, s->props[i].value, e, sizeof e) < 0) {
            rc = fail(c, pair, NULL, "%s", e);
            break;
        }
        for (size_t r = 0; r < sizeof delivery_rules / sizeof delivery_rules[0] && rc == 0; r++) {
            char v[64];
            size_t vlen = sizeof v;
            if (rd_kafka_conf_get(conf, delivery_rules[r].key, v, &vlen) == RD_KAFKA_CONF_OK &&
                !strcmp(v, delivery_rules[r].bad))
                rc = fail(c, pair, NULL, "\"%s\" = \"%s\" is refused: %s", s->props[i].key,
                          s->props[i].value, delivery_rules[r].why);
        }
    }
    if (rc == 0) rc = try_client(c, list, s, conf, RD_KAFKA_PRODUCER);
    if (rc == 0) rc = try_client(c, list, s, conf, RD_KAFKA_CONSUMER);
    rd_kafka_conf_destroy(conf);
    return rc;
}

static int read_delivery(Ctx *c, const config_setting_t *g, Settings *s) {
    const config_setting_t *st = config_setting_get_member(g, "delivery");
    if (!st) return 0;
    if (config_setting_type(st) != CONFIG_TYPE_STRING) return wrong_type(c, st, "a string");
    const char *v = config_setting_get_string(st);
    if (!strcmp(v, "at-least-once")) { s->delivery = DELIVERY_AT_LEAST_ONCE; return 0; }
    if (!strcmp(v, "exactly-once"))
        return fail(c, st, NULL, "exactly-once is not supported; use \"at-least-once\" (verdicts "
                                 "carry a deterministic record_id so consumers can drop repeats)");
    return fail(c, st, NULL, "unknown delivery mode \"%s\" (only \"at-least-once\")", v);
}

static int read_kafka(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const known[] = {"brokers", "group_id", "input_topics", "allow_topic",
        "deny_topic", "dlq_topic", "delivery", "keep_headers", "embedded_partitions", "properties", NULL};
    const config_setting_t *g;
    if (section(c, cfg, "kafka", known, &g) < 0) return -1;
    if (!g) return 0;
    if (get_string(c, g, "brokers", &s->brokers, 0) < 0 || get_string(c, g, "group_id", &s->group_id, 0) < 0 ||
        get_strv(c, g, "input_topics", 1, topic_ok, &s->input_topics, &s->n_input_topics) < 0 ||
        get_topic(c, g, "allow_topic", &s->allow_topic) < 0 || get_topic(c, g, "deny_topic", &s->deny_topic) < 0 ||
        get_topic(c, g, "dlq_topic", &s->dlq_topic) < 0 || read_delivery(c, g, s) < 0 ||
        get_strv(c, g, "keep_headers", 0, header_ok, &s->keep_headers, &s->n_keep_headers) < 0 ||
        get_int(c, g, "embedded_partitions", 1, 256, &s->embedded_partitions) < 0)
        return -1;
    if (read_props(c, g, s) < 0) return -1;
    return check_props(c, g, s);
}

/* Output topics must not be inputs: guardd would consume its own verdicts. */
static int check_topic_loops(Ctx *c, const config_t *cfg, const Settings *s) {
    const char *outs[] = {s->allow_topic, s->deny_topic, s->dlq_topic};
    const char *names[] = {"allow_topic", "deny_topic", "dlq_topic"};
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < s->n_input_topics; i++)
            if (!strcmp(outs[o], s->input_topics[i])) {
                const config_setting_t *st = config_lookup(cfg, "kafka");
                st = st ? config_setting_get_member(st, names[o]) : NULL;
                char path[64];
                snprintf(path, sizeof path, "kafka.%s", names[o]);
                return fail(c, st, path, "\"%s\" is also an input topic: guardd would consume its own output",
                            outs[o]);
            }
    return 0;
}

static int read_prompt_format(Ctx *c, const config_setting_t *g, Settings *s) {
    char *v = NULL;
    if (get_string(c, g, "prompt_format", &v, 0) < 0) return -1;
    int bad = v && prompt_format_parse(v, &s->prompt_format) < 0;
    if (bad) fail(c, config_setting_get_member(g, "prompt_format"), NULL,
                  "unknown prompt format \"%s\" (\"auto\", \"llama-guard-3-1b\", \"llama-guard-3-8b\")", v);
    free(v);
    return bad ? -1 : 0;
}

static int read_model(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const known[] = {"path", "tokenizer", "threads", "blis_arch", "precision", "prompt_format", NULL};
    const config_setting_t *g;
    if (section(c, cfg, "model", known, &g) < 0) return -1;
    if (!g) return 0;
    if (get_string(c, g, "path", &s->model_path, 0) < 0 ||
        get_string(c, g, "tokenizer", &s->tokenizer_path, 1) < 0 ||
        get_int(c, g, "threads", 0, 1024, &s->threads) < 0 ||
        get_string(c, g, "blis_arch", &s->blis_arch, 1) < 0)
        return -1;
    if (s->tokenizer_path && !*s->tokenizer_path) { free(s->tokenizer_path); s->tokenizer_path = NULL; }
    if (s->blis_arch && !blis_arch_ok(s->blis_arch))
        return fail(c, config_setting_get_member(g, "blis_arch"), NULL,
                    "unknown BLIS configuration \"%s\" (\"auto\", a name such as skx, zen3, haswell, "
                    "generic, or the arch_t number)", s->blis_arch);
    if (s->blis_arch && (!*s->blis_arch || !strcmp(s->blis_arch, "auto"))) { free(s->blis_arch); s->blis_arch = NULL; }
    char *prec = NULL;
    if (get_string(c, g, "precision", &prec, 0) < 0) return -1;
    int bad = prec && precision_parse(prec, &s->precision) < 0;
    if (bad) fail(c, config_setting_get_member(g, "precision"), NULL,
                  "unknown precision \"%s\" (\"auto\", \"bf16\", \"int8\" or \"f32\")", prec);
    free(prec);
    return bad ? -1 : read_prompt_format(c, g, s);
}

/* Category codes appear in the prompt and are parsed back from the model's
 * output ("S1,S10"), so they must be short words without separators. */
static int code_ok(const char *code) {
    size_t n = strlen(code);
    if (n == 0 || n > 16) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)code[i]) && code[i] != '_' && code[i] != '-') return 0;
    return 1;
}

static int add_category(Ctx *c, const config_setting_t *where, CategoryList *l, const char *code,
                        const char *name) {
    if (!code_ok(code))
        return fail(c, where, NULL, "category code \"%s\" must be 1-16 letters, digits, '_' or '-'", code);
    if (!*name) return fail(c, where, NULL, "category %s has an empty name", code);
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->items[i].code, code)) return fail(c, where, NULL, "duplicate category code \"%s\"", code);
    l->items[l->n].code = xstrdup(code);
    l->items[l->n].name = xstrdup(name);
    l->n++;
    return 0;
}

/* Either a list of ("S1", "Violent Crimes.") pairs or a group S1 = "...";. */
static int read_categories(Ctx *c, const config_setting_t *g, Settings *s) {
    const config_setting_t *st = config_setting_get_member(g, "categories");
    if (!st) return 0;
    int grp = config_setting_type(st) == CONFIG_TYPE_GROUP;
    if (!grp && !is_list(st))
        return wrong_type(c, st, "a list of (\"S1\", \"Violent Crimes.\") pairs or a group S1 = \"...\";");
    int n = config_setting_length(st);
    if (n > PROMPT_MAX_CATEGORIES)   /* the prompt builder refuses longer lists */
        return fail(c, st, NULL, "%d entries; at most %d categories can be shown to the model",
                    n, PROMPT_MAX_CATEGORIES);
    free_categories(&s->categories);
    s->categories.items = xcalloc((size_t)n, sizeof(Category));
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(st, (unsigned)i);
        if (grp) {
            if (config_setting_type(e) != CONFIG_TYPE_STRING) return wrong_type(c, e, "a string (the category name)");
            if (add_category(c, e, &s->categories, config_setting_name(e), config_setting_get_string(e)) < 0)
                return -1;
            continue;
        }
        const config_setting_t *k = is_list(e) && config_setting_length(e) == 2 ? config_setting_get_elem(e, 0) : NULL;
        const config_setting_t *v = k ? config_setting_get_elem(e, 1) : NULL;
        if (!k || config_setting_type(k) != CONFIG_TYPE_STRING || config_setting_type(v) != CONFIG_TYPE_STRING)
            return fail(c, e, NULL, "expected a (\"CODE\", \"Name.\") pair of strings");
        if (add_category(c, e, &s->categories, config_setting_get_string(k), config_setting_get_string(v)) < 0)
            return -1;
    }
    return 0;
}

/* Without a configured list, the most default codes the model can have:
 * S1..S13 for the 1B, S1..S14 for the 8B or a family not known before the
 * model is opened (guardd then checks the exclusions against it). */
static int default_count(const Settings *s) {
    return s->prompt_format == PROMPT_FORMAT_LG3_1B ? 13 : 14;
}

/* Excluded codes must name a category in force (configured, else S1..S13/S14). */
static int check_exclude(Ctx *c, const config_setting_t *g, const Settings *s) {
    const config_setting_t *st = config_setting_get_member(g, "exclude");
    for (int i = 0; i < s->n_exclude; i++) {
        const char *x = s->exclude[i];
        int found = 0;
        if (s->categories.n > 0) {
            for (int j = 0; j < s->categories.n && !found; j++) found = !strcmp(s->categories.items[j].code, x);
        } else {
            char *end;
            long k = (x[0] == 'S' && isdigit((unsigned char)x[1])) ? strtol(x + 1, &end, 10) : 0;
            found = k >= 1 && k <= default_count(s) && !*end && x[1] != '0';
        }
        if (!found)
            return fail(c, config_setting_get_elem(st, (unsigned)i), NULL,
                        "excluded code \"%s\" is not one of the categories", x);
    }
    return 0;
}

static int read_policy(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const known[] = {"categories", "exclude", "threshold", "category_scores", NULL};
    const config_setting_t *g, *where;
    if (section(c, cfg, "policy", known, &g) < 0) return -1;
    if (!g) return 0;
    double t = 0;
    int r = get_number(c, g, "threshold", &t, &where);
    if (r < 0) return -1;
    if (r == 0 && !(t == -1.0 || (t >= 0.0 && t < 1.0)))
        return fail(c, where, NULL, "%g is out of range: use a probability in [0, 1) or -1 for the greedy verdict", t);
    if (r == 0) s->threshold = (float)t;
    if (read_categories(c, g, s) < 0 ||
        get_strv(c, g, "exclude", 0, NULL, &s->exclude, &s->n_exclude) < 0 ||
        get_bool(c, g, "category_scores", &s->category_scores) < 0)
        return -1;
    if (check_exclude(c, g, s) < 0) return -1;
    /* repeated codes are harmless (events accept them too): count distinct ones */
    int distinct = 0;
    for (int i = 0; i < s->n_exclude; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(s->exclude[i], s->exclude[j]);
        distinct += !seen;
    }
    if (distinct > 0 && distinct >= (s->categories.n ? s->categories.n : default_count(s)))
        return fail(c, config_setting_get_member(g, "exclude"), NULL, "excludes every category");
    return 0;
}

/* An integer setting the engine caps: above the cap, say so (not just "out of range"). */
static int get_engine_capped(Ctx *c, const config_setting_t *g, const char *name, long long lo,
                             long long cap, const char *what, int *dst) {
    long long v = 0;
    const config_setting_t *st;
    int r = get_ll(c, g, name, lo, INT32_MAX, &v, &st);
    if (r < 0) return -1;
    if (r > 0) return 0;
    if (v > cap)
        return fail(c, st, NULL, "%lld is above the engine's limit of %lld tokens %s", v, cap, what);
    *dst = (int)v;
    return 0;
}

static int read_batch(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const known[] = {"max_events", "max_tokens", "max_wait_ms", "queue_capacity", NULL};
    const config_setting_t *g;
    if (section(c, cfg, "batch", known, &g) < 0) return -1;
    if (!g) return 0;
    if (get_int(c, g, "max_events", 1, 4096, &s->batch_max_events) < 0 ||
        get_engine_capped(c, g, "max_tokens", 1, CLASSIFIER_MAX_BATCH_TOKENS, "per batch",
                          &s->batch_max_tokens) < 0 ||
        get_int(c, g, "max_wait_ms", 0, 60000, &s->batch_max_wait_ms) < 0 ||
        get_int(c, g, "queue_capacity", 1, 1 << 20, &s->queue_capacity) < 0)
        return -1;
    return 0;
}

static int read_cache(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const known[] = {"max_bytes", NULL};
    const config_setting_t *g;
    if (section(c, cfg, "cache", known, &g) < 0) return -1;
    if (!g) return 0;
    long long v = s->cache_max_bytes;
    if (get_ll(c, g, "max_bytes", 0, 1LL << 50, &v, NULL) < 0) return -1;
    s->cache_max_bytes = v;
    return 0;
}

static int read_limits(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const known[] = {"max_event_bytes", "max_messages", "max_message_bytes",
                                        "max_prompt_tokens", NULL};
    const config_setting_t *g;
    if (section(c, cfg, "limits", known, &g) < 0) return -1;
    if (!g) return 0;
    if (get_size(c, g, "max_event_bytes", 64, 256LL << 20, &s->max_event_bytes) < 0 ||
        get_int(c, g, "max_messages", 1, 100000, &s->max_messages) < 0 ||
        get_size(c, g, "max_message_bytes", 1, 256LL << 20, &s->max_message_bytes) < 0 ||
        get_engine_capped(c, g, "max_prompt_tokens", 16, CLASSIFIER_MAX_PROMPT_TOKENS, "per prompt",
                          &s->max_prompt_tokens) < 0)
        return -1;
    return 0;
}

/* Rules across sections, each blamed on the setting that is most likely wrong. */
static int check_cross(Ctx *c, const config_t *cfg, const Settings *s) {
    if (s->max_message_bytes > s->max_event_bytes) {
        const config_setting_t *st = config_lookup(cfg, "limits.max_message_bytes");
        return fail(c, st, "limits.max_message_bytes", "%zu is larger than limits.max_event_bytes (%zu)",
                    s->max_message_bytes, s->max_event_bytes);
    }
    if (s->max_prompt_tokens > s->batch_max_tokens) {
        const config_setting_t *st = config_lookup(cfg, "limits.max_prompt_tokens");
        const char *path = "limits.max_prompt_tokens";
        if (!st) { st = config_lookup(cfg, "batch.max_tokens"); path = "batch.max_tokens"; }
        return fail(c, st, path, "limits.max_prompt_tokens (%d) exceeds batch.max_tokens (%d): "
                    "such an event could never be batched", s->max_prompt_tokens, s->batch_max_tokens);
    }
    if (s->queue_capacity < s->batch_max_events) {
        const config_setting_t *st = config_lookup(cfg, "batch.queue_capacity");
        const char *path = "batch.queue_capacity";
        if (!st) { st = config_lookup(cfg, "batch.max_events"); path = "batch.max_events"; }
        return fail(c, st, path, "batch.queue_capacity (%d) is smaller than batch.max_events (%d)",
                    s->queue_capacity, s->batch_max_events);
    }
    return check_topic_loops(c, cfg, s);
}

static int read_ops(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const m_known[] = {"listen", NULL}, *const l_known[] = {"level", NULL};
    const config_setting_t *g, *root = config_root_setting(cfg);
    if (section(c, cfg, "metrics", m_known, &g) < 0) return -1;
    if (g && get_string(c, g, "listen", &s->metrics_listen, 1) < 0) return -1;
    if (*s->metrics_listen && !settings_listen_ok(s->metrics_listen))
        return fail(c, config_setting_get_member(g, "listen"), NULL,
                    "\"%s\" is not HOST:PORT, :PORT or [ADDR]:PORT (\"\" disables)", s->metrics_listen);
    if (section(c, cfg, "log", l_known, &g) < 0) return -1;
    const config_setting_t *lv = g ? config_setting_get_member(g, "level") : NULL;
    if (lv) {
        if (config_setting_type(lv) != CONFIG_TYPE_STRING) return wrong_type(c, lv, "a string");
        static const char *const lvl[] = {"error", "warn", "info", "debug"};
        int found = -1;
        for (int i = 0; i < 4; i++) if (!strcmp(config_setting_get_string(lv), lvl[i])) found = i;
        if (found < 0) return fail(c, lv, NULL, "unknown level \"%s\" (error, warn, info, debug)",
                                   config_setting_get_string(lv));
        s->log_level = (LogLevel)found;
    }
    if (get_int(c, root, "shutdown_timeout_ms", 0, 3600000, &s->shutdown_timeout_ms) < 0) return -1;
    return get_bool(c, root, "watchdog", &s->watchdog);
}

static int read_health(Ctx *c, const config_t *cfg, Settings *s) {
    static const char *const known[] = {"stall_seconds", NULL};
    const config_setting_t *g;
    if (section(c, cfg, "health", known, &g) < 0) return -1;
    if (!g) return 0;
    if (get_int(c, g, "stall_seconds", 0, 86400, &s->stall_seconds) < 0) return -1;
    /* progress marks and broker offsets refresh every second or so (the
     * lag figures with statistics.interval.ms): shorter would flag noise */
    if (s->stall_seconds > 0 && s->stall_seconds < 10)
        return fail(c, config_setting_get_member(g, "stall_seconds"), NULL,
                    "%d is too short: at least 10 seconds, or 0 to turn stall detection off",
                    s->stall_seconds);
    return 0;
}

/* ---- entry points -------------------------------------------------------- */

static int parse_file(Ctx *c, config_t *cfg) {
    FILE *f = fopen(c->file, "r");
    if (!f) {
        if (c->err) snprintf(c->err, c->errlen, "%s: cannot open: %s", c->file, strerror(errno));
        return -1;
    }
    /* @include "x.conf" is resolved next to the main file */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", c->file);
    char *slash = strrchr(dir, '/');
    if (slash) { *slash = 0; config_set_include_dir(cfg, dir); }
    int ok = config_read(cfg, f);
    fclose(f);
    if (ok == CONFIG_TRUE) return 0;
    if (c->err)
        snprintf(c->err, c->errlen, "%s:%d: %s", config_error_file(cfg) ? config_error_file(cfg) : c->file,
                 config_error_line(cfg), config_error_text(cfg));
    return -1;
}

int settings_load(const char *path, Settings *s, char *err, size_t errlen) {
    static const char *const top[] = {"kafka", "model", "policy", "batch", "cache", "limits", "metrics",
                                      "log", "health", "shutdown_timeout_ms", "watchdog", NULL};
    Ctx c = {path, err, errlen};
    config_t cfg;
    if (err && errlen) err[0] = 0;
    settings_defaults(s);
    config_init(&cfg);
    int rc = parse_file(&c, &cfg);
    if (rc == 0) rc = check_members(&c, config_root_setting(&cfg), top);
    if (rc == 0) rc = read_kafka(&c, &cfg, s);
    if (rc == 0) rc = read_model(&c, &cfg, s);
    if (rc == 0) rc = read_policy(&c, &cfg, s);
    if (rc == 0) rc = read_batch(&c, &cfg, s);
    if (rc == 0) rc = read_cache(&c, &cfg, s);
    if (rc == 0) rc = read_limits(&c, &cfg, s);
    if (rc == 0) rc = read_ops(&c, &cfg, s);
    if (rc == 0) rc = read_health(&c, &cfg, s);
    if (rc == 0) rc = check_cross(&c, &cfg, s);
    config_destroy(&cfg);
    if (rc < 0) settings_free(s);
    return rc < 0 ? -1 : 0;
}

/* ---- dump ---------------------------------------------------------------- */

static void dump_str(FILE *f, const char *name, const char *v) {
    fputs(name, f);
    fputs(" = \"", f);
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        if ((unsigned char)*p < ' ') fprintf(f, "\\x%02x", (unsigned char)*p);
        else fputc(*p, f);
    }
    fputs("\"\n", f);
}

static void dump_strv(FILE *f, const char *name, char *const *v, int n) {
    fprintf(f, "%s = [", name);
    for (int i = 0; i < n; i++) fprintf(f, "%s\"%s\"", i ? ", " : "", v[i]);
    fputs("]\n", f);
}

void settings_dump(const Settings *s, FILE *f) {
    static const char *const lvl[] = {"error", "warn", "info", "debug"};
    dump_str(f, "kafka.brokers", s->brokers);
    dump_str(f, "kafka.group_id", s->group_id);
    dump_strv(f, "kafka.input_topics", s->input_topics, s->n_input_topics);
    dump_str(f, "kafka.allow_topic", s->allow_topic);
    dump_str(f, "kafka.deny_topic", s->deny_topic);
    dump_str(f, "kafka.dlq_topic", s->dlq_topic);
    dump_str(f, "kafka.delivery", "at-least-once");
    dump_strv(f, "kafka.keep_headers", s->keep_headers, s->n_keep_headers);
    fprintf(f, "kafka.embedded_partitions = %d\n", s->embedded_partitions);
    for (int i = 0; i < s->n_props; i++) {
        char name[300];
        snprintf(name, sizeof name, "kafka.properties[\"%s\"]", s->props[i].key);
        dump_str(f, name, settings_redacted(&s->props[i]));
    }
    dump_str(f, "model.path", s->model_path);
    dump_str(f, "model.tokenizer", s->tokenizer_path ? s->tokenizer_path : "");
    fprintf(f, "model.threads = %d\n", s->threads);
    dump_str(f, "model.blis_arch", s->blis_arch ? s->blis_arch : "auto");
    dump_str(f, "model.precision", precision_name(s->precision));
    dump_str(f, "model.prompt_format", prompt_format_name(s->prompt_format));
    if (s->categories.n == 0) fputs("policy.categories = default (the prompt family's: S1..S13 or S1..S14)\n", f);
    for (int i = 0; i < s->categories.n; i++) {
        char name[64];
        snprintf(name, sizeof name, "policy.categories.%s", s->categories.items[i].code);
        dump_str(f, name, s->categories.items[i].name);
    }
    dump_strv(f, "policy.exclude", s->exclude, s->n_exclude);
    fprintf(f, "policy.threshold = %g%s\n", s->threshold, s->threshold < 0 ? " (greedy)" : "");
    fprintf(f, "policy.category_scores = %s\n", s->category_scores ? "true" : "false");
    fprintf(f, "batch.max_events = %d\nbatch.max_tokens = %d\nbatch.max_wait_ms = %d\nbatch.queue_capacity = %d\n",
            s->batch_max_events, s->batch_max_tokens, s->batch_max_wait_ms, s->queue_capacity);
    fprintf(f, "cache.max_bytes = %lld%s\n", s->cache_max_bytes, s->cache_max_bytes ? "" : " (off)");
    fprintf(f, "limits.max_event_bytes = %zu\nlimits.max_messages = %d\nlimits.max_message_bytes = %zu\n"
               "limits.max_prompt_tokens = %d\n",
            s->max_event_bytes, s->max_messages, s->max_message_bytes, s->max_prompt_tokens);
    dump_str(f, "metrics.listen", s->metrics_listen);
    dump_str(f, "log.level", lvl[s->log_level >= LOG_ERROR && s->log_level <= LOG_DEBUG ? s->log_level : LOG_INFO]);
    fprintf(f, "health.stall_seconds = %d%s\n", s->stall_seconds, s->stall_seconds ? "" : " (off)");
    fprintf(f, "shutdown_timeout_ms = %d\nwatchdog = %s\n", s->shutdown_timeout_ms, s->watchdog ? "true" : "false");
}

int settings_check_main(const char *path) {
    Settings s;
    char err[1024];
    if (settings_load(path, &s, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    fprintf(stderr, "%s: OK\n", path);
    settings_free(&s);
    return 0;
}
