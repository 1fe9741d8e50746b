/* event_encode.c - writing guardd's records with msgpack-c: verdict events,
 * DLQ records and (for tools and tests) conversation events. The field sets
 * and types are the contract in schemas/NAME.schema.json; tests/t_schemas.sh
 * validates records produced here against those schemas.
 *
 * Metadata is spliced in as the exact bytes the event carried (written
 * straight into the buffer after its key), never re-encoded, so producers get
 * back precisely what they sent.
 */
#include "event.h"
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void pk_str(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pk_str_or_nil(msgpack_packer *pk, const char *s) {
    if (s) pk_str(pk, s);
    else msgpack_pack_nil(pk);
}

/* Probabilities are floats; widening 0.9f gives 0.899999976158..., so they
 * go out as the double nearest their shortest float spelling (0.9). */
static void pk_prob(msgpack_packer *pk, float p) {
    char buf[32];
    double d = p;
    for (int prec = 1; prec <= 9; prec++) {      /* 9 digits always round-trip a float */
        snprintf(buf, sizeof buf, "%.*g", prec, (double)p);
        d = strtod(buf, NULL);
        if ((float)d == p) break;
    }
    msgpack_pack_double(pk, d);
}

static void pk_source(msgpack_packer *pk, const EventSource *src) {
    pk_str(pk, "source");
    msgpack_pack_map(pk, 3);
    pk_str(pk, "topic");
    pk_str(pk, src->topic ? src->topic : "");
    pk_str(pk, "partition");
    msgpack_pack_int32(pk, src->partition);
    pk_str(pk, "offset");
    msgpack_pack_int64(pk, src->offset);
}

/* Hands the sbuffer's memory to the caller. */
static void *finish(msgpack_sbuffer *sb, size_t *len) {
    *len = sb->size;
    void *out = sb->data;
    if (!out) out = malloc(1);      /* never NULL for an empty buffer */
    sb->data = NULL;
    return out;
}

void event_source_id(const EventSource *src, char *out, size_t outlen) {
    snprintf(out, outlen, "%s/%d/%lld", src->topic ? src->topic : "", (int)src->partition,
             (long long)src->offset);
}

static void pk_record_id(msgpack_packer *pk, const EventSource *src) {
    char id[320];
    event_source_id(src, id, sizeof id);
    pk_str(pk, "record_id");
    pk_str(pk, id);
}

/* ---- verdict --------------------------------------------------------------- */

static void pk_categories(msgpack_packer *pk, const ClassifyResult *r) {
    pk_str(pk, "categories");
    msgpack_pack_array(pk, (size_t)(r->n_categories > 0 ? r->n_categories : 0));
    for (int i = 0; i < r->n_categories; i++) {
        msgpack_pack_map(pk, 2);
        pk_str(pk, "code");
        pk_str(pk, r->codes && r->codes[i] ? r->codes[i] : "");
        pk_str(pk, "name");
        pk_str_or_nil(pk, r->names ? r->names[i] : NULL);
    }
}

static void pk_scores(msgpack_packer *pk, const ClassifyResult *r, const char *const *codes) {
    pk_str(pk, "category_scores");
    msgpack_pack_map(pk, (size_t)r->n_category_scores);
    for (int i = 0; i < r->n_category_scores; i++) {
        pk_str(pk, codes[i] ? codes[i] : "");
        pk_prob(pk, r->category_scores[i]);
    }
}

static void pk_model(msgpack_packer *pk, const VerdictTiming *t) {
    pk_str(pk, "model");
    msgpack_pack_map(pk, 2);
    pk_str(pk, "name");
    pk_str(pk, t && t->model_name ? t->model_name : "");
    pk_str(pk, "revision");
    pk_str(pk, t && t->model_revision ? t->model_revision : "");
}

static void pk_timing(msgpack_packer *pk, const ClassifyResult *r, const VerdictTiming *t) {
    pk_str(pk, "timing");
    msgpack_pack_map(pk, 6);
    pk_str(pk, "queued_ms");
    msgpack_pack_double(pk, t ? t->queued_s * 1e3 : 0.0);
    pk_str(pk, "inference_ms");
    msgpack_pack_double(pk, t ? t->inference_s * 1e3 : 0.0);
    pk_str(pk, "batch_size");
    msgpack_pack_int(pk, t ? t->batch_size : 0);
    pk_str(pk, "prompt_tokens");
    msgpack_pack_int(pk, r->prompt_tokens);
    pk_str(pk, "cached_tokens");
    msgpack_pack_int(pk, r->cached_tokens);
    pk_str(pk, "decode_tokens");
    msgpack_pack_int(pk, r->decode_tokens);
}

static void pk_metadata(msgpack_packer *pk, msgpack_sbuffer *sb, const ConversationEvent *ev) {
    pk_str(pk, "metadata");
    if (ev && ev->metadata && ev->metadata_len)
        msgpack_sbuffer_write(sb, (const char *)ev->metadata, ev->metadata_len);
    else
        msgpack_pack_nil(pk);
}

void *verdict_encode(const ConversationEvent *ev, const EventSource *src,
                     const ClassifyResult *r, const VerdictTiming *t, size_t *len) {
    return verdict_encode_ex(ev, src, r, t, NULL, len);
}

void *verdict_encode_ex(const ConversationEvent *ev, const EventSource *src,
                        const ClassifyResult *r, const VerdictTiming *t,
                        const char *const *score_codes, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int scores = score_codes && r->category_scores && r->n_category_scores > 0;
    msgpack_pack_map(&pk, 13 + (size_t)scores);
    pk_str(&pk, "schema");
    msgpack_pack_int(&pk, EVENT_SCHEMA_VERSION);
    pk_record_id(&pk, src);
    pk_str(&pk, "id");
    pk_str(&pk, ev && ev->id ? ev->id : "");
    pk_str(&pk, "verdict");
    pk_str(&pk, r->unsafe ? "unsafe" : "safe");
    pk_categories(&pk, r);
    pk_str(&pk, "score");
    pk_prob(&pk, r->score);
    if (scores) pk_scores(&pk, r, score_codes);
    pk_str(&pk, "role");
    pk_str(&pk, r->agent ? "agent" : "user");
    pk_str(&pk, "parse_error");
    if (r->parse_error) msgpack_pack_true(&pk);
    else msgpack_pack_false(&pk);
    pk_model(&pk, t);
    pk_source(&pk, src);
    pk_timing(&pk, r, t);
    pk_metadata(&pk, &sb, ev);
    pk_str(&pk, "raw");
    pk_str_or_nil(&pk, r->raw);
    return finish(&sb, len);
}

/* ---- DLQ ------------------------------------------------------------------- */

void *dlq_encode(const EventSource *src, const char *reason, const char *message,
                 const void *payload, size_t payload_len, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pk_str(&pk, "schema");
    msgpack_pack_int(&pk, EVENT_SCHEMA_VERSION);
    pk_record_id(&pk, src);
    pk_str(&pk, "error");
    msgpack_pack_map(&pk, 2);
    pk_str(&pk, "code");
    pk_str(&pk, reason && *reason ? reason : "unknown");
    pk_str(&pk, "message");
    pk_str(&pk, message ? message : "");
    pk_source(&pk, src);
    pk_str(&pk, "payload");
    msgpack_pack_bin(&pk, payload ? payload_len : 0);
    if (payload && payload_len) msgpack_pack_bin_body(&pk, payload, payload_len);
    return finish(&sb, len);
}

/* ---- conversation event ------------------------------------------------------ */

static void pk_message(msgpack_packer *pk, const Message *m) {
    msgpack_pack_map(pk, 2);
    pk_str(pk, "role");
    pk_str(pk, m->role == ROLE_ASSISTANT ? "assistant" : "user");
    pk_str(pk, "content");
    if (m->n_parts == 1) { pk_str(pk, m->parts[0]); return; }
    msgpack_pack_array(pk, (size_t)(m->n_parts > 0 ? m->n_parts : 0));
    for (int j = 0; j < m->n_parts; j++) {
        msgpack_pack_map(pk, 2);
        pk_str(pk, "type");
        pk_str(pk, "text");
        pk_str(pk, "text");
        pk_str(pk, m->parts[j]);
    }
}

void *event_encode(const ConversationEvent *ev, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t n = 2 + (ev->categories.n > 0) + (ev->has_exclude || ev->n_exclude > 0) +
               (ev->role != FORCE_ROLE_AUTO) + (ev->metadata != NULL);
    msgpack_pack_map(&pk, n);
    pk_str(&pk, "id");
    pk_str(&pk, ev->id ? ev->id : "");
    pk_str(&pk, "messages");
    msgpack_pack_array(&pk, (size_t)(ev->conv.n_msgs > 0 ? ev->conv.n_msgs : 0));
    for (int i = 0; i < ev->conv.n_msgs; i++) pk_message(&pk, &ev->conv.msgs[i]);
    if (ev->categories.n > 0) {
        pk_str(&pk, "categories");
        msgpack_pack_map(&pk, (size_t)ev->categories.n);
        for (int i = 0; i < ev->categories.n; i++) {
            pk_str(&pk, ev->categories.items[i].code);
            pk_str(&pk, ev->categories.items[i].name);
        }
    }
    if (ev->has_exclude || ev->n_exclude > 0) {
        pk_str(&pk, "exclude");
        msgpack_pack_array(&pk, (size_t)ev->n_exclude);
        for (int i = 0; i < ev->n_exclude; i++) pk_str(&pk, ev->exclude[i]);
    }
    if (ev->role != FORCE_ROLE_AUTO) {
        pk_str(&pk, "role");
        pk_str(&pk, ev->role == FORCE_ROLE_AGENT ? "agent" : "user");
    }
    if (ev->metadata) pk_metadata(&pk, &sb, ev);
    return finish(&sb, len);
}
