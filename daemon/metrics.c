/* metrics.c - guardd's Prometheus metrics registry and text exposition.
 *
 * Every metric lives in a static structure here; there is no dynamic
 * registration, because the set of metrics is fixed by guardd's design and a
 * fixed set keeps the hot path to an atomic add (fixed-label counters, gauges)
 * or a short mutex-protected update (labelled counters, histograms).
 *
 * Label values that come from outside (topic names, category codes from
 * events, DLQ reasons, librdkafka error names) are made safe before they are
 * stored: invalid UTF-8 bytes become '?', values are cut at LABEL_MAX bytes,
 * and each metric keeps at most MAX_SERIES distinct values; anything past that
 * is counted under the value "other", so a hostile producer cannot grow memory
 * or the scrape without bound.
 *
 * metrics_render() writes Prometheus text format 0.0.4 (HELP/TYPE lines,
 * escaped label values, cumulative histogram buckets ending with le="+Inf").
 * The HTTP side is in http.c.
 */
#include "metrics.h"
#include "metrics_internal.h"
#include "procstats.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "utf8.h"

#ifndef GUARDD_VERSION
#define GUARDD_VERSION "0.1.0"
#endif

#define LABEL_MAX 128    /* bytes kept of one label value */
#define MAX_SERIES 256   /* distinct label values per labelled metric */
#define MAX_LAG_SERIES 1024 /* (topic, partition) pairs for consumer_lag */

/* ---- label values -------------------------------------------------------- */

void metrics_clean_label(const char *in, char *out, size_t outlen) {
    size_t o = 0;
    if (!in || !*in) in = "unknown";
    const unsigned char *s = (const unsigned char *)in;
    size_t len = strlen(in);
    unsigned cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_decode(s + i, len - i, &cp);
        size_t take = n ? n : 1;
        if (o + take >= outlen || o + take > LABEL_MAX) break;
        if (n) memcpy(out + o, s + i, take);
        else out[o] = '?';
        o += take;
        i += take;
    }
    out[o] = 0;
}

/* ---- labelled counters --------------------------------------------------- */

typedef struct {
    char value[LABEL_MAX + 1];
    unsigned long long count;
} Series;

typedef struct {
    const char *name, *help, *label;
    pthread_mutex_t mu;
    int n;
    Series s[MAX_SERIES + 1]; /* + the "other" overflow series */
} LabeledCounter;

#define LABELED(nm, hp, lb) {.name = nm, .help = hp, .label = lb, .mu = PTHREAD_MUTEX_INITIALIZER}
static LabeledCounter c_consumed = LABELED("guardd_events_consumed_total",
    "Conversation events consumed from Kafka, by input topic.", "topic");
static LabeledCounter c_categories = LABELED("guardd_categories_flagged_total",
    "Hazard categories reported in unsafe verdicts, by category code.", "code");
static LabeledCounter c_dlq = LABELED("guardd_dlq_records_total",
    "Records sent to the dead-letter topic, by reason code.", "reason");
static LabeledCounter c_kafka_err = LABELED("guardd_kafka_errors_total",
    "Kafka client errors, by kind.", "kind");

static void labeled_add(LabeledCounter *c, const char *raw, unsigned long long by) {
    char v[LABEL_MAX + 1];
    metrics_clean_label(raw, v, sizeof v);
    pthread_mutex_lock(&c->mu);
    int i;
    for (i = 0; i < c->n; i++)
        if (!strcmp(c->s[i].value, v)) break;
    if (i == c->n) {
        if (c->n < MAX_SERIES) {
            strcpy(c->s[c->n++].value, v);
        } else { /* full: everything new shares one "other" series */
            for (i = 0; i < c->n && strcmp(c->s[i].value, "other"); i++) {}
            if (i == c->n) strcpy(c->s[c->n++].value, "other");
        }
    }
    c->s[i].count += by;
    pthread_mutex_unlock(&c->mu);
}

