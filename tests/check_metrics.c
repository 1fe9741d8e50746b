/* check_metrics.c - the metrics registry (daemon/metrics.c), its procfs
 * reader (daemon/procstats.c) and HTTP endpoint (daemon/http.c).
 *
 * Check runs each test in its own forked process, so every test starts from an
 * empty registry. Expected exposition lines are written out by hand from the
 * Prometheus text format rules, never taken from the code under test. The HTTP
 * tests talk to the server over a real loopback socket with a minimal
 * HTTP/1.0 client.
 */
#include "check_main.h"
#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include "metrics.h"
#include "metrics_internal.h"
#include "procstats.h"

/* Asserts that the rendered text contains `line` as a whole line. */
static void has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
    ck_abort_msg("missing line: %s", line);
}

static void lacks(const char *text, const char *what) {
    ck_assert_msg(strstr(text, what) == NULL, "unexpected: %s", what);
}

START_TEST(counters_render_with_help_and_type) {
    metrics_init("llama-guard-3-1b", "abc123");
    metrics_event_consumed("conversations");
    metrics_event_consumed("conversations");
    metrics_event_consumed("other-in");
    metrics_verdict(0); metrics_verdict(0); metrics_verdict(1);
    metrics_category("S1"); metrics_category("S10"); metrics_category("S1");
    metrics_dlq("bad_msgpack");
    metrics_tokens(100, 150, 7);
    metrics_tokens(-5, 0, 0);               /* ignored: counters never go down */
    metrics_prefix_cache(1 << 20, 3);
    metrics_kafka_error("_TRANSPORT");
    char *t = metrics_render();
    ck_assert_ptr_nonnull(t);
    has_line(t, "# HELP guardd_events_consumed_total Conversation events consumed from Kafka, by input topic.");
    has_line(t, "# TYPE guardd_events_consumed_total counter");
    has_line(t, "guardd_events_consumed_total{topic=\"conversations\"} 2");
    has_line(t, "guardd_events_consumed_total{topic=\"other-in\"} 1");
    has_line(t, "# TYPE guardd_verdicts_total counter");
    has_line(t, "guardd_verdicts_total{verdict=\"safe\"} 2");
    has_line(t, "guardd_verdicts_total{verdict=\"unsafe\"} 1");
    has_line(t, "guardd_categories_flagged_total{code=\"S1\"} 2");
    has_line(t, "guardd_categories_flagged_total{code=\"S10\"} 1");
    has_line(t, "guardd_dlq_records_total{reason=\"bad_msgpack\"} 1");
    has_line(t, "guardd_tokens_total{kind=\"prefill\"} 100");
    has_line(t, "guardd_tokens_total{kind=\"cached_prefix\"} 150");
    has_line(t, "guardd_tokens_total{kind=\"decode\"} 7");
    has_line(t, "guardd_prefix_cache_tokens_total{result=\"hit\"} 150");
    has_line(t, "guardd_prefix_cache_tokens_total{result=\"miss\"} 100");
    has_line(t, "# TYPE guardd_prefix_cache_bytes gauge");
    has_line(t, "guardd_prefix_cache_bytes 1048576");
    has_line(t, "# TYPE guardd_prefix_cache_evictions_total counter");
    has_line(t, "guardd_prefix_cache_evictions_total 3");
    has_line(t, "guardd_kafka_errors_total{kind=\"_TRANSPORT\"} 1");
    has_line(t, "# TYPE guardd_model_info gauge");
    has_line(t, "guardd_model_info{name=\"llama-guard-3-1b\",revision=\"abc123\"} 1");
    has_line(t, "# TYPE guardd_build_info gauge");
    free(t);
    metrics_set_model_precision("bf16", "avx512bf16+onednn");
    t = metrics_render();
    has_line(t, "guardd_model_info{name=\"llama-guard-3-1b\",revision=\"abc123\",precision=\"bf16\","
                "kernels=\"avx512bf16+onednn\"} 1");
    has_line(t, "guardd_ready 0");
    /* TYPE must come before the family's first sample */
    ck_assert(strstr(t, "# TYPE guardd_verdicts_total") < strstr(t, "guardd_verdicts_total{"));
    ck_assert_int_eq(t[strlen(t) - 1], '\n');
    free(t);
}
END_TEST

