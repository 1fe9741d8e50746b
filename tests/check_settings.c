/* check_settings.c - guardd's configuration loader (daemon/settings.c) and the
 * structured logger (daemon/log.c).
 *
 * Settings: the shipped etc/guardd.conf must load with the documented
 * defaults; every kind of mistake must be reported as "FILE:LINE: SETTING:
 * message" with the right line and setting (each case writes a small config
 * file and compares the error's prefix to one written out by hand); secrets
 * never appear in settings_dump output. Log: level filtering, quoting, and
 * whole lines when several threads log at once.
 */
#include "check_main.h"
#include "check_fixture.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "log.h"
#include "settings.h"

/* Loads text, expects failure, and checks the error starts with
 * "PATH:LINE: SETTING: " and contains the given words. */
static void expect_error(const char *text, int line, const char *setting, const char *words) {
    const char *path = check_write_file("t.conf", text);
    char err[1024], want[600];
    Settings s;
    int rc = settings_load(path, &s, err, sizeof err);
    ck_assert_msg(rc == -1, "config was accepted:\n%s", text);
    if (setting)
        snprintf(want, sizeof want, "%s:%d: %s: ", path, line, setting);
    else
        snprintf(want, sizeof want, "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "error \"%s\" does not start with \"%s\"", err, want);
    ck_assert_msg(strstr(err, words) != NULL, "error \"%s\" does not mention \"%s\"", err, words);
    ck_assert_ptr_null(s.brokers);      /* nothing left to free after a failure */
}

static Settings load_ok(const char *text) {
    const char *path = check_write_file("ok.conf", text);
    char err[1024];
    Settings s;
    int rc = settings_load(path, &s, err, sizeof err);
    ck_assert_msg(rc == 0, "rejected: %s\n%s", err, text);
    return s;
}

static const char *conf_path(void) {
    const char *p = getenv("GUARDD_CONF");
    return p ? p : "etc/guardd.conf";
}

