/* guardd - the Llama Guard 3 Kafka classifier daemon.
 *
 *   guardd [--config FILE]      run (default /etc/guardd/guardd.conf)
 *   guardd --check-config FILE  validate a configuration file and exit
 *   guardd --version
 *
 * Start-up: settings -> metrics endpoint -> model -> Kafka (an in-process
 * mock cluster when kafka.brokers = "embedded") -> pipeline (pipeline.h).
 * READY=1 is sent once the model is loaded and the group has assigned
 * partitions. The main thread then only waits for signals (they are blocked
 * in every other thread): SIGTERM/SIGINT stop gracefully within
 * shutdown_timeout_ms, SIGHUP re-reads the file and applies the reloadable
 * settings (a bad file keeps the old ones). Every 250 ms it refreshes the
 * systemd STATUS line and checks for a fatal Kafka error (exit 1, so systemd
 * restarts the service; uncommitted input is simply re-read).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "classifier.h"
#include "errmsg.h"
#include "log.h"
#include "metrics.h"
#include "mockbroker.h"
#include "notify.h"
#include "pipeline.h"
#include "settings.h"

#ifndef GUARDD_VERSION
#define GUARDD_VERSION "0.1.0"
#endif
#define DEFAULT_CONFIG "/etc/guardd/guardd.conf"

static void usage(FILE *f) {
    fprintf(f, "usage: guardd [--config FILE] | --check-config FILE | --version\n"
               "  --config FILE        configuration (default " DEFAULT_CONFIG ")\n"
               "  --check-config FILE  validate FILE and exit (0 = valid)\n"
               "  --version            print the version and exit\n");
}

static Classifier *open_model(const Settings *s) {
    ClassifierOptions o = {
        .model_dir = s->model_path, .tokenizer_path = s->tokenizer_path,
        .threads = s->threads, .blis_arch = s->blis_arch, .precision = s->precision,
        .threshold = s->threshold,
        .max_decode_tokens = 16, .category_scores = s->category_scores,
        .max_prompt_tokens = s->max_prompt_tokens, .prompt_format = s->prompt_format,
        .cache_max_bytes = s->cache_max_bytes > 0 ? s->cache_max_bytes : -1,
    };
    char err[512], q[600];
    notify_status("loading model %s", s->model_path);
    log_msg(LOG_INFO, "event=model_loading path=%s", log_quote(s->model_path, q, sizeof q));
    Classifier *c = classifier_open(&o, err, sizeof err);
    if (!c) {
        log_msg(LOG_ERROR, "event=model_failed error=%s", log_quote(err, q, sizeof q));
        return NULL;
    }
    const Model *m = classifier_model(c);
    metrics_init(m->name, m->revision);
    metrics_set_model_precision(precision_name(m->precision), m->kernels);
    metrics_set_model_loaded(1);
    log_msg(LOG_INFO, "event=model_loaded name=%s revision=%s layers=%d precision=%s kernels=%s "
            "weight_bytes=%zu peak_rss_kb=%ld seconds=%.2f prompt_format=%s prompt_format_source=%s", m->name,
            m->revision, m->cfg.n_layers, precision_name(m->precision), m->kernels, m->weight_bytes,
            m->peak_rss_kb, m->load_seconds, prompt_format_name(classifier_prompt_format(c)),
            log_quote(classifier_prompt_format_note(c), q, sizeof q));
    return c;
}

/* policy.exclude without policy.categories names codes of the model's
 * default list, which is known only now (S14 exists for the 8B only).
 * 0, or -1 with err set. */
static int policy_fits_model(const Settings *s, const Classifier *c, char *err, size_t errlen) {
    if (s->categories.n > 0 || s->n_exclude == 0) return 0;
    const CategoryList *def = classifier_default_categories(c);
    int left = def->n;
    for (int i = 0; i < def->n; i++)
        for (int k = 0; k < s->n_exclude; k++)
            if (!strcmp(def->items[i].code, s->exclude[k])) { left--; break; }
    for (int k = 0; k < s->n_exclude; k++) {
        int found = 0;
        for (int i = 0; i < def->n && !found; i++) found = !strcmp(def->items[i].code, s->exclude[k]);
        if (!found)
            return errmsg(err, errlen, "policy.exclude: \"%s\" is not in the %s default categories (%s..%s)",
                          s->exclude[k], prompt_format_name(classifier_prompt_format(c)),
                          def->items[0].code, def->items[def->n - 1].code);
    }
    if (left == 0) return errmsg(err, errlen, "policy.exclude excludes every category of the model");
    return 0;
}