START_TEST(fresh_registry_has_zero_verdicts) {
    char *t = metrics_render();
    has_line(t, "guardd_verdicts_total{verdict=\"safe\"} 0");
    has_line(t, "guardd_verdicts_total{verdict=\"unsafe\"} 0");
    has_line(t, "guardd_model_info{name=\"unknown\",revision=\"unknown\"} 1");
    has_line(t, "# TYPE guardd_dlq_records_total counter");
    lacks(t, "guardd_dlq_records_total{");
    free(t);
}
END_TEST

START_TEST(label_values_are_escaped) {
    metrics_category("a\"b\\c\nd");
    char *t = metrics_render();
    has_line(t, "guardd_categories_flagged_total{code=\"a\\\"b\\\\c\\nd\"} 1");
    free(t);
}
END_TEST

START_TEST(label_values_invalid_utf8_and_long) {
    metrics_dlq("bad\xff\xc0x");
    metrics_dlq("caf\xc3\xa9");             /* valid: kept */
    metrics_dlq(NULL);
    metrics_dlq("");
    char big[600];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    metrics_dlq(big);
    char *t = metrics_render();
    has_line(t, "guardd_dlq_records_total{reason=\"bad??x\"} 1");
    has_line(t, "guardd_dlq_records_total{reason=\"caf\xc3\xa9\"} 1");
    has_line(t, "guardd_dlq_records_total{reason=\"unknown\"} 2");
    char want[300];
    snprintf(want, sizeof want, "guardd_dlq_records_total{reason=\"%.*s\"} 1", 128, big);
    has_line(t, want);
    free(t);
}
END_TEST

START_TEST(label_truncation_keeps_whole_characters) {
    /* 127 ASCII bytes then a 2-byte character: it does not fit in 128 bytes
     * and must be dropped whole, not cut in half. */
    char in[200], out[300];
    memset(in, 'a', 127);
    strcpy(in + 127, "\xc3\xa9tail");
    metrics_clean_label(in, out, sizeof out);
    ck_assert_uint_eq(strlen(out), 127);
    metrics_clean_label("\xed\xa0\x80", out, sizeof out); /* UTF-16 surrogate */
    ck_assert_str_eq(out, "???");
    metrics_clean_label("\xe0\x80\xaf", out, sizeof out); /* overlong '/' */
    ck_assert_str_eq(out, "???");
}
END_TEST

START_TEST(cardinality_is_bounded) {
    char topic[32];
    for (int i = 0; i < 300; i++) {
        snprintf(topic, sizeof topic, "t%d", i);
        metrics_event_consumed(topic);
    }
    metrics_event_consumed("t0");           /* existing series still counts */
    metrics_event_consumed("t299");         /* past the cap: into "other" */
    char *t = metrics_render();
    has_line(t, "guardd_events_consumed_total{topic=\"t0\"} 2");
    has_line(t, "guardd_events_consumed_total{topic=\"t255\"} 1");
    lacks(t, "topic=\"t256\"");
    has_line(t, "guardd_events_consumed_total{topic=\"other\"} 45");
    int series = 0;
    for (const char *p = t; (p = strstr(p, "guardd_events_consumed_total{")); p++) series++;
    ck_assert_int_eq(series, 257);
    free(t);
}
END_TEST

START_TEST(histograms_are_cumulative) {
    metrics_batch(1, 0.02);
    metrics_batch(3, 0.2);
    metrics_batch(8, 100.0);                /* beyond the last bound: +Inf only */
    metrics_batch(0, -1.0);                 /* size 0 not a batch; negative time -> 0 */
    char *t = metrics_render();
    has_line(t, "# TYPE guardd_batch_size histogram");
    has_line(t, "guardd_batch_size_bucket{le=\"1\"} 1");
    has_line(t, "guardd_batch_size_bucket{le=\"2\"} 1");
    has_line(t, "guardd_batch_size_bucket{le=\"4\"} 2");
    has_line(t, "guardd_batch_size_bucket{le=\"8\"} 3");
    has_line(t, "guardd_batch_size_bucket{le=\"512\"} 3");
    has_line(t, "guardd_batch_size_bucket{le=\"+Inf\"} 3");
    has_line(t, "guardd_batch_size_sum 12");
    has_line(t, "guardd_batch_size_count 3");
    has_line(t, "# TYPE guardd_inference_seconds histogram");
    has_line(t, "guardd_inference_seconds_bucket{le=\"0.005\"} 1");
    has_line(t, "guardd_inference_seconds_bucket{le=\"0.025\"} 2");
    has_line(t, "guardd_inference_seconds_bucket{le=\"0.25\"} 3");
    has_line(t, "guardd_inference_seconds_bucket{le=\"60\"} 3");
    has_line(t, "guardd_inference_seconds_bucket{le=\"+Inf\"} 4");
    has_line(t, "guardd_inference_seconds_count 4");
    has_line(t, "guardd_inference_seconds_sum 100.22");
    free(t);
}
END_TEST