/* ---- histograms ---------------------------------------------------------- */

#define MAX_BUCKETS 16
typedef struct {
    const char *name, *help;
    int nb;
    double le[MAX_BUCKETS];               /* upper bounds, ascending; +Inf implied */
    pthread_mutex_t mu;
    unsigned long long counts[MAX_BUCKETS + 1]; /* per bucket, not cumulative */
    double sum;
    unsigned long long count;
} Histogram;

static Histogram h_batch = {"guardd_batch_size",
    "Events per inference micro-batch.", 10,
    {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}, PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};
static Histogram h_infer = {"guardd_inference_seconds",
    "Time spent in the model per micro-batch.", 13,
    {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
    PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};
static Histogram h_e2e = {"guardd_end_to_end_seconds",
    "Time from consuming an event to its verdict being acknowledged by Kafka.", 14,
    {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
    PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};
static Histogram h_wait = {"guardd_queue_wait_seconds",
    "Time an event waited in the queue before its micro-batch started.", 14,
    {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
    PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0};

static void hist_observe(Histogram *h, double v) {
    if (isnan(v)) return;
    if (v < 0) v = 0; /* a clock step must not produce a negative duration */
    int b = 0;
    while (b < h->nb && v > h->le[b]) b++;
    pthread_mutex_lock(&h->mu);
    h->counts[b]++;
    h->sum += v;
    h->count++;
    pthread_mutex_unlock(&h->mu);
}

/* ---- consumer lag (replaced wholesale from each statistics report) ------- */

typedef struct { char topic[LABEL_MAX + 1]; long partition; long long lag; } LagSeries;
static pthread_mutex_t lag_mu = PTHREAD_MUTEX_INITIALIZER;
static LagSeries *lag;   /* MAX_LAG_SERIES + 1 entries once allocated */
static int n_lag;
static int lag_overflow; /* last report had more pairs than fit: last entry is "other" */

/* ---- scalars ------------------------------------------------------------- */

static _Atomic unsigned long long verdicts[2];   /* safe, unsafe */
static _Atomic unsigned long long tokens[3];     /* prefill, cached_prefix, decode */
static _Atomic long long queue_depth, paused_partitions;
static _Atomic unsigned long long cache_bytes, cache_evictions;
static _Atomic int model_loaded, group_joined, outputs_failing, stalled_parts, engine_stuck, consumer_stuck;
static pthread_mutex_t stall_mu = PTHREAD_MUTEX_INITIALIZER;
static char stall_detail[400];  /* which partitions, for /readyz */

static pthread_mutex_t info_mu = PTHREAD_MUTEX_INITIALIZER;
static char model_name[LABEL_MAX + 1] = "unknown", model_rev[LABEL_MAX + 1] = "unknown";
static char model_prec[LABEL_MAX + 1], model_kernels[LABEL_MAX + 1];   /* "" until set */

/* ---- recording API ------------------------------------------------------- */

void metrics_init(const char *name, const char *revision) {
    pthread_mutex_lock(&info_mu);
    metrics_clean_label(name, model_name, sizeof model_name);
    metrics_clean_label(revision, model_rev, sizeof model_rev);
    pthread_mutex_unlock(&info_mu);
}

void metrics_set_model_precision(const char *precision, const char *kernels) {
    pthread_mutex_lock(&info_mu);
    metrics_clean_label(precision, model_prec, sizeof model_prec);
    metrics_clean_label(kernels, model_kernels, sizeof model_kernels);
    pthread_mutex_unlock(&info_mu);
}

void metrics_event_consumed(const char *topic) { labeled_add(&c_consumed, topic, 1); }
void metrics_verdict(int unsafe) { atomic_fetch_add(&verdicts[unsafe ? 1 : 0], 1); }
void metrics_category(const char *code) { labeled_add(&c_categories, code, 1); }
void metrics_dlq(const char *reason) { labeled_add(&c_dlq, reason, 1); }
void metrics_kafka_error(const char *kind) { labeled_add(&c_kafka_err, kind, 1); }

void metrics_tokens(long prefill, long cached_prefix, long decode) {
    /* Negative counts would make a counter go down: ignore them. */
    if (prefill > 0) atomic_fetch_add(&tokens[0], (unsigned long long)prefill);
    if (cached_prefix > 0) atomic_fetch_add(&tokens[1], (unsigned long long)cached_prefix);
    if (decode > 0) atomic_fetch_add(&tokens[2], (unsigned long long)decode);
}

void metrics_prefix_cache(unsigned long long bytes, unsigned long long evictions) {
    atomic_store(&cache_bytes, bytes);
    atomic_store(&cache_evictions, evictions);
}

void metrics_batch(int size, double inference_seconds) {
    if (size > 0) hist_observe(&h_batch, size);
    hist_observe(&h_infer, inference_seconds);
}
void metrics_end_to_end(double s) { hist_observe(&h_e2e, s); }
void metrics_queue_wait(double s) { hist_observe(&h_wait, s); }
void metrics_queue_depth(int d) { atomic_store(&queue_depth, d); }
void metrics_paused_partitions(int n) { atomic_store(&paused_partitions, n); }
void metrics_set_model_loaded(int v) { atomic_store(&model_loaded, v != 0); }
void metrics_set_group_joined(int v) { atomic_store(&group_joined, v != 0); }
void metrics_set_outputs_failing(int n) { atomic_store(&outputs_failing, n); }
void metrics_set_stalled(int partitions, int stuck, const char *detail) {
    pthread_mutex_lock(&stall_mu);
    snprintf(stall_detail, sizeof stall_detail, "%s", detail ? detail : "");
    atomic_store(&stalled_parts, partitions);
    atomic_store(&engine_stuck, stuck != 0);
    pthread_mutex_unlock(&stall_mu);
}
void metrics_set_consumer_stalled(int stalled) {
    pthread_mutex_lock(&stall_mu);      /* changes with the detail, as the others */
    atomic_store(&consumer_stuck, stalled != 0);
    pthread_mutex_unlock(&stall_mu);
}
static int anything_stalled(void) {
    return atomic_load(&stalled_parts) || atomic_load(&engine_stuck) || atomic_load(&consumer_stuck);
}
int metrics_ready(void) {
    return atomic_load(&model_loaded) && atomic_load(&group_joined) && !atomic_load(&outputs_failing) &&
           !anything_stalled();
}
const char *metrics_not_ready_reason(char *buf, unsigned long len) {
    static const char *why[2][2] = {
        {"not ready: model not loaded, consumer group not joined\n", "not ready: model not loaded\n"},
        {"not ready: consumer group not joined\n", "not ready\n"}};
    int base = atomic_load(&model_loaded) && atomic_load(&group_joined);
    if (base && atomic_load(&outputs_failing)) {
        snprintf(buf, len, "not ready: output records cannot be delivered (see guardd_output_topics_failing)\n");
    } else if (base && anything_stalled()) {
        pthread_mutex_lock(&stall_mu);
        /* asked again under the lock the flags and the detail change under:
         * a flag cleared meanwhile must not print a detail already emptied */
        const char *gauge = atomic_load(&stalled_parts) ? "guardd_stalled_partitions"
                            : atomic_load(&engine_stuck) ? "guardd_inference_stalled"
                            : atomic_load(&consumer_stuck) ? "guardd_consumer_stalled" : NULL;
        if (gauge)
            snprintf(buf, len, "not ready: stalled: %s (see %s)\n", stall_detail, gauge);
        else
            snprintf(buf, len, "%s", why[1][1]);
        pthread_mutex_unlock(&stall_mu);
    } else {
        snprintf(buf, len, "%s", why[atomic_load(&model_loaded) != 0][atomic_load(&group_joined) != 0]);
    }
    return buf;
}
int metrics_model_loaded(void) { return atomic_load(&model_loaded); }
int metrics_group_joined(void) { return atomic_load(&group_joined); }

/* Adds one partition's lag to the new set, folding overflow into "other". */
static void lag_put(LagSeries *set, int *n, int *overflow, const char *topic,
                    long partition, long long value) {
    if (*n < MAX_LAG_SERIES) {
        metrics_clean_label(topic, set[*n].topic, sizeof set[*n].topic);
        set[*n].partition = partition;
        set[*n].lag = value;
        (*n)++;
        return;
    }
    if (!*overflow) {
        strcpy(set[*n].topic, "other");
        set[*n].partition = -1;
        set[*n].lag = 0;
        *overflow = 1;
    }
    set[*n].lag += value;
}

/* librdkafka statistics (STATISTICS.md): top-level "type" is "consumer" or
 * "producer"; topics.<name>.partitions.<id> has "partition" and
 * "consumer_lag". Partition -1 is librdkafka's internal UA partition and a lag
 * of -1 means "unknown" (no committed/fetched offset yet): both are skipped.
 * Producer statistics are ignored so that a producer's report (all lags -1)
 * does not erase the consumer's. */
void metrics_kafka_stats(const char *text) {
    if (!text) return;
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (!json_is_object(root)) { json_decref(root); return; }
    const char *type = json_string_value(json_object_get(root, "type"));
    json_t *topics = json_object_get(root, "topics");
    if ((type && strcmp(type, "consumer") != 0) || !json_is_object(topics)) {
        json_decref(root);
        return;
    }
    LagSeries *set = calloc(MAX_LAG_SERIES + 1, sizeof *set);
    if (!set) { json_decref(root); return; }
    int n = 0, overflow = 0;
    const char *tname;
    json_t *t;
    json_object_foreach(topics, tname, t) {
        json_t *parts = json_object_get(t, "partitions");
        const char *pkey;
        json_t *p;
        if (!json_is_object(parts)) continue;
        json_object_foreach(parts, pkey, p) {
            json_t *pid = json_object_get(p, "partition"), *cl = json_object_get(p, "consumer_lag");
            if (!json_is_integer(pid) || !json_is_integer(cl)) continue;
            if (json_integer_value(pid) < 0 || json_integer_value(cl) < 0) continue;
            lag_put(set, &n, &overflow, tname, (long)json_integer_value(pid), json_integer_value(cl));
        }
    }
    json_decref(root);
    pthread_mutex_lock(&lag_mu);
    LagSeries *old = lag;
    lag = set;
    n_lag = n + overflow;
    lag_overflow = overflow;
    pthread_mutex_unlock(&lag_mu);
    free(old);
}

/* ---- rendering ----------------------------------------------------------- */

typedef struct { char *p; size_t len, cap; int oom; } Buf;

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) { b->oom = 1; return; }
        if ((size_t)n < b->cap - b->len) { b->len += (size_t)n; return; }
        size_t cap = b->cap * 2 + (size_t)n;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
}

/* Label value with \, " and newline escaped as the text format requires.
 * Copied in runs between escapes: a full registry has about 1000 values of
 * up to 128 bytes, and one printf per character made a scrape cost ~10 ms. */
static void buf_label(Buf *b, const char *v) {
    while (*v) {
        size_t n = strcspn(v, "\\\"\n");
        if (n) buf_printf(b, "%.*s", (int)n, v);
        v += n;
        if (!*v) break;
        buf_printf(b, "%s", *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : "\\n");
        v++;
    }
}

/* Shortest of %.15g / %.17g that reads back as the same double. */
void metrics_format_double(double v, char *out, size_t len) {
    if (isnan(v)) { snprintf(out, len, "NaN"); return; }
    if (isinf(v)) { snprintf(out, len, v > 0 ? "+Inf" : "-Inf"); return; }
    snprintf(out, len, "%.15g", v);
    if (strtod(out, NULL) != v) snprintf(out, len, "%.17g", v);
}

static void buf_double(Buf *b, double v) {
    char s[40];
    metrics_format_double(v, s, sizeof s);
    buf_printf(b, "%s", s);
}

static void head(Buf *b, const char *name, const char *help, const char *type) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_labeled(Buf *b, LabeledCounter *c) {
    head(b, c->name, c->help, "counter");
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->n; i++) {
        buf_printf(b, "%s{%s=\"", c->name, c->label);
        buf_label(b, c->s[i].value);
        buf_printf(b, "\"} %llu\n", c->s[i].count);
    }
    pthread_mutex_unlock(&c->mu);
}

