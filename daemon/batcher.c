/* batcher.c - guardd's inference thread: micro-batches from the queue, one
 * classifier_run per batch, one verdict record per event.
 *
 * A batch's size in tokens (batch.max_tokens) counts what the engine will
 * prefill: each event's prompt minus the start the prefix cache holds when
 * the batch is formed (classifier_prefill_estimate), so the turns of long
 * conversations whose history is cached are batched by their new tokens, not
 * their whole prompts. The estimate is taken here, in the thread that runs the
 * engine, because the cache is not thread-safe; it only sizes batches: the
 * engine bounds its passes itself (2,048 tokens) and results never depend on
 * it.
 * The batch limits, the threshold, category_scores and the prefix cache
 * budget come from the current policy, read before each batch, so a reload
 * applies from the next batch on (a smaller budget evicts at once; cached K/V
 * never depends on the policy: a new category list just makes new prompts). Items whose
 * partition was revoked while they waited are dropped unprocessed (the new
 * owner re-reads them). If the engine fails on a batch, its events go to the
 * DLQ with reason "inference_error": never dropped, never allowed.
 * The systemd watchdog is fed from here: between batches, and during a batch
 * after every transformer layer the engine completes (classifier_set_progress).
 * A batch may take minutes (a 65,536-token prompt, see etc/guardd.conf), but
 * the engine runs it as passes of at most 2,048 tokens, so one layer's work,
 * the longest gap between two keep-alives, stays bounded (about 1 s at a
 * short context on 2 cores, tens of seconds at the 65,536-token limit);
 * a hung layer stops the pings and systemd restarts the service.
 * The keep-alives also stop while the consumer thread's loop has not come
 * round for health.stall_seconds (health_consumer_alive): this thread keeps
 * running when the consumer hangs, and a hung consumer reads, acknowledges
 * and commits nothing ever again, so only a restart recovers (uncommitted
 * input is re-read: duplicates, never loss). systemd restarts the service
 * WatchdogSec after that. With health.stall_seconds = 0 (stall detection
 * off) the consumer is not watched and the keep-alives go on.
 * The same progress reports feed the stall watch (health.c): a batch's start
 * and its last finished layer.
 * On shutdown the engine may be told to abandon a batch (p->abort_infer,
 * classifier_set_abort): it stops at the next layer boundary, and the
 * batch's events get no verdict and no ack, so their offsets are never
 * committed and they are read again after the restart.
 */
#include "pipeline_int.h"
#include <stdlib.h>
#include <unistd.h>
#include "log.h"
#include "metrics.h"
#include "notify.h"

#define IDLE_MS 200

/* Drops revoked items in place; returns the number kept. */
static int keep_current(Pipeline *p, Item **items, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (offsets_is_current(p->offsets, items[i]->topic, items[i]->partition, items[i]->gen))
            items[k++] = items[i];
        else
            item_free(items[i]);
    }
    return k;
}

static void engine_failed(Pipeline *p, Item **items, int n, const char *err) {
    char q[600];
    log_msg(LOG_ERROR, "event=inference_failed batch=%d error=%s", n, log_quote(err, q, sizeof q));
    for (int i = 0; i < n; i++) {
        Item *it = items[i];
        EventSource src = {it->topic, it->partition, it->offset};
        /* the original bytes are not kept after decoding (memory): the DLQ
         * record names the source, which the operator can re-read */
        out_dlq(p, &src, it->gen, it->ts_ms, it->key, it->keylen, it->hdrs,
                "inference_error", err, NULL, 0);
    }
}

/* The engine abandoned the batch (shutdown): no output, no ack, so nothing
 * of it is committed; the log names what the next start re-reads. */
static void batch_abandoned(Pipeline *p, Item **items, int n, double secs) {
    char list[600];
    size_t o = 0;
    list[0] = 0;
    for (int i = 0; i < n; i++) {
        int k = snprintf(list + o, sizeof list - o, "%s%s/%d/%lld", i ? "," : "", items[i]->topic,
                         (int)items[i]->partition, (long long)items[i]->offset);
        if (k < 0 || (size_t)k >= sizeof list - o - 4) {
            snprintf(list + o, sizeof list - o, ",...");
            break;
        }
        o += (size_t)k;
    }
    atomic_fetch_add(&p->abandoned, n);
    log_msg(LOG_WARN, "event=batch_abandoned events=%d seconds=%.3f records=%s "
            "note=\"shutdown: no verdicts, not committed, re-read on restart\"", n, secs, list);
}

static void record_result(const ClassifyResult *r) {
    metrics_verdict(r->unsafe);
    for (int c = 0; c < r->n_categories; c++) metrics_category(r->codes[c]);
    metrics_tokens(r->prompt_tokens - r->cached_tokens, r->cached_tokens, r->decode_tokens);
}