START_TEST(other_histograms_and_gauges) {
    metrics_end_to_end(0.5);
    metrics_queue_wait(0.0);
    metrics_queue_wait(0.0 / 0.0);          /* NaN: ignored */
    metrics_queue_depth(17);
    metrics_paused_partitions(2);
    char *t = metrics_render();
    has_line(t, "guardd_end_to_end_seconds_bucket{le=\"0.25\"} 0");
    has_line(t, "guardd_end_to_end_seconds_bucket{le=\"0.5\"} 1");
    has_line(t, "guardd_end_to_end_seconds_sum 0.5");
    has_line(t, "guardd_queue_wait_seconds_bucket{le=\"0.001\"} 1");
    has_line(t, "guardd_queue_wait_seconds_count 1");
    has_line(t, "# TYPE guardd_queue_depth gauge");
    has_line(t, "guardd_queue_depth 17");
    has_line(t, "guardd_paused_partitions 2");
    free(t);
}
END_TEST

START_TEST(ready_needs_both) {
    ck_assert_int_eq(metrics_ready(), 0);
    metrics_set_model_loaded(1);
    ck_assert_int_eq(metrics_ready(), 0);
    metrics_set_group_joined(1);
    ck_assert_int_eq(metrics_ready(), 1);
    char *t = metrics_render();
    has_line(t, "guardd_ready 1");
    free(t);
    /* an output topic that takes no records: not ready, and /readyz says why */
    metrics_set_outputs_failing(1);
    ck_assert_int_eq(metrics_ready(), 0);
    char why[512];
    ck_assert_ptr_nonnull(strstr(metrics_not_ready_reason(why, sizeof why), "cannot be delivered"));
    t = metrics_render();
    has_line(t, "guardd_ready 0");
    has_line(t, "guardd_output_topics_failing 1");
    free(t);
    metrics_set_outputs_failing(0);
    ck_assert_int_eq(metrics_ready(), 1);
    /* stalled partitions (or a stuck engine): not ready, the body names them */
    metrics_set_stalled(2, 0, "no progress for 301 s on in/0,in/3");
    ck_assert_int_eq(metrics_ready(), 0);
    ck_assert_str_eq(metrics_not_ready_reason(why, sizeof why),
                     "not ready: stalled: no progress for 301 s on in/0,in/3 (see guardd_stalled_partitions)\n");
    t = metrics_render();
    has_line(t, "guardd_stalled_partitions 2");
    has_line(t, "guardd_inference_stalled 0");
    has_line(t, "guardd_ready 0");
    free(t);
    metrics_set_stalled(0, 1, "inference: no layer finished for 300 s");
    ck_assert_int_eq(metrics_ready(), 0);
    t = metrics_render();
    has_line(t, "guardd_inference_stalled 1");
    free(t);
    metrics_set_stalled(0, 0, "");
    ck_assert_int_eq(metrics_ready(), 1);
    /* a hung consumer thread (health.c): not ready, its own gauge */
    metrics_set_stalled(0, 0, "consumer: its poll loop has not come round for 12 s");
    metrics_set_consumer_stalled(1);
    ck_assert_int_eq(metrics_ready(), 0);
    ck_assert_str_eq(metrics_not_ready_reason(why, sizeof why),
                     "not ready: stalled: consumer: its poll loop has not come round for 12 s "
                     "(see guardd_consumer_stalled)\n");
    t = metrics_render();
    has_line(t, "guardd_consumer_stalled 1");
    has_line(t, "guardd_ready 0");
    free(t);
    metrics_set_consumer_stalled(0);
    metrics_set_stalled(0, 0, "");
    ck_assert_int_eq(metrics_ready(), 1);
    t = metrics_render();
    has_line(t, "guardd_consumer_stalled 0");
    free(t);
    metrics_set_group_joined(0);
    ck_assert_int_eq(metrics_ready(), 0);
    ck_assert_str_eq(metrics_not_ready_reason(why, sizeof why), "not ready: consumer group not joined\n");
}
END_TEST