static void render_hist(Buf *b, Histogram *h) {
    head(b, h->name, h->help, "histogram");
    pthread_mutex_lock(&h->mu);
    unsigned long long cum = 0;
    for (int i = 0; i < h->nb; i++) {
        cum += h->counts[i];
        buf_printf(b, "%s_bucket{le=\"", h->name);
        buf_double(b, h->le[i]);
        buf_printf(b, "\"} %llu\n", cum);
    }
    buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", h->name, h->count, h->name);
    buf_double(b, h->sum);
    buf_printf(b, "\n%s_count %llu\n", h->name, h->count);
    pthread_mutex_unlock(&h->mu);
}

static void render_lag(Buf *b) {
    head(b, "guardd_consumer_lag", "Messages between the committed offset and the end of "
         "each assigned partition (from librdkafka statistics).", "gauge");
    pthread_mutex_lock(&lag_mu);
    for (int i = 0; i < n_lag; i++) {
        buf_printf(b, "guardd_consumer_lag{topic=\"");
        buf_label(b, lag[i].topic);
        if (lag_overflow && i == n_lag - 1) buf_printf(b, "\",partition=\"other\"} %lld\n", lag[i].lag);
        else buf_printf(b, "\",partition=\"%ld\"} %lld\n", lag[i].partition, lag[i].lag);
    }
    pthread_mutex_unlock(&lag_mu);
}

