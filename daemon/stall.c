/* stall.c - the stall detector's bookkeeping (rules in stall.h).
 *
 * Per partition it keeps the progress marks last seen and since when the
 * partition has been waiting without an explanation ("since"): every
 * explanation, and every move of a mark, resets it to now. A partition is
 * stalled once now - since reaches the threshold. A member holds a handful
 * of partitions, so a flat array searched linearly is enough.
 */
#include "stall.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *topic;
    int32_t partition;
    int64_t position, commit_next;
    double since;
    int stalled, seen;
} Track;

struct StallDetector {
    Track *t;
    int n, cap;
};

StallDetector *stall_new(void) { return calloc(1, sizeof(StallDetector)); }

void stall_free(StallDetector *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) free(d->t[i].topic);
    free(d->t);
    free(d);
}

static Track *find_or_add(StallDetector *d, const StallPart *p, double now) {
    for (int i = 0; i < d->n; i++)
        if (d->t[i].partition == p->partition && !strcmp(d->t[i].topic, p->topic)) return &d->t[i];
    if (d->n == d->cap) {
        int cap = d->cap ? 2 * d->cap : 8;
        Track *nt = realloc(d->t, sizeof *nt * (size_t)cap);
        if (!nt) return NULL;
        d->t = nt;
        d->cap = cap;
    }
    char *topic = strdup(p->topic);
    if (!topic) return NULL;
    Track *t = &d->t[d->n++];
    *t = (Track){topic, p->partition, p->position, p->commit_next, now, 0, 0};
    return t;
}

int stall_update(StallDetector *d, double now, double threshold, const StallPart *parts, int n,
                 const StallEngine *eng, int *engine_stuck) {
    int stuck = threshold > 0 && eng && eng->busy && now - eng->last_progress >= threshold;
    int advancing = eng && eng->busy && !stuck;
    int stalled = 0;
    for (int i = 0; i < d->n; i++) d->t[i].seen = 0;
    for (int i = 0; i < n; i++) {
        const StallPart *p = &parts[i];
        Track *t = find_or_add(d, p, now);
        if (!t) continue;   /* out of memory: this partition goes unwatched */
        t->seen = 1;
        int moved = p->position != t->position || p->commit_next != t->commit_next;
        t->position = p->position;
        t->commit_next = p->commit_next;
        int work = p->outstanding > 0 || p->unread > 0;
        int explained = !work || moved || threshold <= 0 ||
                        (p->paused && !stuck) ||
                        (p->outstanding > 0 && p->unread <= 0 && advancing);
        if (explained) t->since = now;
        t->stalled = now - t->since >= threshold && threshold > 0;
        stalled += t->stalled;
    }
    for (int i = 0; i < d->n;) {   /* revoked partitions: forget them */
        if (d->t[i].seen) { i++; continue; }
        free(d->t[i].topic);
        d->t[i] = d->t[--d->n];
    }
    if (engine_stuck) *engine_stuck = stuck;
    return stalled;
}

int stall_names(const StallDetector *d, char *out, size_t len) {
    size_t o = 0;
    int count = 0, cut = 0;
    if (len) out[0] = 0;
    for (int i = 0; i < d->n; i++) {
        if (!d->t[i].stalled) continue;
        count++;
        if (cut) continue;
        char one[300];
        int k = snprintf(one, sizeof one, "%s%s/%d", o ? "," : "", d->t[i].topic, (int)d->t[i].partition);
        if (k < 0 || o + (size_t)k + 4 >= len) {
            cut = 1;
            continue;
        }
        memcpy(out + o, one, (size_t)k + 1);
        o += (size_t)k;
    }
    if (cut && o + 4 <= len) memcpy(out + o, "...", 4);
    return count;
}

double stall_longest(const StallDetector *d, double now) {
    double m = 0;
    for (int i = 0; i < d->n; i++)
        if (d->t[i].stalled && now - d->t[i].since > m) m = now - d->t[i].since;
    return m;
}