/* The embedded cluster gets every topic guardd uses, so nothing depends on
 * auto-creation (which always makes 4 partitions). */
static MockBroker *start_embedded(const Settings *s) {
    char err[256];
    MockBroker *mb = mockbroker_start(1, err, sizeof err);
    if (!mb) {
        log_msg(LOG_ERROR, "event=embedded_broker_failed error=\"%s\"", err);
        return NULL;
    }
    int parts = s->embedded_partitions > 0 ? s->embedded_partitions : 3;
    for (int i = 0; i < s->n_input_topics; i++)
        mockbroker_create_topic(mb, s->input_topics[i], parts, err, sizeof err);
    const char *out[] = {s->allow_topic, s->deny_topic, s->dlq_topic};
    for (int i = 0; i < 3; i++) mockbroker_create_topic(mb, out[i], parts, err, sizeof err);
    log_msg(LOG_INFO, "event=embedded_broker bootstrap=%s partitions=%d",
            mockbroker_bootstraps(mb), parts);
    return mb;
}

static void reload(const char *path, Settings *cur, Pipeline *p, const Classifier *clf) {
    notify_reloading();
    Settings next;
    char err[1024], q[1100];
    int loaded = settings_load(path, &next, err, sizeof err) == 0;
    if (loaded && policy_fits_model(&next, clf, err, sizeof err) < 0) {
        settings_free(&next);
        loaded = 0;
    }
    if (!loaded) {
        log_msg(LOG_ERROR, "event=reload_failed error=%s action=kept_old_settings",
                log_quote(err, q, sizeof q));
    } else {
        /* only the reloadable settings change; the rest needs a restart */
        if (next.precision != cur->precision)
            log_msg(LOG_WARN, "event=reload_restart_needed setting=model.precision value=%s "
                    "kept=%s", precision_name(next.precision), precision_name(cur->precision));
        if (next.prompt_format != cur->prompt_format)
            log_msg(LOG_WARN, "event=reload_restart_needed setting=model.prompt_format value=%s kept=%s",
                    prompt_format_name(next.prompt_format), prompt_format_name(classifier_prompt_format(clf)));
        log_set_level(next.log_level);
        pipeline_reload(p, &next);
        settings_free(cur);
        *cur = next;
        log_msg(LOG_INFO, "event=reloaded threshold=%g category_scores=%s batch_max_events=%d "
                "batch_max_tokens=%d batch_max_wait_ms=%d log_level=%s stall_seconds=%d", cur->threshold,
                cur->category_scores ? "true" : "false", cur->batch_max_events,
                cur->batch_max_tokens, cur->batch_max_wait_ms, log_level_name(cur->log_level),
                cur->stall_seconds);
    }
    notify_ready();
}

/* Every 250 ms: READY the first time the group assigned partitions, STATUS. */
static void tick(Pipeline *p, int *ready) {
    PipelineStats st;
    pipeline_stats(p, &st);
    if (!*ready && st.joined) {
        *ready = 1;
        notify_ready();
        log_msg(LOG_INFO, "event=ready partitions=%d", st.assigned);
    }
    notify_status("%s: %d partitions%s, consumed %ld, verdicts %ld, dlq %ld, queue %d, "
                  "awaiting ack %ld%s", st.joined ? "running" : "waiting for partitions",
                  st.assigned, st.paused ? " (paused: backpressure)" : "", st.consumed,
                  st.verdicts, st.dlq, st.queue_depth, st.outstanding,
                  st.engine_stuck ? ", inference stalled" : st.stalled ? ", partitions stalled" : "");
}

