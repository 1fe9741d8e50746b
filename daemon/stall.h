/* stall.h - deciding which input partitions are stalled (for /readyz).
 *
 * A partition is stalled when it has work (records in hand not yet
 * acknowledged, or records on the broker past what was consumed) and its
 * progress marks (the consumed position and the commit point) have not moved
 * for threshold seconds, while nothing legitimate explains the wait:
 *   - paused by backpressure (the queue is full): waiting is the point, as
 *     long as the engine is advancing;
 *   - all its work consumed and waiting behind a batch the engine is still
 *     advancing (layer progress), however long that batch is;
 *   - idle: no work at all.
 * The engine itself is stuck when a batch has run for threshold seconds
 * without a layer finishing; then the explanations above stop holding (a
 * queue that never drains is no reason to stay paused).
 *
 * Pure logic over snapshots with an injected clock: no Kafka, no threads
 * (callers serialise calls), so tests drive it step by step.
 */
#ifndef GUARDD_STALL_H
#define GUARDD_STALL_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *topic;
    int32_t partition;
    int paused;             /* paused by backpressure (by us) */
    int64_t position;       /* next offset to consume; -1 unknown */
    int64_t commit_next;    /* commit point; -1 unknown */
    long outstanding;       /* consumed, output not acknowledged yet */
    int64_t unread;         /* records on the broker past position; -1 unknown */
} StallPart;

typedef struct {
    int busy;               /* a batch is running */
    double last_progress;   /* when its last layer (or the batch) started/finished */
} StallEngine;

typedef struct StallDetector StallDetector;

StallDetector *stall_new(void);
void stall_free(StallDetector *d);

/* Feeds one snapshot of every assigned partition at time now (seconds, any
 * monotonic origin). Partitions missing from parts are forgotten (revoked).
 * threshold <= 0 turns detection off (nothing stalled). Returns the number
 * of stalled partitions; *engine_stuck (may be NULL) says whether the
 * engine's batch is stuck. */
int stall_update(StallDetector *d, double now, double threshold, const StallPart *parts, int n,
                 const StallEngine *eng, int *engine_stuck);

/* The stalled partitions of the last update as "topic/partition,..." (cut
 * to fit len, "..." appended when cut); returns their count. */
int stall_names(const StallDetector *d, char *out, size_t len);
/* Seconds the longest-stalled partition has not moved (0: none stalled). */
double stall_longest(const StallDetector *d, double now);

#endif
