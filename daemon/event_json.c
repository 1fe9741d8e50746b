/* event_json.c - the JSON side of the event codec (jansson):
 *   record_to_json       any msgpack record -> one JSON line (guardctl tail)
 *   event_json_to_msgpack / event_decode_json   JSON events -> msgpack -> the
 *                        one validator in event.c, so both encodings obey
 *                        exactly the same rules.
 *   event_decode_any     picks one by content type or by sniffing;
 *   event_decode_record  the same for a Kafka record (its content-type header).
 * msgpack is walked with the bounded reader (event_mp.h); recursion depth is
 * capped so hostile nesting cannot exhaust the stack.
 */
#define _GNU_SOURCE     /* strcasestr */
#include "event.h"
#include "event_mp.h"
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "utf8.h"

#define JSON_MAX_DEPTH 64

/* ---- msgpack -> JSON ----------------------------------------------------------- */

static char *base64(const uint8_t *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* jansson only takes valid UTF-8: invalid bytes become U+FFFD. */
static json_t *json_text(const uint8_t *s, size_t n) {
    json_t *j = json_stringn((const char *)s, n);
    if (j) return j;
    char *fixed = malloc(n * 3 + 1);
    if (!fixed) return NULL;
    size_t o = 0;
    unsigned cp;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (k) { memcpy(fixed + o, s + i, k); o += k; i += k; }
        else { memcpy(fixed + o, "\xef\xbf\xbd", 3); o += 3; i++; }
    }
    j = json_stringn(fixed, o);
    free(fixed);
    return j;
}

static json_t *to_json(MpCur *c, int depth);

/* After a container's header: skips its elements (for keys JSON cannot spell). */
static int skip_contents(MpCur *c, const MpItem *k) {
    uint64_t rest = k->type == MP_MAP ? 2 * (uint64_t)k->len : k->type == MP_ARRAY ? k->len : 0;
    for (uint64_t r = 0; r < rest; r++)
        if (mp_skip(c) < 0) return -1;
    return 0;
}

/* JSON keys are strings: msgpack string keys are used as they are (made valid
 * UTF-8), integer keys in decimal, anything else by position ("?3"). */
static json_t *key_json(MpCur *c, const MpItem *k, uint32_t i) {
    char num[32];
    if (k->type == MP_STR) return json_text(k->data, k->len);
    if (k->type == MP_INT) snprintf(num, sizeof num, "%lld", (long long)k->i);
    else if (k->type == MP_UINT) snprintf(num, sizeof num, "%llu", (unsigned long long)k->u);
    else snprintf(num, sizeof num, "?%u", i);
    if (skip_contents(c, k) < 0) return NULL;
    return json_string(num);
}

static json_t *map_to_json(MpCur *c, uint32_t n, int depth) {
    json_t *obj = json_object();
    for (uint32_t i = 0; obj && i < n; i++) {
        MpItem k;
        json_t *ks = mp_next(c, &k) < 0 ? NULL : key_json(c, &k, i);
        json_t *v = ks ? to_json(c, depth + 1) : NULL;
        /* with its length: a key may hold NUL bytes */
        int rc = v ? json_object_setn_new(obj, json_string_value(ks), json_string_length(ks), v) : -1;
        json_decref(ks);
        if (rc < 0) { json_decref(obj); return NULL; }
    }
    return obj;
}

static json_t *array_to_json(MpCur *c, uint32_t n, int depth) {
    json_t *arr = json_array();
    for (uint32_t i = 0; arr && i < n; i++) {
        json_t *v = to_json(c, depth + 1);
        if (!v || json_array_append_new(arr, v) < 0) { json_decref(arr); return NULL; }
    }
    return arr;
}

static json_t *bytes_json(const MpItem *it) {
    char *b = base64(it->data, it->len);
    json_t *s = b ? json_string(b) : NULL;
    free(b);
    if (it->type == MP_BIN || !s) return s;
    return json_pack("{s:i,s:o}", "ext_type", (int)it->ext_type, "base64", s);
}

static json_t *to_json(MpCur *c, int depth) {
    MpItem it;
    if (depth > JSON_MAX_DEPTH || mp_next(c, &it) < 0) return NULL;
    switch (it.type) {
    case MP_NIL: return json_null();
    case MP_BOOL: return json_boolean(it.b);
    case MP_INT: return json_integer((json_int_t)it.i);
    case MP_UINT: return json_real((double)it.u);
    case MP_FLOAT: return isfinite(it.f) ? json_real(it.f) : json_null();
    case MP_STR: return json_text(it.data, it.len);
    case MP_BIN: case MP_EXT: return bytes_json(&it);
    case MP_ARRAY: return array_to_json(c, it.len, depth);
    default: return map_to_json(c, it.len, depth);
    }
}

