/* pipeline_int.h - state shared by the pipeline's parts (pipeline.c,
 * consumer.c, batcher.c, producer.c). Not for use outside them.
 */
#ifndef GUARDD_PIPELINE_INT_H
#define GUARDD_PIPELINE_INT_H
#include <pthread.h>
#include <stdatomic.h>
#include <librdkafka/rdkafka.h>
#include "pipeline.h"
#include "event.h"
#include "offsets.h"
#include "queue.h"
#include "stall.h"

/* The reloadable part of the settings, immutable once built and shared by
 * reference count: a queued item keeps the policy it was prepared with. */
typedef struct Policy {
    atomic_int refs;
    CategoryList categories;    /* n == 0: default list */
    char **exclude;
    int n_exclude;
    float threshold;
    int category_scores;
    int max_events, max_tokens, max_wait_ms;
    long long cache_max_bytes;  /* 0: prefix cache off */
} Policy;

/* One decoded, tokenized input record on its way to the engine. */
typedef struct Item {
    QueueNode node;             /* first: QueueNode* <-> Item* */
    char *topic;
    int32_t partition;
    int64_t offset;
    uint32_t gen;               /* tracker generation of the assignment */
    int64_t ts_ms;              /* record timestamp (epoch ms) or -1 */
    void *key;                  /* NULL: null key; else keylen bytes (maybe 0) */
    size_t keylen;
    rd_kafka_headers_t *hdrs;   /* kept headers, or NULL */
    ConversationEvent ev;
    ClassifyJob *job;
    Policy *policy;
} Item;

/* One record we produce (verdict or DLQ), kept until the broker acks it so a
 * failed delivery can be produced again. */
typedef struct Outbound {
    struct Outbound *next;      /* retry list */
    const char *dest;           /* pipeline-owned topic name */
    void *payload;
    size_t len;
    void *key;                  /* NULL: null key; else keylen bytes (maybe 0) */
    size_t keylen;
    rd_kafka_headers_t *hdrs;   /* master copy; each attempt sends a copy */
    int hdrs_kept;              /* hdrs has input headers besides record_id */
    int shrunk;                 /* times replaced by a smaller DLQ record */
    char *src_topic;
    int32_t partition;
    int64_t offset;
    uint32_t gen;
    int64_t ts_ms;
    int attempts;
    double retry_at;
} Outbound;

struct Pipeline {
    rd_kafka_t *consumer, *producer;
    Classifier *clf;
    OffsetTracker *offsets;
    EventQueue queue;

    /* fixed settings, copied */
    char *allow_topic, *deny_topic, *dlq_topic;
    char **keep_headers;
    int n_keep_headers, keep_all_headers;
    EventLimits limits;
    size_t max_record_bytes;    /* the producer's message.max.bytes */
    char model_name[128], model_revision[80];

    pthread_mutex_t policy_mu;
    Policy *policy;
    float applied_threshold;    /* inference thread only */
    int applied_scores;         /* inference thread only; -1 = not yet */
    long long applied_cache_bytes; /* inference thread only */

    pthread_mutex_t retry_mu;
    Outbound *retry_head;

    /* per output topic (allow, deny, DLQ): failing since the last failed
     * attempt until the next delivery; warnings at most one per interval */
    pthread_mutex_t health_mu;
    struct OutputHealth {
        int failing;
        double last_warn;
        long suppressed;
    } health[3];

    pthread_t consumer_th, batcher_th;
    atomic_int stop_consume;    /* consumer thread: leave the poll loop */
    atomic_int stop_infer;      /* inference thread: stop after this batch */
    atomic_int abort_infer;     /* engine: abandon the running batch at its next layer */
    atomic_long abandoned;      /* events of abandoned batches (no verdict, not committed) */
    atomic_int drain;           /* inference thread: finish the queue first */
    double last_commit;