/* Shaped like librdkafka 2.0's statistics: partition -1 is the internal
 * "UA" partition; consumer_lag -1 means unknown. */
static const char *STATS =
    "{\"name\":\"rdkafka#consumer-1\",\"type\":\"consumer\",\"ts\":1,"
    " \"topics\":{"
    "  \"conversations\":{\"topic\":\"conversations\",\"partitions\":{"
    "    \"0\":{\"partition\":0,\"consumer_lag\":5,\"consumer_lag_stored\":6},"
    "    \"1\":{\"partition\":1,\"consumer_lag\":0},"
    "    \"2\":{\"partition\":2,\"consumer_lag\":-1},"
    "    \"-1\":{\"partition\":-1,\"consumer_lag\":-1}}},"
    "  \"more\":{\"topic\":\"more\",\"partitions\":{\"3\":{\"partition\":3,\"consumer_lag\":1234567890123}}}"
    " }}";

START_TEST(kafka_stats_consumer_lag) {
    metrics_kafka_stats(STATS);
    char *t = metrics_render();
    has_line(t, "# TYPE guardd_consumer_lag gauge");
    has_line(t, "guardd_consumer_lag{topic=\"conversations\",partition=\"0\"} 5");
    has_line(t, "guardd_consumer_lag{topic=\"conversations\",partition=\"1\"} 0");
    has_line(t, "guardd_consumer_lag{topic=\"more\",partition=\"3\"} 1234567890123");
    lacks(t, "partition=\"2\"");
    lacks(t, "partition=\"-1\"");
    free(t);
    /* A producer's report must not wipe the consumer's lag... */
    metrics_kafka_stats("{\"type\":\"producer\",\"topics\":{}}");
    /* ...nor must garbage. */
    metrics_kafka_stats("{not json");
    metrics_kafka_stats("[1,2]");
    metrics_kafka_stats(NULL);
    t = metrics_render();
    has_line(t, "guardd_consumer_lag{topic=\"more\",partition=\"3\"} 1234567890123");
    free(t);
    /* The next consumer report replaces the set (revoked partitions vanish). */
    metrics_kafka_stats("{\"type\":\"consumer\",\"topics\":{\"more\":{\"partitions\":"
                        "{\"3\":{\"partition\":3,\"consumer_lag\":2}}}}}");
    t = metrics_render();
    has_line(t, "guardd_consumer_lag{topic=\"more\",partition=\"3\"} 2");
    lacks(t, "topic=\"conversations\"");
    free(t);
}
END_TEST

START_TEST(kafka_stats_lag_cardinality) {
    /* 1100 partitions: 1024 kept, the rest summed under partition="other". */
    size_t cap = 64 * 1100 + 100, len = 0;
    char *js = malloc(cap);
    len += (size_t)snprintf(js + len, cap - len, "{\"type\":\"consumer\",\"topics\":{\"t\":{\"partitions\":{");
    for (int i = 0; i < 1100; i++)
        len += (size_t)snprintf(js + len, cap - len, "%s\"%d\":{\"partition\":%d,\"consumer_lag\":1}",
                                i ? "," : "", i, i);
    snprintf(js + len, cap - len, "}}}}");
    metrics_kafka_stats(js);
    free(js);
    char *t = metrics_render();
    has_line(t, "guardd_consumer_lag{topic=\"other\",partition=\"other\"} 76");
    int series = 0;
    for (const char *p = t; (p = strstr(p, "guardd_consumer_lag{")); p++) series++;
    ck_assert_int_eq(series, 1025);
    free(t);
}
END_TEST

