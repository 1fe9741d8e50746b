/* event.h - the wire formats (schemas/*.schema.json): conversation events in,
 * verdict events and DLQ records out, all msgpack maps.
 *
 * event_decode() is the schema's enforcement: any violation returns a reason
 * code (stable, machine-readable, used as a metrics label and in the DLQ
 * record) and a human message. Unknown fields are ignored; metadata is kept as
 * its original msgpack bytes and echoed untouched.
 */
#ifndef GUARDD_EVENT_H
#define GUARDD_EVENT_H
#include <stddef.h>
#include <stdint.h>
#include "conversation.h"
#include "classifier.h"

#define EVENT_SCHEMA_VERSION 1

typedef struct {
    size_t max_event_bytes;
    int max_messages;
    size_t max_message_bytes;
} EventLimits;

typedef struct {
    char *id;                   /* event id from the producer */
    Conversation conv;
    CategoryList categories;    /* n == 0: use the configured list */
    char **exclude; int n_exclude; /* n == 0 and !has_exclude: use the configured list */
    int has_exclude;
    ForceRole role;             /* optional "role": "user"|"agent" */
    uint8_t *metadata; size_t metadata_len; /* raw msgpack of "metadata", or NULL */
} ConversationEvent;

typedef struct {
    const char *topic; int32_t partition; int64_t offset;
} EventSource;

/* Returns 0, or -1 with *reason set to a static code such as "bad_msgpack",
 * "not_a_map", "missing_field", "wrong_type", "too_large", "too_many_messages",
 * "message_too_large", "bad_role", "roles_not_alternating", "empty_conversation",
 * "bad_categories" and msg to a human explanation. */
int event_decode(const void *buf, size_t len, const EventLimits *lim,
                 ConversationEvent *ev, const char **reason, char *msg, size_t msglen);
void event_free(ConversationEvent *ev);

/* Deterministic id of everything produced for one input record: the same
 * (topic, partition, offset) always gives the same id, so consumers can drop
 * repeats after a crash. */
void event_source_id(const EventSource *src, char *out, size_t outlen);

typedef struct {
    const char *model_name, *model_revision;
    double queued_s, inference_s;  /* time waiting, time in the engine */
    int batch_size;
} VerdictTiming;

/* Encodes the verdict event; returns malloc'd bytes (length in *len). */
void *verdict_encode(const ConversationEvent *ev, const EventSource *src,
                     const ClassifyResult *r, const VerdictTiming *t, size_t *len);
/* Encodes a DLQ record carrying the original payload. */
void *dlq_encode(const EventSource *src, const char *reason, const char *message,
                 const void *payload, size_t payload_len, size_t *len);

/* Any of our three record kinds as one line of JSON (for guardctl tail). */
char *record_to_json(const void *buf, size_t len);

#endif