static void apply_policy(Pipeline *p, const Policy *pol) {
    if (pol->threshold != p->applied_threshold) {
        classifier_set_threshold(p->clf, pol->threshold);
        p->applied_threshold = pol->threshold;
    }
    if (pol->category_scores != p->applied_scores) {
        classifier_set_category_scores(p->clf, pol->category_scores);
        p->applied_scores = pol->category_scores;
    }
    if (pol->cache_max_bytes != p->applied_cache_bytes) {
        classifier_set_cache_max_bytes(p->clf, pol->cache_max_bytes > 0 ? pol->cache_max_bytes : -1);
        p->applied_cache_bytes = pol->cache_max_bytes;
    }
}

static void run_batch(Pipeline *p, Item **items, int n, const Policy *pol) {
    double t0 = queue_now();
    for (int i = 0; i < n; i++) metrics_queue_wait(t0 - items[i]->node.enqueued);
    apply_policy(p, pol);
    ClassifyJob **jobs = malloc((size_t)n * sizeof *jobs);
    ClassifyResult *res = calloc((size_t)n, sizeof *res);
    char err[512] = "out of memory";
    int rc = -1;
    if (jobs && res) {
        for (int i = 0; i < n; i++) jobs[i] = items[i]->job;
        long long now_ms = health_now_ms();
        atomic_store(&p->engine_beat_ms, now_ms);
        atomic_store(&p->batch_start_ms, now_ms ? now_ms : 1);
        rc = classifier_run(p->clf, jobs, n, res, err, sizeof err);
        atomic_store(&p->batch_start_ms, 0);
    }
    double t1 = queue_now();
    ClassifierCacheStats cs;
    classifier_cache_stats(p->clf, &cs);
    metrics_prefix_cache(cs.bytes, cs.evictions);
    if (rc == CLASSIFIER_ABORTED) {
        batch_abandoned(p, items, n, t1 - t0);
    } else if (rc < 0) {
        engine_failed(p, items, n, err);
    } else {
        metrics_batch(n, t1 - t0);
        for (int i = 0; i < n; i++) {
            VerdictTiming t = {p->model_name, p->model_revision,
                               t0 - items[i]->node.enqueued, t1 - t0, n};
            out_verdict(p, items[i], &res[i], &t);
            record_result(&res[i]);
            classify_result_free(&res[i]);
        }
        log_msg(LOG_DEBUG, "event=batch size=%d inference_s=%.3f", n, t1 - t0);
    }
    free(jobs);
    free(res);
}

/* An item's cost for batch.max_tokens (queue_take_batch_cost, called with
 * the queue locked: a lookup of a few hash-table probes per 16 tokens). */
static int item_cost(const QueueNode *n, void *clf) {
    return classifier_prefill_estimate(clf, ((const Item *)n)->job);
}

/* systemd's keep-alive, withheld while the consumer is hung (see the top).
 * notify_watchdog is rate-limited to one keep-alive per half watchdog period. */
static void feed_watchdog(Pipeline *p) {
    if (health_consumer_alive(p)) notify_watchdog();
}

/* The engine's progress report: a layer finished. */
static void engine_progress(void *arg) {
    Pipeline *p = arg;
    atomic_store(&p->engine_beat_ms, health_now_ms());
    feed_watchdog(p);
}

void *batcher_main(void *arg) {
    Pipeline *p = arg;
    int cap = 0;
    classifier_set_progress(p->clf, engine_progress, p);
    classifier_set_abort(p->clf, &p->abort_infer);
    QueueNode **nodes = NULL;
    while (!atomic_load(&p->stop_infer)) {
        feed_watchdog(p);
        Policy *pol = policy_get(p);
        if (pol->max_events > cap) {
            QueueNode **nn = realloc(nodes, (size_t)pol->max_events * sizeof *nn);
            if (nn) { nodes = nn; cap = pol->max_events; }
        }
        int max = pol->max_events < cap ? pol->max_events : cap;
        if (max < 1) {      /* no memory for even one slot: wait, try again */
            policy_put(pol);
            usleep(IDLE_MS * 1000);
            continue;
        }
        int n = queue_take_batch_cost(&p->queue, nodes, max, pol->max_tokens, pol->max_wait_ms, IDLE_MS,
                                      item_cost, p->clf);
        metrics_queue_depth(queue_depth(&p->queue));
        if (n == 0 && atomic_load(&p->drain)) atomic_store(&p->stop_infer, 1);
        n = keep_current(p, (Item **)nodes, n);
        if (n > 0) {
            /* the wait above can outlast a reload: events sent right after
             * it must get its threshold and category_scores, so the batch
             * runs under the policy current now, not the one read before */
            Policy *now = policy_get(p);
            run_batch(p, (Item **)nodes, n, now);
            policy_put(now);
        }
        for (int i = 0; i < n; i++) item_free((Item *)nodes[i]);
        policy_put(pol);
    }
    classifier_set_progress(p->clf, NULL, NULL);
    classifier_set_abort(p->clf, NULL);
    free(nodes);
    return NULL;
}