static void render_scalar(Buf *b, const char *name, const char *help, const char *type, double v) {
    if (v < 0) return; /* unknown (e.g. procfs unreadable): omit rather than lie */
    head(b, name, help, type);
    buf_printf(b, "%s ", name);
    buf_double(b, v);
    buf_printf(b, "\n");
}

static void render_process(Buf *b) {
    ProcStats ps;
    procstats_read(&ps);
    render_scalar(b, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                  "counter", ps.cpu_seconds);
    render_scalar(b, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge",
                  ps.resident_bytes);
    render_scalar(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge",
                  ps.virtual_bytes);
    render_scalar(b, "process_open_fds", "Number of open file descriptors.", "gauge", ps.open_fds);
    render_scalar(b, "process_max_fds", "Maximum number of open file descriptors.", "gauge",
                  ps.max_fds);
    render_scalar(b, "process_start_time_seconds",
                  "Start time of the process since unix epoch in seconds.", "gauge",
                  ps.start_time_seconds);
}

static void render_info(Buf *b) {
    head(b, "guardd_model_info", "The loaded model (always 1).", "gauge");
    pthread_mutex_lock(&info_mu);
    buf_printf(b, "guardd_model_info{name=\"");
    buf_label(b, model_name);
    buf_printf(b, "\",revision=\"");
    buf_label(b, model_rev);
    if (model_prec[0]) {
        buf_printf(b, "\",precision=\"");
        buf_label(b, model_prec);
        buf_printf(b, "\",kernels=\"");
        buf_label(b, model_kernels);
    }
    buf_printf(b, "\"} 1\n");
    pthread_mutex_unlock(&info_mu);
    head(b, "guardd_build_info", "guardd's version (always 1).", "gauge");
    buf_printf(b, "guardd_build_info{version=\"");
    buf_label(b, GUARDD_VERSION);
    buf_printf(b, "\"} 1\n");
}

