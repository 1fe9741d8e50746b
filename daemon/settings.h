/* settings.h - guardd's configuration (libconfig file, etc/guardd.conf).
 *
 * settings_load() validates everything and reports the first problem as
 * "FILE:LINE: SETTING: message". Secrets (any kafka property whose name
 * contains "password", "secret" or "credential", or is sasl.oauthbearer.config,
 * sasl.jaas.config or ssl.key.pem) are kept for the client but never printed:
 * settings_redacted() is what logs may show.
 */
#ifndef GUARDD_SETTINGS_H
#define GUARDD_SETTINGS_H
#include <stddef.h>
#include <stdio.h>
#include "conversation.h"
#include "weights.h"
#include "prompt.h"

typedef enum { DELIVERY_AT_LEAST_ONCE = 0 } DeliveryMode;
typedef enum { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } LogLevel;

typedef struct { char *key; char *value; } KafkaProp;

typedef struct {
    /* kafka */
    char *brokers;              /* "embedded" = in-process mock cluster */
    char *group_id;
    char **input_topics; int n_input_topics;
    char *allow_topic, *deny_topic, *dlq_topic;
    DeliveryMode delivery;
    KafkaProp *props; int n_props;  /* librdkafka passthrough (SASL/TLS, timeouts) */
    int embedded_partitions;        /* topics created on the embedded broker */
    char **keep_headers; int n_keep_headers; /* header names copied to verdicts ("*" = all) */

    /* model */
    char *model_path;
    char *tokenizer_path;       /* NULL: model_path/tokenizer.json */
    int threads;                /* 1..1024; 0: one per online CPU */
    char *blis_arch;            /* NULL/"auto" */
    Precision precision;        /* stored form of the weights (restart only); AUTO = bf16 */
    PromptFormat prompt_format; /* AUTO: from the model's tokenizer_config.json */

    /* policy (reloadable) */
    CategoryList categories;    /* n == 0: the prompt family's default list (S1..S13 for
                                   the 1B, S1..S14 for the 8B); at most PROMPT_MAX_CATEGORIES */
    char **exclude; int n_exclude;
    float threshold;            /* -1: greedy; else in [0, 1) */
    int category_scores;

    /* batching (reloadable) */
    int batch_max_events;
    int batch_max_tokens;
    int batch_max_wait_ms;
    int queue_capacity;         /* events between consumer and inference */

    /* prefix cache (reloadable): budget for K/V of computed prompts; 0: none kept */
    long long cache_max_bytes;

    /* limits on input (DLQ beyond) */
    size_t max_event_bytes;
    int max_messages;
    size_t max_message_bytes;
    int max_prompt_tokens;

    /* operations */
    char *metrics_listen;       /* "127.0.0.1:9464"; "" disables */
    LogLevel log_level;         /* reloadable */
    int shutdown_timeout_ms;
    int watchdog;               /* send WATCHDOG=1 when WATCHDOG_USEC is set */
    int stall_seconds;          /* health.stall_seconds (reloadable): not ready after
                                   this long without progress (stall.h); 0: off */
} Settings;

void settings_defaults(Settings *s);
/* Returns 0, or -1 with err = "FILE:LINE: SETTING: what is wrong". */
int settings_load(const char *path, Settings *s, char *err, size_t errlen);
void settings_free(Settings *s);
/* value of a kafka property safe to log ("***" for secrets) */
const char *settings_redacted(const KafkaProp *p);
int settings_is_secret(const char *key);

/* Every setting as "name = value" lines with secrets shown as "***" (for the
 * startup log and --check-config -v). */
void settings_dump(const Settings *s, FILE *f);
/* `guardd --check-config FILE`: loads FILE, prints "FILE: OK" or the error on
 * stderr, returns the process exit code (0 valid, 1 invalid). */
int settings_check_main(const char *path);

#endif
