/* offsets.h - which input offsets guardd may commit (at-least-once).
 *
 * Every consumed record is "outstanding" from the moment it is tracked until
 * its verdict or DLQ record is acknowledged by the broker. Per partition the
 * commit point is the lowest outstanding offset (or last tracked + 1 when none
 * is outstanding): acknowledgements may arrive out of order, but the commit
 * point only moves over a contiguous acknowledged prefix, so a commit never
 * skips an unfinished record.
 *
 * Partitions come and go with rebalances. Each assignment gets a fresh
 * generation number; acknowledgements carrying an older generation (records
 * of a revoked partition still in flight) are ignored, so nothing is ever
 * committed on behalf of a partition this member no longer owns.
 *
 * Pure logic (no Kafka calls), thread-safe (one internal mutex).
 */
#ifndef GUARDD_OFFSETS_H
#define GUARDD_OFFSETS_H
#include <stdint.h>

typedef struct OffsetTracker OffsetTracker;

OffsetTracker *offsets_new(void);
void offsets_free(OffsetTracker *t);

/* Starts (or restarts) tracking a partition; returns its new generation.
 * Anything tracked for it before is forgotten. */
uint32_t offsets_assign(OffsetTracker *t, const char *topic, int32_t partition);
/* Forgets a partition: later acks for it are ignored, it yields no commits. */
void offsets_revoke(OffsetTracker *t, const char *topic, int32_t partition);

/* Registers a consumed record. Returns 1 (tracked; *gen set), 0 when the
 * offset is not above the last one tracked for the partition (a repeat: the
 * caller must skip it, the first copy is already handled), -1 when the
 * partition is not assigned or memory ran out. */
int offsets_track(OffsetTracker *t, const char *topic, int32_t partition, int64_t offset,
                  uint32_t *gen);
/* Marks a tracked record finished. Returns 1, or 0 if stale/unknown (ignored). */
int offsets_ack(OffsetTracker *t, const char *topic, int32_t partition, int64_t offset,
                uint32_t gen);
/* 1 if (topic, partition) is assigned with generation gen. */
int offsets_is_current(OffsetTracker *t, const char *topic, int32_t partition, uint32_t gen);

/* Records tracked and not yet acknowledged, over all partitions. */
long offsets_outstanding(OffsetTracker *t);

/* Calls fn for every partition whose commit point moved since the last call
 * (next = the offset to commit: the next record to read). With only_topic /
 * only_partition >= 0 it restricts itself to that partition. Returns how many
 * were reported. fn runs under the tracker's lock: it must not call back. */
typedef void (*OffsetCommitFn)(void *ud, const char *topic, int32_t partition, int64_t next);
int offsets_take_commits(OffsetTracker *t, OffsetCommitFn fn, void *ud);
/* Same, for one partition only, and reported even if it did not move
 * (used right before revoking it). */
int offsets_take_partition(OffsetTracker *t, const char *topic, int32_t partition,
                           OffsetCommitFn fn, void *ud);

/* Calls fn for every assigned partition with its progress marks: position
 * (the last tracked offset + 1), commit point (both -1 before the first
 * record) and the records outstanding in it. Returns how many. fn runs
 * under the tracker's lock: it must not call back. */
typedef void (*OffsetProgressFn)(void *ud, const char *topic, int32_t partition, int64_t position,
                                 int64_t commit_next, long outstanding);
int offsets_progress(OffsetTracker *t, OffsetProgressFn fn, void *ud);

/* A commit of this partition failed: its current point is reported again by
 * the next offsets_take_commits even if it has not moved (so the last
 * progress before an idle period or a shutdown is not left uncommitted). */
void offsets_commit_failed(OffsetTracker *t, const char *topic, int32_t partition);

#endif