static void *hammer(void *arg) {
    const char *topic = arg;
    for (int i = 0; i < 5000; i++) {
        metrics_event_consumed(topic);
        metrics_verdict(i & 1);
        metrics_batch(2, 0.5);
        metrics_tokens(1, 2, 3);
        if (i % 500 == 0) free(metrics_render()); /* scrapes racing with updates */
    }
    return NULL;
}

START_TEST(concurrent_updates_are_exact) {
    const char *topics[4] = {"a", "b", "a", "b"};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, (void *)topics[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    char *r = metrics_render();
    has_line(r, "guardd_events_consumed_total{topic=\"a\"} 10000");
    has_line(r, "guardd_events_consumed_total{topic=\"b\"} 10000");
    has_line(r, "guardd_verdicts_total{verdict=\"safe\"} 10000");
    has_line(r, "guardd_verdicts_total{verdict=\"unsafe\"} 10000");
    has_line(r, "guardd_batch_size_count 20000");
    has_line(r, "guardd_batch_size_sum 40000");
    has_line(r, "guardd_inference_seconds_sum 10000");
    has_line(r, "guardd_tokens_total{kind=\"decode\"} 60000");
    free(r);
}
END_TEST

START_TEST(format_double_exact) {
    char s[40];
    metrics_format_double(0.1, s, sizeof s); ck_assert_str_eq(s, "0.1");
    metrics_format_double(12, s, sizeof s); ck_assert_str_eq(s, "12");
    metrics_format_double(1.0 / 3.0, s, sizeof s);
    ck_assert(strtod(s, NULL) == 1.0 / 3.0);
    metrics_format_double(1.0 / 0.0, s, sizeof s); ck_assert_str_eq(s, "+Inf");
    metrics_format_double(-1.0 / 0.0, s, sizeof s); ck_assert_str_eq(s, "-Inf");
    metrics_format_double(0.0 / 0.0, s, sizeof s); ck_assert_str_eq(s, "NaN");
}
END_TEST

START_TEST(procstats_parsers) {
    double cpu, vs, rss, st, mf;
    /* comm with spaces and ')' inside: fields start after the LAST ')' */
    const char *stat = "1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 "
                       "250 50 0 0 20 0 3 0 9000 123456789 300 18446744073709551615";
    ck_assert_int_eq(procstats_parse_stat(stat, 100, 4096, &cpu, &vs, &rss, &st), 0);
    ck_assert(cpu == 3.0);
    ck_assert(vs == 123456789.0);
    ck_assert(rss == 300.0 * 4096);
    ck_assert(st == 9000.0);
    ck_assert_int_eq(procstats_parse_stat("1234 (x) S 1 2", 100, 4096, &cpu, &vs, &rss, &st), -1);
    ck_assert_int_eq(procstats_parse_stat("no paren", 100, 4096, &cpu, &vs, &rss, &st), -1);
    const char *limits =
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max processes             63704                63704                processes \n"
        "Max open files            1024                 524288               files     \n";
    ck_assert_int_eq(procstats_parse_limits(limits, &mf), 0);
    ck_assert(mf == 1024.0);
    ck_assert_int_eq(procstats_parse_limits("nothing", &mf), -1);
}
END_TEST

START_TEST(procstats_live) {
    ProcStats ps;
    ck_assert_int_eq(procstats_read(&ps), 0);
    ck_assert(ps.resident_bytes > 0);
    ck_assert(ps.virtual_bytes >= ps.resident_bytes);
    ck_assert(ps.open_fds >= 3);            /* stdin, stdout, stderr at least */
    ck_assert(ps.max_fds >= ps.open_fds);
    ck_assert(ps.cpu_seconds >= 0);
    ck_assert(ps.start_time_seconds > 1.5e9); /* after 2017: a real epoch time */
    ck_assert(ps.start_time_seconds <= (double)time(NULL) + 1);
    /* The kernel's own btime (when /proc/stat is readable) must agree with the
     * clock arithmetic within a second. */
    FILE *f = fopen("/proc/stat", "r");
    char line[512];
    double kbt = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %lf", &kbt) == 1) break;
    if (f) fclose(f);
    if (kbt > 0) {
        FILE *sf = fopen("/proc/self/stat", "r");
        char sb[4096] = "";
        size_t n = sf ? fread(sb, 1, sizeof sb - 1, sf) : 0;
        if (sf) fclose(sf);
        sb[n] = 0;
        double c, v, r, st;
        ck_assert_int_eq(procstats_parse_stat(sb, sysconf(_SC_CLK_TCK), 4096, &c, &v, &r, &st), 0);
        double want = kbt + st / (double)sysconf(_SC_CLK_TCK);
        ck_assert_msg(fabs(ps.start_time_seconds - want) <= 1.0, "start %f vs kernel %f",
                      ps.start_time_seconds, want);
    }
    char *t = metrics_render();
    for (const char *n = "process_cpu_seconds_total\0process_resident_memory_bytes\0"
                         "process_virtual_memory_bytes\0process_open_fds\0process_max_fds\0"
                         "process_start_time_seconds\0"; *n; n += strlen(n) + 1) {
        char want[128];
        snprintf(want, sizeof want, "\n%s ", n);
        ck_assert_msg(strstr(t, want), "no sample for %s", n);
    }
    has_line(t, "# TYPE process_cpu_seconds_total counter");
    has_line(t, "# TYPE process_open_fds gauge");
    free(t);
}
END_TEST

static void parse_ok(const char *in, const char *host, int port) {
    char h[256], err[256];
    int p = -1;
    ck_assert_msg(metrics_parse_listen(in, h, sizeof h, &p, err, sizeof err) == 0, "%s: %s", in, err);
    ck_assert_str_eq(h, host);
    ck_assert_int_eq(p, port);
}

static void parse_bad(const char *in) {
    char h[256], err[256] = "";
    int p;
    ck_assert_msg(metrics_parse_listen(in, h, sizeof h, &p, err, sizeof err) == -1, "accepted '%s'", in);
    ck_assert_msg(err[0], "no message for '%s'", in);
}

START_TEST(listen_parsing) {
    parse_ok("127.0.0.1:9464", "127.0.0.1", 9464);
    parse_ok(":9464", "127.0.0.1", 9464);
    parse_ok("9464", "127.0.0.1", 9464);
    parse_ok("0.0.0.0:0", "0.0.0.0", 0);
    parse_ok("localhost:80", "localhost", 80);
    parse_ok("[::1]:9464", "::1", 9464);
    parse_bad("");
    parse_bad(NULL);
    parse_bad("host:");
    parse_bad("host:65536");
    parse_bad("host:-1");
    parse_bad("host:12ab");
    parse_bad("::1:9464");
    parse_bad("[::1]9464");
    parse_bad("[]:1");
}
END_TEST

/* Minimal HTTP/1.0 client: returns the status code, copies the response
 * (headers and body) into out. */
static int http(const char *method, const char *path, char *out, size_t outlen) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_http_port())};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
    ck_assert_int_eq(write(s, req, (size_t)n), n);
    size_t len = 0;
    ssize_t r;
    while (len < outlen - 1 && (r = read(s, out + len, outlen - 1 - len)) > 0) len += (size_t)r;
    out[len] = 0;
    close(s);
    int status = 0;
    ck_assert_int_eq(sscanf(out, "HTTP/1.%*d %d", &status), 1);
    return status;
}

