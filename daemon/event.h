/* event.h - the wire formats (schemas/NAME.schema.json): conversation events in,
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
#include <jansson.h>
#include <librdkafka/rdkafka.h>
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

/* Returns 0, or -1 with *reason set to a static code and msg to a human
 * explanation (ev is then empty; event_free on it is harmless). Codes:
 *   too_large            more than max_event_bytes
 *   bad_msgpack          malformed or truncated msgpack
 *   trailing_bytes       bytes after the event's map
 *   not_a_map            the event is not a msgpack map
 *   missing_field        no "id" / "messages", message without role/content,
 *                        content part without "text"
 *   duplicate_field      the same key twice in one map
 *   wrong_type           a field of the wrong msgpack type
 *   bad_id               id empty or longer than EVENT_MAX_ID_BYTES
 *   bad_text             text that is not UTF-8 or contains a NUL byte
 *   too_many_messages    more than max_messages
 *   message_too_large    a message's text above max_message_bytes
 *   bad_role             role not "user"/"assistant" (message) or "user"/"agent" (event)
 *   roles_not_alternating  roles must go user, assistant, user, ...
 *   empty_conversation   no messages
 *   unsupported_content  a content part whose type is not "text" (e.g. image:
 *                        Llama Guard 3 1B is text only)
 *   bad_categories       categories not a non-empty map of code -> name, bad code
 *   bad_exclude          exclude not an array of codes, or a code not in categories
 *   unsupported_schema   "schema" newer than EVENT_SCHEMA_VERSION
 *   metadata_too_deep    metadata nested deeper than EVENT_MAX_METADATA_DEPTH
 *   bad_json             (event_decode_json) not one JSON object
 * Allocation is bounded by the limits and by len, whatever sizes the input declares. */
int event_decode(const void *buf, size_t len, const EventLimits *lim,
                 ConversationEvent *ev, const char **reason, char *msg, size_t msglen);
void event_free(ConversationEvent *ev);

#define EVENT_MAX_ID_BYTES 256
/* How deep "metadata" may nest, counting the metadata map as level 1 and
 * every map or array (empty ones too) inside it as one more. The verdict puts
 * metadata one level down, so a verdict nests at most 32 levels: the most
 * msgpack-c's unpacker reads (MSGPACK_EMBED_STACK_SIZE), and far within
 * Python's (1024) and guardctl tail's. Deeper metadata is metadata_too_deep. */
#define EVENT_MAX_METADATA_DEPTH 31

/* The same schema written as JSON (one object; content-type application/json).
 * Converted to msgpack and checked by event_decode, so the rules are identical;
 * max_event_bytes applies to the JSON text. */
int event_decode_json(const void *buf, size_t len, const EventLimits *lim,
                      ConversationEvent *ev, const char **reason, char *msg, size_t msglen);
/* Either encoding: content_type (e.g. the record's "content-type" header)
 * containing "json" or "msgpack" (any case) decides; NULL or anything else sniffs the
 * bytes: a '{' after optional whitespace is JSON (those bytes are small
 * integers in msgpack, never a valid event), everything else msgpack. */
int event_decode_any(const void *buf, size_t len, const char *content_type, const EventLimits *lim,
                     ConversationEvent *ev, const char **reason, char *msg, size_t msglen);
/* What the consumer calls for a record: the content type comes from the
 * record's "content-type" header (name in any case; the last one wins; hdrs
 * may be NULL), then event_decode_any. The rule, also in
 * schemas/conversation-event.schema.json and README.md:
 *   media type mentioning "json" (any case)    -> JSON
 *   media type mentioning "msgpack" (any case) -> msgpack
 *   no header, or any other media type          -> sniffed: JSON when the first
 *                                                  byte after spaces, tabs, CR
 *                                                  and LF is '{', else msgpack */
int event_decode_record(const void *buf, size_t len, const rd_kafka_headers_t *hdrs,
                        const EventLimits *lim, ConversationEvent *ev, const char **reason,
                        char *msg, size_t msglen);
/* JSON text -> msgpack bytes of the same value (malloc'd, length in *outlen),
 * or NULL with err set. For tools that let people write events as JSON. */
void *event_json_to_msgpack(const void *json, size_t len, size_t *outlen, char *err, size_t errlen);
/* A decoded (or hand-built) event back to msgpack: one-part messages as plain
 * string content, metadata spliced raw. malloc'd, length in *len. */
void *event_encode(const ConversationEvent *ev, size_t *len);

/* Deterministic id of everything produced for one input record: the same
 * (topic, partition, offset) always gives the same id, so consumers can drop
 * repeats after a crash. Format "TOPIC/PARTITION/OFFSET" (Kafka topic names
 * cannot contain '/', so it is unambiguous), e.g. "conversations/2/1234". */
void event_source_id(const EventSource *src, char *out, size_t outlen);

typedef struct {
    const char *model_name, *model_revision;
    double queued_s, inference_s;  /* time waiting, time in the engine */
    int batch_size;
} VerdictTiming;

/* Encodes the verdict event; returns malloc'd bytes (length in *len). */
void *verdict_encode(const ConversationEvent *ev, const EventSource *src,
                     const ClassifyResult *r, const VerdictTiming *t, size_t *len);
/* The same, with "category_scores": score_codes[i] is the code of
 * r->category_scores[i] (the active category list without excluded codes, in
 * order). NULL score_codes (or no scores in r) leaves the field out. */
void *verdict_encode_ex(const ConversationEvent *ev, const EventSource *src,
                        const ClassifyResult *r, const VerdictTiming *t,
                        const char *const *score_codes, size_t *len);
/* Encodes a DLQ record carrying the original payload. */
void *dlq_encode(const EventSource *src, const char *reason, const char *message,
                 const void *payload, size_t payload_len, size_t *len);

/* Any of our three record kinds as one line of JSON (for guardctl tail):
 * maps become objects, bin (the DLQ payload) a base64 string, invalid UTF-8
 * is replaced by U+FFFD. malloc'd, no trailing newline; NULL if buf is not
 * exactly one msgpack value (or nests deeper than 64). */
char *record_to_json(const void *buf, size_t len);
/* The same as a jansson value (new reference), for embedding in other JSON:
 * keys and strings may hold NUL bytes, which jansson's parser would refuse in
 * keys, so do not round-trip the text. */
json_t *record_to_json_value(const void *buf, size_t len);

#endif
