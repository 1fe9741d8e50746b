/* fuzz_metrics.c - libFuzzer harness for the outside text that reaches the
 * metrics registry (daemon/metrics.c) and for the exposition it must keep
 * well-formed: label values taken from Kafka and events (topic names,
 * category codes, DLQ reasons, client error kinds), librdkafka's statistics
 * JSON (metrics_kafka_stats), and the metrics.listen address
 * (metrics_parse_listen).
 *
 * Input: lines of label values, then a NUL byte, then a statistics JSON
 * document. Each line goes to one of the four labelled counters (by its
 * position) and through metrics_parse_listen; the JSON to metrics_kafka_stats.
 * The property: metrics_render() stays valid Prometheus text format 0.0.4
 * (valid UTF-8, HELP/TYPE comments, samples "name{label="escaped",...} value"),
 * because a single bad line makes Prometheus drop the whole scrape.
 */
#include "fuzz_common.h"
#include "metrics.h"
#include "metrics_internal.h"
#include <ctype.h>
#include <string.h>

/* The checker below scans ~150 KB per input once the registry is full: kept
 * out of coverage instrumentation, which would make it the fuzzer's main cost
 * and add meaningless features. */
#define NOCOV __attribute__((no_sanitize("coverage")))

NOCOV static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : 9;
        if (k == 9 || i + k >= n) return 0;
        for (size_t j = 1; j <= k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) || (c == 0xf0 && s[i + 1] < 0x90) ||
            (c == 0xf4 && s[i + 1] > 0x8f))
            return 0;
        i += k + 1;
    }
    return 1;
}

NOCOV static const char *name_end(const char *p, int colon) {
    if (!(isalpha((unsigned char)*p) || *p == '_' || (colon && *p == ':'))) return NULL;
    while (isalnum((unsigned char)*p) || *p == '_' || (colon && *p == ':')) p++;
    return p;
}

/* One sample line (without '\n'); 1 if well-formed. */
NOCOV static int sample_ok(const char *p) {
    if (!(p = name_end(p, 1))) return 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (!(p = name_end(p, 0)) || *p++ != '=' || *p++ != '"') return 0;
            while (*p != '"') {
                if (!*p) return 0;
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n') return 0;
                }
                p++;
            }
            p++;
            if (*p == ',') p++;
            else if (*p != '}') return 0;
        }
        p++;
    }
    if (*p++ != ' ') return 0;
    if (!strcmp(p, "NaN") || !strcmp(p, "+Inf") || !strcmp(p, "-Inf")) return 1;
    char *end;
    strtod(p, &end);
    return end != p && !*end;
}

NOCOV static void check_exposition(const char *text) {
    size_t n = strlen(text);
    FUZZ_ASSERT(n > 0 && text[n - 1] == '\n', "exposition does not end with a newline");
    FUZZ_ASSERT(utf8_ok((const unsigned char *)text, n), "exposition is not valid UTF-8");
    char *copy = strdup(text), *save = NULL;
    FUZZ_ASSERT(copy, "out of memory");
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) continue;
        FUZZ_ASSERT(sample_ok(line), "malformed exposition line: %s", line);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t lab_len = nul ? (size_t)(nul - data) : size;
    char *labels = strndup((const char *)data, lab_len);
    FUZZ_ASSERT(labels, "out of memory");
    int i = 0;
    char *save = NULL;
    for (char *l = strtok_r(labels, "\n", &save); l; l = strtok_r(NULL, "\n", &save), i++) {
        switch (i % 4) {
        case 0: metrics_event_consumed(l); break;
        case 1: metrics_category(l); break;
        case 2: metrics_dlq(l); break;
        default: metrics_kafka_error(l); break;
        }
        char host[256], err[256], clean[200];
        int port;
        if (metrics_parse_listen(l, host, sizeof host, &port, err, sizeof err) == 0)
            FUZZ_ASSERT(port >= 0 && port <= 65535 && strlen(host) < sizeof host, "bad listen parse");
        metrics_clean_label(l, clean, sizeof clean);
        FUZZ_ASSERT(utf8_ok((const unsigned char *)clean, strlen(clean)), "cleaned label is not UTF-8");
    }
    free(labels);
    if (nul) {
        char *json = strndup((const char *)nul + 1, size - lab_len - 1);
        FUZZ_ASSERT(json, "out of memory");
        metrics_kafka_stats(json);
        free(json);
    }
    char *text = metrics_render();
    FUZZ_ASSERT(text, "metrics_render failed");
    check_exposition(text);
    free(text);
    return 0;
}