START_TEST(shipped_config_loads_with_documented_defaults) {
    Settings s;
    char err[1024];
    ck_assert_msg(settings_load(conf_path(), &s, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(s.brokers, "embedded");
    ck_assert_str_eq(s.group_id, "guardd");
    ck_assert_int_eq(s.n_input_topics, 1);
    ck_assert_str_eq(s.input_topics[0], "conversations");
    ck_assert_str_eq(s.allow_topic, "verdicts.allow");
    ck_assert_str_eq(s.deny_topic, "verdicts.deny");
    ck_assert_str_eq(s.dlq_topic, "conversations.dlq");
    ck_assert_int_eq(s.delivery, DELIVERY_AT_LEAST_ONCE);
    ck_assert_int_eq(s.n_keep_headers, 3);
    ck_assert_str_eq(s.keep_headers[0], "traceparent");
    ck_assert_str_eq(s.keep_headers[2], "b3");
    ck_assert_int_eq(s.n_props, 0);
    ck_assert_ptr_null(s.tokenizer_path);   /* "" means model_path/tokenizer.json */
    ck_assert_ptr_null(s.blis_arch);        /* "auto" */
    ck_assert_int_eq(s.precision, PREC_AUTO);
    ck_assert_int_eq(s.categories.n, 0);
    ck_assert(s.threshold < 0);
    ck_assert_int_eq(s.batch_max_events, 16);
    ck_assert_int_eq(s.batch_max_tokens, 4096);
    ck_assert_int_eq(s.batch_max_wait_ms, 50);
    ck_assert_int_eq(s.queue_capacity, 256);
    ck_assert(s.cache_max_bytes == 1LL << 30);
    ck_assert_uint_eq(s.max_event_bytes, 1048576);
    ck_assert_int_eq(s.max_messages, 64);
    ck_assert_uint_eq(s.max_message_bytes, 262144);
    ck_assert_str_eq(s.metrics_listen, "127.0.0.1:9464");
    ck_assert_int_eq(s.log_level, LOG_INFO);
    ck_assert_int_eq(s.watchdog, 1);
    ck_assert_int_eq(s.stall_seconds, 300);
    settings_free(&s);
}
END_TEST

/* The file's comments show each default: a file with only comments must give
 * the same values as the shipped file, so the two cannot drift apart. */
START_TEST(empty_config_equals_shipped_defaults) {
    Settings a = load_ok("# nothing\n"), b;
    char err[1024], *da = NULL, *db = NULL;
    size_t la, lb;
    ck_assert_msg(settings_load(conf_path(), &b, err, sizeof err) == 0, "%s", err);
    FILE *fa = open_memstream(&da, &la), *fb = open_memstream(&db, &lb);
    settings_dump(&a, fa);
    settings_dump(&b, fb);
    fclose(fa);
    fclose(fb);
    ck_assert_str_eq(da, db);
    free(da); free(db);
    settings_free(&a);
    settings_free(&b);
}
END_TEST

START_TEST(full_config_values_are_read) {
    Settings s = load_ok(
        "kafka = { brokers = \"k1:9092,k2:9092\"; group_id = \"g\"; input_topics = [\"a\", \"b.c\"];\n"
        "  allow_topic = \"ok\"; deny_topic = \"no\"; dlq_topic = \"dead\"; keep_headers = [\"*\"];\n"
        "  embedded_partitions = 5;\n"
        "  properties = ( (\"security.protocol\", \"plaintext\"), (\"session.timeout.ms\", 45000),\n"
        "                 (\"enable.idempotence\", true) ); };\n"
        "model = { path = \"/m\"; tokenizer = \"/t.json\"; threads = 2; blis_arch = \"skx\";\n"
        "  precision = \"int8\"; };\n"
        "policy = { categories = { S1 = \"One.\"; X_2 = \"Two.\"; }; exclude = [\"X_2\"];\n"
        "  threshold = 0.25; category_scores = true; };\n"
        "batch = { max_events = 8; max_tokens = 2048; max_wait_ms = 0; queue_capacity = 8; };\n"
        "cache = { max_bytes = 0; };\n"
        "limits = { max_event_bytes = 2097152L; max_messages = 4; max_message_bytes = 1000;\n"
        "  max_prompt_tokens = 1024; };\n"
        "metrics = { listen = \"[::1]:0\"; };\nlog = { level = \"debug\"; };\n"
        "health = { stall_seconds = 0; };\n"
        "shutdown_timeout_ms = 500; watchdog = false;\n");
    ck_assert_str_eq(s.brokers, "k1:9092,k2:9092");
    ck_assert_int_eq(s.n_input_topics, 2);
    ck_assert_str_eq(s.input_topics[1], "b.c");
    ck_assert_int_eq(s.n_props, 3);
    ck_assert_str_eq(s.props[0].key, "security.protocol");
    ck_assert_str_eq(s.props[1].value, "45000");
    ck_assert_str_eq(s.props[2].value, "true");
    ck_assert_str_eq(s.tokenizer_path, "/t.json");
    ck_assert_str_eq(s.blis_arch, "skx");
    ck_assert_int_eq(s.precision, PREC_INT8);
    ck_assert_int_eq(s.categories.n, 2);
    ck_assert_str_eq(s.categories.items[1].code, "X_2");
    ck_assert_str_eq(s.categories.items[1].name, "Two.");
    ck_assert_str_eq(s.exclude[0], "X_2");
    ck_assert(s.threshold > 0.24f && s.threshold < 0.26f);
    ck_assert_int_eq(s.category_scores, 1);
    ck_assert_int_eq(s.batch_max_wait_ms, 0);
    ck_assert(s.cache_max_bytes == 0);
    ck_assert_uint_eq(s.max_event_bytes, 2097152);
    ck_assert_int_eq(s.max_prompt_tokens, 1024);
    ck_assert_str_eq(s.metrics_listen, "[::1]:0");
    ck_assert_int_eq(s.log_level, LOG_DEBUG);
    ck_assert_int_eq(s.watchdog, 0);
    ck_assert_int_eq(s.stall_seconds, 0);
    settings_free(&s);
}
END_TEST

START_TEST(categories_as_pairs_keep_order) {
    Settings s = load_ok("policy = {\n categories = ( (\"S2\", \"B.\"), (\"S1\", \"A.\") );\n exclude = [\"S1\"];\n};\n");
    ck_assert_int_eq(s.categories.n, 2);
    ck_assert_str_eq(s.categories.items[0].code, "S2");
    ck_assert_str_eq(s.categories.items[1].name, "A.");
    settings_free(&s);
}
END_TEST

START_TEST(error_syntax) {
    expect_error("batch = {\n  max_events = 4;\n  max_tokens = ;\n};\n", 3, NULL, "syntax error");
}
END_TEST

START_TEST(error_wrong_type) {
    expect_error("# c\nbatch = {\n  max_events = \"many\";\n};\n", 3, "batch.max_events", "expected an integer");
    expect_error("watchdog = 1;\n", 1, "watchdog", "boolean");
    expect_error("kafka = {\n input_topics = \"x\";\n};\n", 2, "kafka.input_topics", "array of strings");
    expect_error("kafka = {\n input_topics = (\"a\", 3);\n};\n", 2, "kafka.input_topics[1]", "expected a string");
    expect_error("model = \"x\";\n", 1, "model", "expected a group");
}
END_TEST

START_TEST(error_out_of_range) {
    expect_error("batch = {\n max_events = 0;\n};\n", 2, "batch.max_events", "out of range");
    expect_error("\n\npolicy = { threshold = 1.5; };\n", 3, "policy.threshold", "out of range");
    expect_error("policy = { threshold = -2; };\n", 1, "policy.threshold", "out of range");
    expect_error("cache = { max_bytes = -1; };\n", 1, "cache.max_bytes", "out of range");
    expect_error("cache = { max_bytes = \"1G\"; };\n", 1, "cache.max_bytes", "integer");
    expect_error("cache = { max_size = 5; };\n", 1, "cache.max_size", "unknown setting");
    expect_error("limits = {\n max_event_bytes = 10;\n};\n", 2, "limits.max_event_bytes", "out of range");
    expect_error("metrics = {\n listen = \"localhost\";\n};\n", 2, "metrics.listen", "HOST:PORT");
    expect_error("metrics = {\n listen = \"0.0.0.0:70000\";\n};\n", 2, "metrics.listen", "HOST:PORT");
    expect_error("log = {\n level = \"verbose\";\n};\n", 2, "log.level", "unknown level");
    expect_error("model = {\n blis_arch = \"pentium\";\n};\n", 2, "model.blis_arch", "unknown BLIS");
    expect_error("model = {\n precision = \"fp8\";\n};\n", 2, "model.precision", "unknown precision");
    expect_error("model = {\n precision = \"\";\n};\n", 2, "model.precision", "must not be empty");
    expect_error("model = {\n precision = 8;\n};\n", 2, "model.precision", "a string");
    expect_error("kafka = {\n allow_topic = \"a b\";\n};\n", 2, "kafka.allow_topic", "legal topic name");
    expect_error("health = {\n stall_seconds = 5;\n};\n", 2, "health.stall_seconds", "at least 10");
    expect_error("health = {\n stall_seconds = -1;\n};\n", 2, "health.stall_seconds", "out of range");
    expect_error("health = {\n stall_seconds = 1.5;\n};\n", 2, "health.stall_seconds", "integer");
    expect_error("health = {\n stall = 60;\n};\n", 2, "health.stall", "unknown setting");
}
END_TEST

START_TEST(error_unknown_setting) {
    expect_error("batch = { max_events = 4; };\nbatchh = { max_events = 4; };\n", 2, "batchh",
                 "unknown setting (did you mean \"batch\"?)");
    expect_error("kafka = {\n  brokers = \"x\";\n  grop_id = \"g\";\n};\n", 3, "kafka.grop_id",
                 "did you mean \"group_id\"");
    expect_error("limits = {\n\n  frobnicate = 1;\n};\n", 3, "limits.frobnicate", "unknown setting");
}
END_TEST

START_TEST(error_categories) {
    expect_error("policy = {\n  categories = (\n    (\"S1\", \"A.\"),\n    (\"S1\", \"B.\")\n  );\n};\n", 4,
                 "policy.categories[1]", "duplicate category code \"S1\"");
    expect_error("policy = {\n  categories = ( (\"S 1\", \"A.\") );\n};\n", 2, "policy.categories[0]", "category code");
    expect_error("policy = {\n  categories = ( (\"S1\") );\n};\n", 2, "policy.categories[0]", "pair");
    expect_error("policy = {\n categories = ( (\"A\", \"a\") );\n exclude = [\"A\"];\n};\n", 3,
                 "policy.exclude", "excludes every category");
    /* S14 exists for the 8B only: refused for the 1B, left to the start-up
     * check against the model when the family is "auto" */
    expect_error("model = { prompt_format = \"llama-guard-3-1b\"; };\npolicy = {\n  exclude = [\"S14\"];\n};\n", 3,
                 "policy.exclude[0]", "not one of the categories");
    expect_error("policy = {\n  exclude = [\"S15\"];\n};\n", 2, "policy.exclude[0]", "not one of the categories");
    expect_error("model = { prompt_format = \"llama-guard-3\"; };\n", 1, "model.prompt_format", "unknown prompt format");
    expect_error("policy = {\n categories = ( (\"A\", \"a\"), (\"B\", \"b\") );\n exclude = [\"S1\"];\n};\n", 3,
                 "policy.exclude[0]", "not one of the categories");
}
END_TEST

/* The prompt builder takes 1..PROMPT_MAX_CATEGORIES (64) categories: a longer
 * configured list used to pass the check and reload, then dead-letter every
 * event. It is refused at load time, naming the list. */
START_TEST(error_too_many_categories) {
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "policy = {\n categories = (\n");
    for (int i = 1; i <= 70; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "  (\"C%d\", \"Category %d.\")%s\n", i, i, i < 70 ? "," : "");
    snprintf(text + n, sizeof text - n, " );\n};\n");
    expect_error(text, 2, "policy.categories", "70 entries; at most 64");
    /* 64 is fine */
    n = (size_t)snprintf(text, sizeof text, "policy = {\n categories = (\n");
    for (int i = 1; i <= 64; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, "  (\"C%d\", \"Category %d.\")%s\n", i, i, i < 64 ? "," : "");
    snprintf(text + n, sizeof text - n, " );\n};\n");
    Settings s = load_ok(text);
    ck_assert_int_eq(s.categories.n, 64);
    settings_free(&s);
}
END_TEST

/* Events accept an exclude list with repeated codes (they are harmless); the
 * configuration must too, counting distinct codes when deciding whether
 * every category is excluded. */
START_TEST(exclude_duplicates_accepted) {
    Settings s = load_ok("policy = {\n categories = ( (\"A\", \"a\"), (\"B\", \"b\") );\n exclude = [\"A\", \"A\"];\n};\n");
    ck_assert_int_eq(s.n_exclude, 2);
    settings_free(&s);
    s = load_ok("policy = { exclude = [\"S6\", \"S6\", \"S6\", \"S6\", \"S6\", \"S6\", \"S6\", \"S6\", \"S6\", "
                "\"S6\", \"S6\", \"S6\", \"S6\", \"S6\"]; };\n");
    settings_free(&s);
    expect_error("policy = {\n categories = ( (\"A\", \"a\"), (\"B\", \"b\") );\n exclude = [\"A\", \"B\", \"A\"];\n};\n",
                 3, "policy.exclude", "excludes every category");
}
END_TEST

/* threshold: -1 (greedy) or a probability in [0, 1); -0.5 meant nothing.
 * model.threads: 0 = all cores; negative values are refused. */
START_TEST(error_threshold_and_threads) {
    expect_error("policy = {\n threshold = -0.5;\n};\n", 2, "policy.threshold", "out of range");
    expect_error("policy = { threshold = -1.5; };\n", 1, "policy.threshold", "out of range");
    expect_error("model = {\n threads = -1;\n};\n", 2, "model.threads", "out of range");
    Settings s = load_ok("policy = { threshold = -1; };\nmodel = { threads = 0; };\n");
    ck_assert(s.threshold < 0);
    settings_free(&s);
    s = load_ok("policy = { threshold = 0; };\n");
    ck_assert(s.threshold == 0.0f);
    settings_free(&s);
}
END_TEST

START_TEST(error_kafka_rules) {
    expect_error("kafka = {\n delivery = \"exactly-once\";\n};\n", 2, "kafka.delivery", "exactly-once is not supported");
    expect_error("kafka = {\n input_topics = [\"in\"];\n dlq_topic = \"in\";\n};\n", 3, "kafka.dlq_topic",
                 "also an input topic");
    expect_error("kafka = {\n properties = (\n (\"group.id\", \"x\") );\n};\n", 3, "kafka.properties[0]",
                 "use kafka.group_id");
    expect_error("kafka = {\n properties = ( (\"a.b\", \"1\"),\n (\"a.b\", \"2\") );\n};\n", 3,
                 "kafka.properties[1]", "set twice");
    expect_error("kafka = {\n properties = { debug = \"all\"; };\n};\n", 2, "kafka.properties", "pairs");
}
END_TEST

/* kafka.properties go through librdkafka at load time (so --check-config and
 * reload refuse them, instead of the daemon exiting after loading the model),
 * and settings that break at-least-once delivery are refused. Errors name the
 * pair's line; secret values never appear in them. */
START_TEST(error_kafka_properties_checked_by_librdkafka) {
    expect_error("kafka = {\n properties = (\n (\"session.timeout.ms\", 6000),\n (\"no.such.property\", \"1\") );\n};\n",
                 4, "kafka.properties[1]", "'no.such.property': unknown property");
    expect_error("kafka = {\n properties = (\n (\"session.timeout.ms\", \"soon\") );\n};\n", 3,
                 "kafka.properties[0]", "'session.timeout.ms'");
    expect_error("kafka = {\n properties = (\n (\"acks\", 0) );\n};\n", 3, "kafka.properties[0]",
                 "\"acks\" = \"0\" is refused");
    expect_error("kafka = {\n properties = ( (\"linger.ms\", 1),\n (\"request.required.acks\", \"0\") );\n};\n", 3,
                 "kafka.properties[1]", "never acknowledges");
    expect_error("kafka = {\n properties = (\n (\"topic.acks\", \"0\") );\n};\n", 3, "kafka.properties[0]", "acks=0");
    expect_error("kafka = {\n properties = (\n (\"delivery.report.only.error\", true) );\n};\n", 3,
                 "kafka.properties[0]", "delivery report");
    expect_error("kafka = {\n properties = (\n (\"auto.offset.reset\", \"latest\") );\n};\n", 3,
                 "kafka.properties[0]", "skip");
    /* combinations librdkafka only checks when a client is built */
    expect_error("kafka = {\n properties = ( (\"enable.idempotence\", true),\n (\"acks\", 1) );\n};\n", 2,
                 "kafka.properties", "producer: `acks` must be set to `all`");
    /* a secret's value is not echoed, whether librdkafka's complaint is about
     * it or not */
    const char *path = check_write_file("t.conf", "kafka = {\n properties = ( (\"sasl.password\", \"hunter2\"),\n"
                                            " (\"security.protocol\", \"sasl_plaintext\"),\n"
                                            " (\"sasl.mechanisms\", \"hunter2\") );\n};\n");
    char err[1024];
    Settings s;
    ck_assert_int_eq(settings_load(path, &s, err, sizeof err), -1);
    ck_assert_msg(!strstr(err, "hunter2") && strstr(err, "kafka.properties"), "%s", err);
    /* accepted: acks=1, earliest, a usual SASL setup */
    s = load_ok("kafka = { properties = ( (\"acks\", \"1\"), (\"auto.offset.reset\", \"earliest\"),\n"
                " (\"security.protocol\", \"sasl_plaintext\"), (\"sasl.mechanisms\", \"SCRAM-SHA-512\"),\n"
                " (\"sasl.username\", \"u\"), (\"sasl.password\", \"p\") ); };\n");
    ck_assert_int_eq(s.n_props, 6);
    settings_free(&s);
}
END_TEST

/* Limits above what the engine can do are refused at load time (they used to
 * be accepted, then every batch over 65,536 tokens failed as a whole). */
START_TEST(error_beyond_engine_limits) {
    expect_error("batch = {\n max_tokens = 131072;\n};\nlimits = { max_prompt_tokens = 4096; };\n", 2,
                 "batch.max_tokens", "above the engine's limit of 65536 tokens per batch");
    expect_error("batch = { max_tokens = 65536; };\nlimits = {\n\n max_prompt_tokens = 131072;\n};\n", 4,
                 "limits.max_prompt_tokens", "above the engine's limit of 65536 tokens per prompt");
    expect_error("batch = {\n max_tokens = 0;\n};\n", 2, "batch.max_tokens", "out of range");
    Settings s = load_ok("batch = { max_tokens = 65536; };\nlimits = { max_prompt_tokens = 65536; };\n");
    ck_assert_int_eq(s.batch_max_tokens, 65536);
    ck_assert_int_eq(s.max_prompt_tokens, 65536);
    settings_free(&s);
}
END_TEST

START_TEST(error_cross_settings) {
    expect_error("batch = { max_tokens = 1024; };\nlimits = {\n max_prompt_tokens = 2048;\n};\n", 3,
                 "limits.max_prompt_tokens", "exceeds batch.max_tokens");
    expect_error("batch = {\n max_events = 64;\n queue_capacity = 32;\n};\n", 3, "batch.queue_capacity",
                 "smaller than batch.max_events");
}
END_TEST

START_TEST(error_in_included_file_names_that_file) {
    char inc[400];
    snprintf(inc, sizeof inc, "%s/inc.conf", check_tmpdir);
    check_write_file("inc.conf", "max_events = 1;\n\nmax_tokenz = 5;\n");
    const char *path = check_write_file("main.conf", "batch = {\n  @include \"inc.conf\"\n};\n");
    Settings s;
    char err[1024], want[600];
    ck_assert_int_eq(settings_load(path, &s, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: batch.max_tokenz: unknown setting", inc);
    ck_assert_msg(strstr(err, "inc.conf:3: batch.max_tokenz: unknown setting"), "got \"%s\", want \"%s\"", err, want);
}
END_TEST

START_TEST(error_missing_file) {
    Settings s;
    char err[512];
    ck_assert_int_eq(settings_load("/nonexistent/guardd.conf", &s, err, sizeof err), -1);
    ck_assert_str_eq(err, "/nonexistent/guardd.conf: cannot open: No such file or directory");
}
END_TEST

START_TEST(secrets_are_redacted) {
    Settings s = load_ok(
        "kafka = { properties = ( (\"sasl.username\", \"alice\"), (\"sasl.password\", \"hunter2\"),\n"
        "  (\"ssl.key.password\", \"k3y-pass\"), (\"sasl.oauthbearer.config\", \"principal=x secret=y\"),\n"
        "  (\"ssl.keystore.password\", \"cl1ent\") ); };\n");
    char *out = NULL;
    size_t len;
    FILE *f = open_memstream(&out, &len);
    settings_dump(&s, f);
    fclose(f);
    static const char *const secrets[] = {"hunter2", "k3y-pass", "principal=x", "cl1ent"};
    for (int i = 0; i < 4; i++) ck_assert_msg(!strstr(out, secrets[i]), "secret %s leaked:\n%s", secrets[i], out);
    ck_assert_msg(strstr(out, "kafka.properties[\"sasl.password\"] = \"***\""), "%s", out);
    ck_assert_msg(strstr(out, "kafka.properties[\"sasl.username\"] = \"alice\""), "%s", out);
    ck_assert_str_eq(s.props[1].value, "hunter2");     /* the client still gets it */
    ck_assert_str_eq(settings_redacted(&s.props[1]), "***");
    ck_assert_str_eq(settings_redacted(&s.props[0]), "alice");
    free(out);
    settings_free(&s);
    ck_assert(settings_is_secret("SASL.PASSWORD"));
    ck_assert(settings_is_secret("ssl.keystore.password"));
    ck_assert(settings_is_secret("ssl.key.pem"));
    ck_assert(!settings_is_secret("security.protocol"));
    ck_assert(!settings_is_secret("ssl.ca.location"));
}
END_TEST

/* Runs settings_check_main with stderr captured into a file; returns the text. */
static int run_check_main(const char *path, char *out, size_t outlen) {
    char cap[400];
    snprintf(cap, sizeof cap, "%s/stderr.txt", check_tmpdir);
    fflush(stderr);
    int saved = dup(2), fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    int rc = settings_check_main(path);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(cap, "r");
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = 0;
    fclose(f);
    return rc;
}

START_TEST(check_main_reports) {
    char out[1024], want[600];
    const char *good = check_write_file("good.conf", "watchdog = false;\n");
    ck_assert_int_eq(run_check_main(good, out, sizeof out), 0);
    snprintf(want, sizeof want, "%s: OK\n", good);
    ck_assert_str_eq(out, want);
    const char *bad = check_write_file("bad.conf", "\nwatchdog = 3;\n");
    ck_assert_int_eq(run_check_main(bad, out, sizeof out), 1);
    snprintf(want, sizeof want, "%s:2: watchdog: expected a boolean", bad);
    ck_assert_msg(!strncmp(out, want, strlen(want)), "%s", out);
}
END_TEST

/* ---- log ------------------------------------------------------------------- */

static char *read_all(const char *path) {
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static int log_to_file(const char *name, char *path, size_t n) {
    snprintf(path, n, "%s/%s", check_tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert(fd >= 0);
    unsetenv("JOURNAL_STREAM");
    log_set_fd(fd);
    return fd;
}

START_TEST(log_levels_filter) {
    char path[400];
    int fd = log_to_file("l.txt", path, sizeof path);
    log_set_level(LOG_WARN);
    log_msg(LOG_INFO, "event=hidden");
    log_msg(LOG_ERROR, "event=shown n=%d", 1);
    log_set_level(LOG_DEBUG);
    log_msg(LOG_DEBUG, "event=debug_now");
    log_set_fd(-1);
    close(fd);
    char *txt = read_all(path);
    ck_assert_ptr_null(strstr(txt, "hidden"));
    ck_assert_ptr_nonnull(strstr(txt, " level=error event=shown n=1\n"));
    ck_assert_ptr_nonnull(strstr(txt, " level=debug event=debug_now\n"));
    ck_assert(!strncmp(txt, "ts=", 3));
    LogLevel l;
    ck_assert_int_eq(log_level_parse("warn", &l), 0);
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert_int_eq(log_level_parse("loud", &l), -1);
    log_set_level(LOG_INFO);
}
END_TEST

START_TEST(log_journal_prefix) {
    char path[400];
    int fd = log_to_file("j.txt", path, sizeof path);
    close(fd);
    /* the prefix is only used when stderr itself goes to the journal */
    fd = open(path, O_WRONLY | O_TRUNC);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    close(fd);
    setenv("JOURNAL_STREAM", "8:1234", 1);
    log_set_fd(-1);
    log_msg(LOG_WARN, "event=x");
    dup2(saved, 2);
    close(saved);
    unsetenv("JOURNAL_STREAM");
    log_set_fd(-1);
    ck_assert_str_eq(read_all(path), "<4>level=warn event=x\n");
}
END_TEST

START_TEST(log_quote_values) {
    char buf[64];
    ck_assert_str_eq(log_quote("plain", buf, sizeof buf), "plain");
    ck_assert_str_eq(log_quote("two words", buf, sizeof buf), "\"two words\"");
    ck_assert_str_eq(log_quote("a\"b\\c\nd", buf, sizeof buf), "\"a\\\"b\\\\c\\nd\"");
    ck_assert_str_eq(log_quote("", buf, sizeof buf), "\"\"");
    ck_assert_str_eq(log_quote("k=v", buf, sizeof buf), "\"k=v\"");
    char small[8];
    ck_assert_str_eq(log_quote("a long value", small, sizeof small), "\"a lon\"");
}
END_TEST

#define LOG_THREADS 4
#define LOG_LINES 400

static void *log_worker(void *arg) {
    int id = (int)(long)arg;
    for (int i = 0; i < LOG_LINES; i++)
        log_msg(LOG_INFO, "event=t thread=%d i=%d pad=%0200d end=1", id, i, 0);
    return NULL;
}

START_TEST(log_lines_stay_whole_across_threads) {
    char path[400];
    int fd = log_to_file("t.txt", path, sizeof path);
    log_set_level(LOG_INFO);
    pthread_t th[LOG_THREADS];
    for (long t = 0; t < LOG_THREADS; t++) pthread_create(&th[t], NULL, log_worker, (void *)t);
    for (int t = 0; t < LOG_THREADS; t++) pthread_join(th[t], NULL);
    log_set_fd(-1);
    close(fd);
    char *txt = read_all(path), *save = NULL;
    int lines = 0, seen[LOG_THREADS] = {0};
    for (char *l = strtok_r(txt, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int id, i;
        char *p = strstr(l, " level=info event=t thread=");
        ck_assert_msg(p && sscanf(p, " level=info event=t thread=%d i=%d", &id, &i) == 2, "bad line: %s", l);
        ck_assert_msg(strlen(l) > 200 && !strcmp(l + strlen(l) - 6, " end=1"), "cut line: %s", l);
        ck_assert(id >= 0 && id < LOG_THREADS);
        ck_assert_int_eq(i, seen[id]);     /* each thread's lines in its own order */
        seen[id]++;
        lines++;
    }
    ck_assert_int_eq(lines, LOG_THREADS * LOG_LINES);
}
END_TEST

int main(void) {
    Suite *s = suite_create("settings");
    TCase *tc = check_case(s, "settings", 0);
    check_tmpdir_case(tc);
    tcase_add_test(tc, shipped_config_loads_with_documented_defaults);
    tcase_add_test(tc, empty_config_equals_shipped_defaults);
    tcase_add_test(tc, full_config_values_are_read);
    tcase_add_test(tc, categories_as_pairs_keep_order);
    tcase_add_test(tc, error_syntax);
    tcase_add_test(tc, error_wrong_type);
    tcase_add_test(tc, error_out_of_range);
    tcase_add_test(tc, error_unknown_setting);
    tcase_add_test(tc, error_categories);
    tcase_add_test(tc, error_too_many_categories);
    tcase_add_test(tc, exclude_duplicates_accepted);
    tcase_add_test(tc, error_threshold_and_threads);
    tcase_add_test(tc, error_kafka_rules);
    tcase_add_test(tc, error_kafka_properties_checked_by_librdkafka);
    tcase_add_test(tc, error_beyond_engine_limits);
    tcase_add_test(tc, error_cross_settings);
    tcase_add_test(tc, error_in_included_file_names_that_file);
    tcase_add_test(tc, error_missing_file);
    tcase_add_test(tc, secrets_are_redacted);
    tcase_add_test(tc, check_main_reports);
    TCase *lg = check_case(s, "log", 0);
    check_tmpdir_case(lg);
    tcase_add_test(lg, log_levels_filter);
    tcase_add_test(lg, log_journal_prefix);
    tcase_add_test(lg, log_quote_values);
    tcase_add_test(lg, log_lines_stay_whole_across_threads);
    return check_run(s);
}