/* Waits for signals; returns 0 on SIGTERM/SIGINT, 1 on a fatal Kafka error. */
static int serve(const char *path, Settings *s, Pipeline *p, const Classifier *clf, const sigset_t *sigs) {
    int ready = 0;
    for (;;) {
        struct timespec ts = {0, 250000000};  /* READY soon after the assignment */
        int sig = sigtimedwait(sigs, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            log_msg(LOG_INFO, "event=stopping signal=%s", sig == SIGTERM ? "TERM" : "INT");
            return 0;
        }
        if (sig == SIGHUP) reload(path, s, p, clf);
        tick(p, &ready);
        PipelineStats st;
        pipeline_stats(p, &st);
        if (st.fatal) return 1;
    }
}

/* 1 if SIGTERM or SIGINT arrived (they are blocked, so they wait as pending). */
static int stop_pending(void) {
    sigset_t pend;
    sigpending(&pend);
    return sigismember(&pend, SIGTERM) || sigismember(&pend, SIGINT);
}

static int run(const char *path) {
    Settings s;
    char err[1024], q[1100];
    if (settings_load(path, &s, err, sizeof err) < 0) {
        fprintf(stderr, "guardd: %s\n", err);
        return 2;
    }
    log_set_level(s.log_level);
    /* signals go to the main thread only: block them before any thread starts */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    /* a launcher may have left them ignored (background jobs of a
     * non-interactive shell ignore SIGINT): ignored signals are discarded,
     * so sigtimedwait would never see them */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_msg(LOG_INFO, "event=starting version=" GUARDD_VERSION " config=%s",
            log_quote(path, q, sizeof q));

    int rc = 1;
    MockBroker *mb = NULL;
    Pipeline *p = NULL;
    metrics_init("", "");
    if (s.metrics_listen && *s.metrics_listen &&
        metrics_http_start(s.metrics_listen, err, sizeof err) < 0) {
        log_msg(LOG_ERROR, "event=metrics_failed error=%s", log_quote(err, q, sizeof q));
        goto out;
    }
    if (s.metrics_listen && *s.metrics_listen)
        log_msg(LOG_INFO, "event=metrics_listening port=%d", metrics_http_port());
    Classifier *clf = open_model(&s);
    if (!clf) goto out;
    if (policy_fits_model(&s, clf, err, sizeof err) < 0) {
        log_msg(LOG_ERROR, "event=config_failed config=%s error=%s", path, log_quote(err, q, sizeof q));
        fprintf(stderr, "guardd: %s: %s\n", path, err);
        goto out_model;
    }
    if (stop_pending()) {   /* asked to stop while the model loaded: no Kafka at all */
        log_msg(LOG_INFO, "event=stopping when=model_loaded");
        notify_stopping();
        rc = 0;
        goto out_model;
    }
    const char *brokers = s.brokers;
    if (!strcmp(s.brokers, "embedded")) {
        if (!(mb = start_embedded(&s))) goto out_model;
        brokers = mockbroker_bootstraps(mb);
    }
    notify_status("joining group %s", s.group_id);
    p = pipeline_start(&s, brokers, clf, err, sizeof err);
    if (!p) {
        log_msg(LOG_ERROR, "event=kafka_failed error=%s", log_quote(err, q, sizeof q));
        goto out_broker;
    }
    int fatal = serve(path, &s, p, clf, &sigs);
    notify_stopping();
    notify_status("stopping");
    /* what follows the pipeline (embedded cluster, model, HTTP) takes ~1 s */
    int budget = s.shutdown_timeout_ms > 3000 ? s.shutdown_timeout_ms - 1500
                                              : s.shutdown_timeout_ms / 2;
    int unclean = pipeline_stop(p, budget);
    rc = fatal ? 1 : 0;
    if (unclean) log_msg(LOG_WARN, "event=stop_incomplete note=\"uncommitted input is re-read on restart\"");
out_broker:
    mockbroker_stop(mb);
out_model:
    classifier_close(clf);
out:
    metrics_http_stop();
    log_msg(LOG_INFO, "event=exit code=%d", rc);
    settings_free(&s);
    return rc;
}

int main(int argc, char **argv) {
    const char *config = DEFAULT_CONFIG;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--version")) {
            printf("guardd " GUARDD_VERSION "\n");
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--check-config") && i + 1 < argc) {
            return settings_check_main(argv[i + 1]);
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else {
            fprintf(stderr, "guardd: unknown or incomplete argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return run(config);
}