    atomic_int joined, assigned, fatal, commits_inflight;
    atomic_int paused_partitions;   /* paused_parts->cnt, for stats */
    /* paused by us; changed by the consumer thread only, under watch_mu (the
     * health thread reads it) */
    rd_kafka_topic_partition_list_t *paused_parts;
    atomic_long consumed, verdicts, dlq, delivered, delivery_failures, commits, pauses;

    /* stall watch (health.c). It runs on a thread of its own (health_th), so
     * that a consumer thread hung in a call or a callback is reported too.
     * What it reads: the engine's side, written by the inference thread
     * (monotonic ms; batch_start_ms 0 while idle); the consumer loop's last
     * round (consumer_beat_ms, written by the consumer thread every round);
     * the offset tracker (locked itself); paused_parts and broker_offsets
     * under watch_mu. */
    atomic_llong batch_start_ms, engine_beat_ms, consumer_beat_ms;
    atomic_int stall_seconds;   /* health.stall_seconds, reloadable */
    atomic_int stalled, engine_stuck, consumer_stuck;
    pthread_mutex_t watch_mu;
    pthread_cond_t watch_cv;    /* wakes the health thread to stop */
    int watch_stop, watch_started;  /* under watch_mu */
    pthread_t health_th;
    struct BrokerOffsets *broker_offsets;   /* from the last statistics report; watch_mu */
    int n_broker_offsets;
    /* health thread only */
    StallDetector *stall;
    char stall_names[400];      /* last warned set, "" when none */
    int stall_warned_engine, stall_warned_consumer;
    struct BrokerOffsets *asked_ends;       /* asked of the broker (not fetched) */
    int n_asked_ends, ask_rr;

    /* test faults (testhook.h): the fault file (NULL: off, always in
     * production), set before the threads start; the rest consumer thread only */
    char *hook_path;
    double hook_checked;
    char hook_held[1024];       /* partitions held paused, "topic/partition\n"...;
                                 * also the most of the fault file read */
};

/* pipeline.c */
Policy *policy_get(Pipeline *p);
void policy_put(Policy *pol);
void item_free(Item *it);
rd_kafka_headers_t *headers_select(Pipeline *p, const rd_kafka_message_t *m);

/* producer.c */
/* Produces ob (takes ownership); on a local failure it joins the retry list. */
void out_send(Pipeline *p, Outbound *ob);
/* Sends the retry list's due records again (consumer thread). */
void out_retry_due(Pipeline *p);
/* Drops what is still waiting for a retry (shutdown). Returns the count. */
int out_abandon_retries(Pipeline *p);
void out_delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
void out_free(Outbound *ob);
/* Output topics currently failing (see Pipeline.health). */
int out_failing_topics(Pipeline *p);
/* DLQ record for input (src, payload) with reason; gen from the tracker. */
void out_dlq(Pipeline *p, const EventSource *src, uint32_t gen, int64_t ts_ms,
             const void *key, size_t keylen, rd_kafka_headers_t *hdrs,
             const char *reason, const char *message, const void *payload, size_t len);
/* Verdict for it (to deny when unsafe, else allow). */
void out_verdict(Pipeline *p, const Item *it, const ClassifyResult *r, const VerdictTiming *t);

/* consumer.c */
void *consumer_main(void *arg);
void consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *parts, void *opaque);
void consumer_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *offsets, void *opaque);
/* Commits every partition whose commit point moved (asynchronously). */
void consumer_commit_progress(Pipeline *p);

/* batcher.c */
void *batcher_main(void *arg);

/* health.c: the stall watch's thread (runs the stall detector about once a
 * second, publishes its verdict); health_stats from the statistics callback */
void health_stats(Pipeline *p, const char *json);
int health_start(Pipeline *p);
/* Stops and joins the thread (before the consumer thread stops: a loop
 * that ends on purpose is no stall). Idempotent. */
void health_stop(Pipeline *p);
void health_free(Pipeline *p);
long long health_now_ms(void);
/* 0 while the consumer loop has not come round for health.stall_seconds
 * (and is meant to be running); the inference thread then withholds
 * systemd's watchdog keep-alive (see batcher.c). Any thread. */
int health_consumer_alive(Pipeline *p);

#endif
