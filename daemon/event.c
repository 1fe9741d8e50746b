/* event.c - decoding and validating conversation events (event.h,
 * schemas/conversation-event.schema.json).
 *
 * How it works: the bounded reader (event_mp.h) walks the top-level map once;
 * each known key has a parser that checks type, size and content and copies
 * the strings it keeps; unknown keys are skipped (but must still be valid
 * msgpack). Checks that need the whole event (required fields, role order,
 * excluded codes) run after the walk. Every copy is bounded: strings by the
 * input length and the per-message limit, arrays grow only as elements are
 * actually parsed, so a declared size can never make us allocate.
 * The first violation wins and is reported as (reason code, message).
 */
#include "event.h"
#include "event_mp.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "utf8.h"

typedef struct {
    const EventLimits *lim;
    const char **reason;
    char *msg;
    size_t msglen;
} Dec;

static int bad(Dec *d, const char *reason, const char *fmt, ...) {
    va_list ap;
    *d->reason = reason;
    if (d->msg && d->msglen) {
        va_start(ap, fmt);
        vsnprintf(d->msg, d->msglen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Growth by doubling, so the size follows the elements really parsed. */
static int grow(void **arr, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 4;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return -1;
    memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *arr = p;
    *cap = nc;
    return 0;
}

static int oom(Dec *d) { return bad(d, "too_large", "out of memory"); }

/* ---- text checks --------------------------------------------------------- */

/* Well-formed UTF-8 (utf8.h) and no NUL, which would silently cut the C
 * string the prompt builder sees. */
static const char *text_problem(const uint8_t *s, size_t n) {
    unsigned cp;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0) return "contains a NUL byte";
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (!k) return "is not valid UTF-8";
        i += k;
    }
    return NULL;
}

/* Copies a checked string item; what names it in messages. */
static int copy_text(Dec *d, const MpItem *it, const char *what, char **out) {
    const char *why = text_problem(it->data, it->len);
    if (why) return bad(d, "bad_text", "%s %s", what, why);
    char *s = malloc((size_t)it->len + 1);
    if (!s) return oom(d);
    memcpy(s, it->data, it->len);
    s[it->len] = 0;
    *out = s;
    return 0;
}

static int want(Dec *d, const MpItem *it, MpType t, const char *what) {
    static const char *const names[] = {"nil", "a boolean", "an integer", "an integer", "a float",
                                        "a string", "binary", "an array", "a map", "an extension"};
    if (it->type == t) return 0;
    return bad(d, "wrong_type", "%s must be %s, not %s", what, names[t], names[it->type]);
}

static int next(Dec *d, MpCur *c, MpItem *it) {
    if (mp_next(c, it) < 0) return bad(d, "bad_msgpack", "malformed or truncated msgpack");
    return 0;
}

/* Category codes go into the prompt and come back in the model's output
 * ("S1,S10"): short words without separators. Same rule as the config. */
static int code_ok(const MpItem *it) {
    if (it->len == 0 || it->len > 16) return 0;
    for (uint32_t i = 0; i < it->len; i++) {
        uint8_t ch = it->data[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* ---- messages -------------------------------------------------------------- */

typedef struct {
    Message *m;
    int cap;            /* of m->parts */
    size_t bytes;       /* text so far, against max_message_bytes */
    int index;
} MsgBuild;

static int add_part(Dec *d, MsgBuild *b, const MpItem *text) {
    if (b->bytes + text->len > d->lim->max_message_bytes)
        return bad(d, "message_too_large", "message %d has more than %zu bytes of text", b->index,
                   d->lim->max_message_bytes);
    b->bytes += text->len;
    if (grow((void **)&b->m->parts, &b->cap, b->m->n_parts + 1, sizeof(char *)) < 0) return oom(d);
    char what[48];
    snprintf(what, sizeof what, "message %d text", b->index);
    if (copy_text(d, text, what, &b->m->parts[b->m->n_parts]) < 0) return -1;
    b->m->n_parts++;
    return 0;
}

/* One content part: {type: "text", text: "..."}; other keys ignored. */
static int parse_part(Dec *d, MpCur *c, MsgBuild *b, int pi) {
    MpItem it, key, type = {0}, text = {0};
    int has_type = 0, has_text = 0;
    if (next(d, c, &it) < 0) return -1;
    char what[64];
    snprintf(what, sizeof what, "messages[%d].content[%d]", b->index, pi);
    if (want(d, &it, MP_MAP, what) < 0) return -1;
    for (uint32_t i = 0; i < it.len; i++) {
        if (next(d, c, &key) < 0) return -1;
        if (mp_str_eq(&key, "type") || mp_str_eq(&key, "text")) {
            int is_type = mp_str_eq(&key, "type");
            if (is_type ? has_type : has_text)
                return bad(d, "duplicate_field", "%s has two \"%s\" keys", what, is_type ? "type" : "text");
            if (next(d, c, is_type ? &type : &text) < 0) return -1;
            *(is_type ? &has_type : &has_text) = 1;
        } else if (mp_skip(c) < 0) {
            return bad(d, "bad_msgpack", "malformed or truncated msgpack");
        }
    }
    if (!has_type) return bad(d, "missing_field", "%s has no \"type\"", what);
    if (want(d, &type, MP_STR, what) < 0) return -1;
    if (!mp_str_eq(&type, "text"))
        return bad(d, "unsupported_content", "%s has type \"%.*s\": only \"text\" is supported "
                   "(Llama Guard 3 1B is text only)", what, (int)(type.len > 32 ? 32 : type.len), type.data);
    if (!has_text) return bad(d, "missing_field", "%s has no \"text\"", what);
    if (want(d, &text, MP_STR, what) < 0) return -1;
    return add_part(d, b, &text);
}

static int parse_content(Dec *d, MpCur *c, MsgBuild *b) {
    MpItem it;
    if (next(d, c, &it) < 0) return -1;
    if (it.type == MP_STR) return add_part(d, b, &it);
    if (it.type != MP_ARRAY)
        return bad(d, "wrong_type", "messages[%d].content must be a string or an array of "
                   "{type: \"text\", text} parts", b->index);
    for (uint32_t i = 0; i < it.len; i++)
        if (parse_part(d, c, b, (int)i) < 0) return -1;
    return 0;
}

static int parse_role(Dec *d, MpCur *c, Message *m, int index) {
    MpItem it;
    if (next(d, c, &it) < 0) return -1;
    if (mp_str_eq(&it, "user")) m->role = ROLE_USER;
    else if (mp_str_eq(&it, "assistant")) m->role = ROLE_ASSISTANT;
    else if (it.type != MP_STR) return bad(d, "wrong_type", "messages[%d].role must be a string", index);
    else return bad(d, "bad_role", "messages[%d].role must be \"user\" or \"assistant\"", index);
    return 0;
}

static int parse_message(Dec *d, MpCur *c, Message *m, int index) {
    MpItem it, key;
    int has_role = 0, has_content = 0;
    MsgBuild b = {m, 0, 0, index};
    if (next(d, c, &it) < 0) return -1;
    char what[32];
    snprintf(what, sizeof what, "messages[%d]", index);
    if (want(d, &it, MP_MAP, what) < 0) return -1;
    for (uint32_t i = 0; i < it.len; i++) {
        if (next(d, c, &key) < 0) return -1;
        if (mp_str_eq(&key, "role")) {
            if (has_role++) return bad(d, "duplicate_field", "%s has two \"role\" keys", what);
            if (parse_role(d, c, m, index) < 0) return -1;
        } else if (mp_str_eq(&key, "content")) {
            if (has_content++) return bad(d, "duplicate_field", "%s has two \"content\" keys", what);
            if (parse_content(d, c, &b) < 0) return -1;
        } else if (mp_skip(c) < 0) {
            return bad(d, "bad_msgpack", "malformed or truncated msgpack");
        }
    }
    if (!has_role) return bad(d, "missing_field", "%s has no \"role\"", what);
    if (!has_content) return bad(d, "missing_field", "%s has no \"content\"", what);
    return 0;
}

static int parse_messages(Dec *d, MpCur *c, ConversationEvent *ev) {
    MpItem it;
    if (next(d, c, &it) < 0) return -1;
    if (want(d, &it, MP_ARRAY, "messages") < 0) return -1;
    if (it.len == 0) return bad(d, "empty_conversation", "messages is empty");
    if (it.len > (uint32_t)d->lim->max_messages)
        return bad(d, "too_many_messages", "%u messages, the limit is %d", it.len, d->lim->max_messages);
    ev->conv.msgs = calloc(it.len, sizeof(Message));
    if (!ev->conv.msgs) return oom(d);
    for (uint32_t i = 0; i < it.len; i++) {
        ev->conv.n_msgs = (int)i + 1;        /* so event_free releases partial work */
        if (parse_message(d, c, &ev->conv.msgs[i], (int)i) < 0) return -1;
    }
    return 0;
}

/* ---- categories, exclude, role, metadata, id ------------------------------ */

static int parse_categories(Dec *d, MpCur *c, ConversationEvent *ev) {
    MpItem it, code, name;
    int cap = 0;
    if (next(d, c, &it) < 0) return -1;
    if (it.type != MP_MAP) return bad(d, "bad_categories", "categories must be a map of code -> name");
    if (it.len == 0) return bad(d, "bad_categories", "categories is empty (leave it out to use the configured list)");
    for (uint32_t i = 0; i < it.len; i++) {
        if (next(d, c, &code) < 0 || next(d, c, &name) < 0) return -1;
        if (code.type != MP_STR || name.type != MP_STR)
            return bad(d, "bad_categories", "categories must map string codes to string names");
        if (!code_ok(&code))
            return bad(d, "bad_categories", "category code \"%.*s\" must be 1-16 letters, digits, '_' or '-'",
                       (int)(code.len > 32 ? 32 : code.len), code.data);
        if (name.len == 0) return bad(d, "bad_categories", "category %.*s has an empty name", (int)code.len, code.data);
        for (int j = 0; j < ev->categories.n; j++)
            if (mp_str_eq(&code, ev->categories.items[j].code))
                return bad(d, "bad_categories", "category code %.*s appears twice", (int)code.len, code.data);
        if (grow((void **)&ev->categories.items, &cap, ev->categories.n + 1, sizeof(Category)) < 0) return oom(d);
        Category *cat = &ev->categories.items[ev->categories.n++];
        if (copy_text(d, &code, "category code", &cat->code) < 0 ||
            copy_text(d, &name, "category name", &cat->name) < 0)
            return -1;
    }
    return 0;
}

static int parse_exclude(Dec *d, MpCur *c, ConversationEvent *ev) {
    MpItem it, x;
    int cap = 0;
    if (next(d, c, &it) < 0) return -1;
    if (it.type != MP_ARRAY) return bad(d, "bad_exclude", "exclude must be an array of category codes");
    ev->has_exclude = 1;
    for (uint32_t i = 0; i < it.len; i++) {
        if (next(d, c, &x) < 0) return -1;
        if (x.type != MP_STR || !code_ok(&x))
            return bad(d, "bad_exclude", "exclude[%u] is not a category code", i);
        if (grow((void **)&ev->exclude, &cap, ev->n_exclude + 1, sizeof(char *)) < 0) return oom(d);
        if (copy_text(d, &x, "excluded code", &ev->exclude[ev->n_exclude]) < 0) return -1;
        ev->n_exclude++;
    }
    return 0;
}

static int parse_force_role(Dec *d, MpCur *c, ConversationEvent *ev) {
    MpItem it;
    if (next(d, c, &it) < 0) return -1;
    if (it.type == MP_NIL) ev->role = FORCE_ROLE_AUTO;
    else if (mp_str_eq(&it, "user")) ev->role = FORCE_ROLE_USER;
    else if (mp_str_eq(&it, "agent")) ev->role = FORCE_ROLE_AGENT;
    else if (it.type != MP_STR) return bad(d, "wrong_type", "role must be a string");
    else return bad(d, "bad_role", "role must be \"user\" or \"agent\"");
    return 0;
}

/* Kept as the exact bytes received, so the verdict echoes them untouched. */
static int parse_metadata(Dec *d, MpCur *c, ConversationEvent *ev) {
    const uint8_t *start = c->p;
    MpItem it;
    MpCur peek = *c;
    if (next(d, &peek, &it) < 0) return -1;
    if (it.type == MP_NIL) { *c = peek; return 0; }
    if (it.type != MP_MAP) return want(d, &it, MP_MAP, "metadata");
    int sk = mp_skip_depth(c, EVENT_MAX_METADATA_DEPTH);
    if (sk == -2)
        return bad(d, "metadata_too_deep", "metadata nests more than %d levels of maps and arrays",
                   EVENT_MAX_METADATA_DEPTH);
    if (sk < 0) return bad(d, "bad_msgpack", "malformed or truncated msgpack in metadata");
    size_t n = (size_t)(c->p - start);
    ev->metadata = malloc(n);
    if (!ev->metadata) return oom(d);
    memcpy(ev->metadata, start, n);
    ev->metadata_len = n;
    return 0;
}

static int parse_id(Dec *d, MpCur *c, ConversationEvent *ev) {
    MpItem it;
    if (next(d, c, &it) < 0) return -1;
    if (want(d, &it, MP_STR, "id") < 0) return -1;
    if (it.len == 0) return bad(d, "bad_id", "id is empty");
    if (it.len > EVENT_MAX_ID_BYTES) return bad(d, "bad_id", "id is longer than %d bytes", EVENT_MAX_ID_BYTES);
    return copy_text(d, &it, "id", &ev->id);
}

static int parse_schema(Dec *d, MpCur *c) {
    MpItem it;
    if (next(d, c, &it) < 0) return -1;
    if (it.type != MP_INT) return bad(d, "wrong_type", "schema must be an integer");
    if (it.i < 1 || it.i > EVENT_SCHEMA_VERSION)
        return bad(d, "unsupported_schema", "schema %lld is not supported (this guardd reads version %d)",
                   (long long)it.i, EVENT_SCHEMA_VERSION);
    return 0;
}

/* ---- the event ------------------------------------------------------------- */

enum { F_ID, F_MESSAGES, F_CATEGORIES, F_EXCLUDE, F_ROLE, F_METADATA, F_SCHEMA, F_COUNT };
static const char *const field_names[F_COUNT] = {"id", "messages", "categories", "exclude", "role",
                                                 "metadata", "schema"};

static int parse_field(Dec *d, MpCur *c, ConversationEvent *ev, int f) {
    switch (f) {
    case F_ID: return parse_id(d, c, ev);
    case F_MESSAGES: return parse_messages(d, c, ev);
    case F_CATEGORIES: return parse_categories(d, c, ev);
    case F_EXCLUDE: return parse_exclude(d, c, ev);
    case F_ROLE: return parse_force_role(d, c, ev);
    case F_METADATA: return parse_metadata(d, c, ev);
    default: return parse_schema(d, c);
    }
}

static int check_whole(Dec *d, const ConversationEvent *ev) {
    if (!ev->id) return bad(d, "missing_field", "the event has no \"id\"");
    if (!ev->conv.msgs) return bad(d, "missing_field", "the event has no \"messages\"");
    for (int i = 0; i < ev->conv.n_msgs; i++)
        if ((int)ev->conv.msgs[i].role != (i % 2 ? ROLE_ASSISTANT : ROLE_USER))
            return bad(d, "roles_not_alternating", "messages[%d] should be %s: roles must alternate "
                       "user, assistant, user, ...", i, i % 2 ? "assistant" : "user");
    if (ev->categories.n == 0) return 0;     /* excluded codes checked against the configured list later */
    for (int i = 0; i < ev->n_exclude; i++) {
        int found = 0;
        for (int j = 0; j < ev->categories.n && !found; j++)
            found = !strcmp(ev->exclude[i], ev->categories.items[j].code);
        if (!found) return bad(d, "bad_exclude", "excluded code %s is not one of the event's categories", ev->exclude[i]);
    }
    if (ev->n_exclude >= ev->categories.n) {
        int distinct = 0;   /* duplicates in exclude are harmless; count distinct hits */
        for (int j = 0; j < ev->categories.n; j++)
            for (int i = 0; i < ev->n_exclude; i++)
                if (!strcmp(ev->exclude[i], ev->categories.items[j].code)) { distinct++; break; }
        if (distinct == ev->categories.n) return bad(d, "bad_exclude", "exclude leaves no category");
    }
    return 0;
}

static int decode_map(Dec *d, MpCur *c, ConversationEvent *ev) {
    MpItem top, key;
    unsigned seen = 0;
    if (mp_next(c, &top) < 0) return bad(d, "bad_msgpack", "not a msgpack value (empty or truncated)");
    if (top.type != MP_MAP) return bad(d, "not_a_map", "the event must be a msgpack map");
    for (uint32_t i = 0; i < top.len; i++) {
        if (next(d, c, &key) < 0) return -1;
        if (key.type != MP_STR) return bad(d, "wrong_type", "event keys must be strings");
        int f = 0;
        while (f < F_COUNT && !mp_str_eq(&key, field_names[f])) f++;
        if (f == F_COUNT) {
            if (mp_skip(c) < 0) return bad(d, "bad_msgpack", "malformed or truncated msgpack");
            continue;
        }
        if (seen & (1u << f)) return bad(d, "duplicate_field", "the event has two \"%s\" keys", field_names[f]);
        seen |= 1u << f;
        if (parse_field(d, c, ev, f) < 0) return -1;
    }
    if (c->p != c->end)
        return bad(d, "trailing_bytes", "%zu bytes after the event's map", (size_t)(c->end - c->p));
    return check_whole(d, ev);
}

int event_decode(const void *buf, size_t len, const EventLimits *lim,
                 ConversationEvent *ev, const char **reason, char *msg, size_t msglen) {
    static const char *dummy;
    Dec d = {lim, reason ? reason : &dummy, msg, msglen};
    memset(ev, 0, sizeof *ev);
    if (msg && msglen) msg[0] = 0;
    *d.reason = NULL;
    if (len > lim->max_event_bytes) {
        bad(&d, "too_large", "%zu bytes, the limit is %zu", len, lim->max_event_bytes);
        return -1;
    }
    /* no bytes at all (msgpack-c's empty sbuffer has data NULL): NULL + 0
     * is undefined behaviour in C, so the end is not computed from it */
    MpCur c = {buf, buf ? (const uint8_t *)buf + len : buf};
    if (decode_map(&d, &c, ev) < 0) {
        event_free(ev);
        return -1;
    }
    return 0;
}

void event_free(ConversationEvent *ev) {
    if (!ev) return;
    free(ev->id);
    for (int i = 0; i < ev->conv.n_msgs; i++) {
        for (int j = 0; j < ev->conv.msgs[i].n_parts; j++) free(ev->conv.msgs[i].parts[j]);
        free(ev->conv.msgs[i].parts);
    }
    free(ev->conv.msgs);
    for (int i = 0; i < ev->categories.n; i++) {
        free(ev->categories.items[i].code);
        free(ev->categories.items[i].name);
    }
    free(ev->categories.items);
    for (int i = 0; i < ev->n_exclude; i++) free(ev->exclude[i]);
    free(ev->exclude);
    free(ev->metadata);
    memset(ev, 0, sizeof *ev);
}