char *metrics_render(void) {
    Buf b = {malloc(16384), 0, 16384, 0};
    if (!b.p) return NULL;
    render_labeled(&b, &c_consumed);
    head(&b, "guardd_verdicts_total", "Verdicts published, by verdict.", "counter");
    buf_printf(&b, "guardd_verdicts_total{verdict=\"safe\"} %llu\n", atomic_load(&verdicts[0]));
    buf_printf(&b, "guardd_verdicts_total{verdict=\"unsafe\"} %llu\n", atomic_load(&verdicts[1]));
    render_labeled(&b, &c_categories);
    render_labeled(&b, &c_dlq);
    head(&b, "guardd_tokens_total", "Prompt tokens processed, by kind: prefill (computed), "
         "cached_prefix (reused from the prefix cache), decode (generated).", "counter");
    static const char *kinds[3] = {"prefill", "cached_prefix", "decode"};
    for (int i = 0; i < 3; i++)
        buf_printf(&b, "guardd_tokens_total{kind=\"%s\"} %llu\n", kinds[i], atomic_load(&tokens[i]));
    head(&b, "guardd_prefix_cache_tokens_total", "Prompt tokens by prefix cache result: hit (K/V reused, "
         "from the cache or computed once for the batch), miss (prefilled).", "counter");
    buf_printf(&b, "guardd_prefix_cache_tokens_total{result=\"hit\"} %llu\n", atomic_load(&tokens[1]));
    buf_printf(&b, "guardd_prefix_cache_tokens_total{result=\"miss\"} %llu\n", atomic_load(&tokens[0]));
    render_scalar(&b, "guardd_prefix_cache_bytes", "Memory held by the prefix cache's K/V blocks "
                  "(at most cache.max_bytes).", "gauge", (double)atomic_load(&cache_bytes));
    render_scalar(&b, "guardd_prefix_cache_evictions_total", "Prefix cache blocks evicted to stay "
                  "within cache.max_bytes.", "counter", (double)atomic_load(&cache_evictions));
    render_labeled(&b, &c_kafka_err);
    render_hist(&b, &h_batch);
    render_hist(&b, &h_infer);
    render_hist(&b, &h_e2e);
    render_hist(&b, &h_wait);
    render_scalar(&b, "guardd_queue_depth", "Events waiting between the consumer and inference.",
                  "gauge", (double)atomic_load(&queue_depth));
    render_scalar(&b, "guardd_paused_partitions", "Input partitions paused for backpressure.",
                  "gauge", (double)atomic_load(&paused_partitions));
    render_lag(&b);
    render_info(&b);
    render_scalar(&b, "guardd_output_topics_failing",
                  "Output topics whose last delivery attempt failed (records held for retry).",
                  "gauge", (double)atomic_load(&outputs_failing));
    render_scalar(&b, "guardd_stalled_partitions", "Assigned input partitions with work whose "
                  "consumed position and commit point have not moved for health.stall_seconds "
                  "(paused, idle and engine-bound partitions excepted).", "gauge",
                  (double)atomic_load(&stalled_parts));
    render_scalar(&b, "guardd_inference_stalled", "1 while the engine's batch has finished no layer "
                  "for health.stall_seconds.", "gauge", (double)atomic_load(&engine_stuck));
    render_scalar(&b, "guardd_consumer_stalled", "1 while the consumer thread's poll loop has not "
                  "come round for health.stall_seconds (hung in a call or a callback).", "gauge",
                  (double)atomic_load(&consumer_stuck));
    render_scalar(&b, "guardd_ready", "1 when the model is loaded, the consumer group joined, "
                  "every output topic takes records and nothing is stalled.", "gauge", metrics_ready());
    render_process(&b);
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}