START_TEST(http_endpoints) {
    char err[256], *buf = malloc(1 << 20);
    metrics_verdict(1);
    ck_assert_int_eq(metrics_http_port(), 0);
    ck_assert_msg(metrics_http_start("127.0.0.1:0", err, sizeof err) == 0, "%s", err);
    ck_assert_int_gt(metrics_http_port(), 0);
    ck_assert_int_eq(metrics_http_start("127.0.0.1:0", err, sizeof err), -1); /* twice */

    ck_assert_int_eq(http("GET", "/metrics", buf, 1 << 20), 200);
    ck_assert_ptr_nonnull(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
    ck_assert_ptr_nonnull(strstr(buf, "\nguardd_verdicts_total{verdict=\"unsafe\"} 1\n"));
    ck_assert_int_eq(http("GET", "/healthz", buf, 1 << 20), 200);
    ck_assert_ptr_nonnull(strstr(buf, "\r\n\r\nok\n"));
    ck_assert_int_eq(http("GET", "/readyz", buf, 1 << 20), 503);
    ck_assert_ptr_nonnull(strstr(buf, "model not loaded"));
    metrics_set_model_loaded(1);
    ck_assert_int_eq(http("GET", "/readyz", buf, 1 << 20), 503);
    ck_assert_ptr_nonnull(strstr(buf, "group not joined"));
    metrics_set_group_joined(1);
    ck_assert_int_eq(http("GET", "/readyz", buf, 1 << 20), 200);
    ck_assert_int_eq(http("GET", "/nope", buf, 1 << 20), 404);
    ck_assert_int_eq(http("POST", "/metrics", buf, 1 << 20), 405);
    ck_assert_int_eq(http("HEAD", "/metrics", buf, 1 << 20), 200);

    metrics_http_stop();
    ck_assert_int_eq(metrics_http_port(), 0);
    metrics_http_stop();                    /* idempotent */
    free(buf);
}
END_TEST

START_TEST(http_start_errors) {
    char err[256];
    ck_assert_int_eq(metrics_http_start("127.0.0.1:99999", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "port"));
    ck_assert_int_eq(metrics_http_start("no-such-host.invalid:1", err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "resolve"));
    /* A port already taken: bind a socket ourselves, then ask for it. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(s, 1), 0);
    ck_assert_int_eq(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    ck_assert_int_eq(metrics_http_start(addr, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "cannot listen"), "%s", err);
    ck_assert_int_eq(metrics_http_port(), 0);
    close(s);
}
END_TEST

/* --serve: record a fixed set of values, serve them on 127.0.0.1:0, print
 * "port N" and keep serving until stdin reaches EOF. t_metrics_prometheus.sh
 * scrapes this with promtool and a real Prometheus and checks the values it
 * sets here: 7 safe and 3 unsafe verdicts, category codes S1 x2 and a label
 * needing escapes (a"b\c) x1, 5 events on topic "conv", one DLQ "bad_msgpack". */
static int serve(void) {
    char err[256], line[64];
    metrics_init("tiny-fixture", "rev\"1");
    for (int i = 0; i < 7; i++) metrics_verdict(0);
    for (int i = 0; i < 3; i++) metrics_verdict(1);
    metrics_category("S1"); metrics_category("S1"); metrics_category("a\"b\\c");
    for (int i = 0; i < 5; i++) metrics_event_consumed("conv");
    metrics_dlq("bad_msgpack");
    metrics_batch(4, 0.05); metrics_batch(6, 0.5);
    metrics_kafka_stats(STATS);
    metrics_set_model_loaded(1);
    metrics_set_group_joined(1);
    if (metrics_http_start("127.0.0.1:0", err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("port %d\n", metrics_http_port());
    fflush(stdout);
    while (fgets(line, sizeof line, stdin)) {}
    metrics_http_stop();
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--serve")) return serve();
    Suite *s = suite_create("metrics");
    TCase *tc = check_case(s, "registry", 0);
    tcase_add_test(tc, counters_render_with_help_and_type);
    tcase_add_test(tc, fresh_registry_has_zero_verdicts);
    tcase_add_test(tc, label_values_are_escaped);
    tcase_add_test(tc, label_values_invalid_utf8_and_long);
    tcase_add_test(tc, label_truncation_keeps_whole_characters);
    tcase_add_test(tc, cardinality_is_bounded);
    tcase_add_test(tc, histograms_are_cumulative);
    tcase_add_test(tc, other_histograms_and_gauges);
    tcase_add_test(tc, ready_needs_both);
    tcase_add_test(tc, kafka_stats_consumer_lag);
    tcase_add_test(tc, kafka_stats_lag_cardinality);
    tcase_add_test(tc, format_double_exact);
    tcase_add_test(tc, concurrent_updates_are_exact);
    TCase *tp = check_case(s, "procstats", 0);
    tcase_add_test(tp, procstats_parsers);
    tcase_add_test(tp, procstats_live);
    TCase *th = check_case(s, "http", 0);
    tcase_add_test(th, listen_parsing);
    tcase_add_test(th, http_endpoints);
    tcase_add_test(th, http_start_errors);
    return check_run(s);
}
