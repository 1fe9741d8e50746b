/* pipeline.h - guardd's Kafka-in, verdicts-out engine room.
 *
 *   consumer thread (consumer.c): poll the group, decode, validate, render and
 *     tokenize; bad input -> DLQ record; good -> bounded queue (queue.h), with
 *     partitions paused while the queue is full. It also serves the
 *     producer's delivery reports and issues the (asynchronous) commits.
 *   inference thread (batcher.c): micro-batches from the queue, one
 *     classifier_run per batch, verdicts produced to allow/deny.
 *   producer (producer.c): every output record remembers its input offset;
 *     a broker ack marks the offset done in the tracker (offsets.h), a failed
 *     delivery is produced again later (never skipped).
 *
 * At-least-once: an input offset is committed only once everything before it
 * in its partition has an acknowledged verdict or DLQ record.
 *
 * The caller (guardd.c, or a test) owns the Classifier and the Settings; the
 * pipeline copies what it needs, so both may be replaced/freed after the calls
 * below return (the Classifier must live until pipeline_stop returns).
 */
#ifndef GUARDD_PIPELINE_H
#define GUARDD_PIPELINE_H
#include <stddef.h>
#include "classifier.h"
#include "settings.h"

typedef struct Pipeline Pipeline;

typedef struct {
    int joined;             /* partitions assigned by the group (current generation) */
    int assigned;           /* partitions currently assigned */
    int paused;             /* 1 while input is paused by backpressure */
    int paused_partitions;  /* partitions this member holds paused in the client */
    int queue_depth;
    long outstanding;       /* consumed records without an acked output yet */
    long consumed, verdicts, dlq, delivered, delivery_failures, commits;
    long pauses;            /* backpressure pauses so far */
    int fatal;              /* the Kafka client hit a fatal error: restart needed */
    int outputs_failing;    /* output topics whose last delivery attempt failed */
    int batch_running;      /* the engine is on a batch */
    long abandoned;         /* events of batches abandoned at shutdown */
    int stalled;            /* partitions without progress (health.stall_seconds) */
    int consumer_stalled;   /* the consumer loop has not come round for as long */
    int engine_stuck;       /* the running batch finished no layer for as long */
} PipelineStats;

/* brokers: bootstrap list to use (settings' own, or the embedded mock's). */
Pipeline *pipeline_start(const Settings *s, const char *brokers, Classifier *clf,
                         char *err, size_t errlen);
/* Applies the reloadable settings (categories, exclude, threshold, batch
 * limits) to events consumed from now on. Never drops anything. */
void pipeline_reload(Pipeline *p, const Settings *s);
void pipeline_stats(Pipeline *p, PipelineStats *st);
/* Graceful stop within timeout_ms: stop consuming, classify what is queued
 * (for the first 60% of it; a batch still running then is abandoned at its
 * next layer boundary, without verdicts), deliver, commit, leave the group.
 * Frees p. Returns 0 when everything consumed was delivered and committed,
 * 1 otherwise (the rest is re-read by the next owner). */
int pipeline_stop(Pipeline *p, int timeout_ms);

#endif