json_t *record_to_json_value(const void *buf, size_t len) {
    if (!buf) return NULL;
    MpCur c = {buf, (const uint8_t *)buf + len};
    json_t *j = to_json(&c, 0);
    if (!j || c.p != c.end) { json_decref(j); return NULL; }
    return j;
}

char *record_to_json(const void *buf, size_t len) {
    json_t *j = record_to_json_value(buf, len);
    if (!j) return NULL;
    /* 16 digits: 0.9 prints as 0.9, not 0.90000000000000002 */
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(16));
    json_decref(j);
    return s;
}

/* ---- JSON -> msgpack ----------------------------------------------------------- */

static void pack_json(msgpack_packer *pk, json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        size_t n;
        json_t *v;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_keylen_foreach(j, k, n, v) {
            msgpack_pack_str(pk, n);
            msgpack_pack_str_body(pk, k, n);
            pack_json(pk, v);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, i, v) pack_json(pk, v);
        break;
    }
    case JSON_STRING:
        msgpack_pack_str(pk, json_string_length(j));
        msgpack_pack_str_body(pk, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    default: msgpack_pack_nil(pk); break;
    }
}

void *event_json_to_msgpack(const void *json, size_t len, size_t *outlen, char *err, size_t errlen) {
    json_error_t je;
    /* duplicate keys are rejected here as they are in msgpack events; \u0000
     * is taken (a NUL in metadata is echoed as in msgpack events, one in a
     * text field is then refused as bad_text by the same rule) */
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) {
        if (err && errlen) snprintf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_json(&pk, j);
    json_decref(j);
    *outlen = sb.size;
    void *out = sb.data ? sb.data : malloc(1);
    return out;
}

int event_decode_json(const void *buf, size_t len, const EventLimits *lim,
                      ConversationEvent *ev, const char **reason, char *msg, size_t msglen) {
    static const char *dummy;
    const char **rs = reason ? reason : &dummy;
    memset(ev, 0, sizeof *ev);
    if (len > lim->max_event_bytes) {
        *rs = "too_large";
        if (msg && msglen) snprintf(msg, msglen, "%zu bytes, the limit is %zu", len, lim->max_event_bytes);
        return -1;
    }
    char err[200];
    size_t n;
    void *mp = event_json_to_msgpack(buf, len, &n, err, sizeof err);
    if (!mp) {
        *rs = "bad_json";
        if (msg && msglen) snprintf(msg, msglen, "not valid JSON: %s", err);
        return -1;
    }
    /* the JSON text was within the limit; its msgpack form may be a little
     * larger (floats take 9 bytes), which is not the producer's fault */
    EventLimits l2 = *lim;
    l2.max_event_bytes = n;
    int rc = event_decode(mp, n, &l2, ev, rs, msg, msglen);
    free(mp);
    return rc;
}

static int looks_like_json(const uint8_t *p, size_t len) {
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r')) i++;
    return i < len && p[i] == '{';
}

int event_decode_any(const void *buf, size_t len, const char *content_type, const EventLimits *lim,
                     ConversationEvent *ev, const char **reason, char *msg, size_t msglen) {
    int json;
    if (content_type && strcasestr(content_type, "json")) json = 1;
    else if (content_type && strcasestr(content_type, "msgpack")) json = 0;
    else json = buf && looks_like_json(buf, len);
    return json ? event_decode_json(buf, len, lim, ev, reason, msg, msglen)
                : event_decode(buf, len, lim, ev, reason, msg, msglen);
}

/* Longest content-type value looked at: media types are short; a longer value
 * is cut (what is left still decides, or the bytes are sniffed). */
#define CONTENT_TYPE_MAX 128

int event_decode_record(const void *buf, size_t len, const rd_kafka_headers_t *hdrs,
                        const EventLimits *lim, ConversationEvent *ev, const char **reason,
                        char *msg, size_t msglen) {
    char ct[CONTENT_TYPE_MAX + 1];
    int have = 0;
    const char *name;
    const void *val;
    size_t sz;
    for (size_t i = 0; hdrs && !rd_kafka_header_get_all(hdrs, i, &name, &val, &sz); i++) {
        if (strcasecmp(name, "content-type")) continue;
        size_t n = val ? sz : 0;
        if (n > CONTENT_TYPE_MAX) n = CONTENT_TYPE_MAX;
        if (n) memcpy(ct, val, n);
        ct[n] = 0;
        have = 1;
    }
    return event_decode_any(buf ? buf : "", len, have ? ct : NULL, lim, ev, reason, msg, msglen);
}
