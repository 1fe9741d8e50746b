/* check_event.c - the event codec (daemon/event*.c).
 *
 * Inputs are built here with msgpack-c's packer (not with the codec's own
 * encoder), outputs are read back with msgpack-c's unpacker, so the codec is
 * checked against an independent implementation of the format. Covers: valid
 * events (string and parts content, unknown fields, metadata echoed byte for
 * byte), one case per reason code, hostile declared sizes under a tight
 * address-space limit, verdict/DLQ round trips, record_to_json, JSON events,
 * and the examples in schemas/examples (valid ones decode, invalid ones fail
 * with the reason their file name states).
 *
 * The "samples" test case writes encoded records to $GUARDD_SAMPLES_DIR for
 * tests/t_schemas.sh, which validates them against the JSON Schemas in schemas/.
 */
#define _GNU_SOURCE     /* memmem */
#include "check_main.h"
#include <dirent.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "event.h"

/* ---- building inputs ------------------------------------------------------- */

typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} B;

static B *b_new(void) {
    B *b = calloc(1, sizeof *b);
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
    return b;
}

static void b_free(B *b) { msgpack_sbuffer_destroy(&b->sb); free(b); }
static void s_(B *b, const char *s) { msgpack_pack_str(&b->pk, strlen(s)); msgpack_pack_str_body(&b->pk, s, strlen(s)); }
static void sn(B *b, const char *s, size_t n) { msgpack_pack_str(&b->pk, n); msgpack_pack_str_body(&b->pk, s, n); }
static void m_(B *b, size_t n) { msgpack_pack_map(&b->pk, n); }
static void a_(B *b, size_t n) { msgpack_pack_array(&b->pk, n); }
static void raw(B *b, const void *p, size_t n) { msgpack_sbuffer_write(&b->sb, p, n); }
static void kv(B *b, const char *k, const char *v) { s_(b, k); s_(b, v); }

/* {role, content: "text"} */
static void msg(B *b, const char *role, const char *text) {
    m_(b, 2);
    kv(b, "role", role);
    kv(b, "content", text);
}

static void one_msg_(B *b) { s_(b, "messages"); a_(b, 1); msg(b, "user", "hi"); }

static const EventLimits LIM = {4096, 8, 256};

static int decode(B *b, const EventLimits *lim, ConversationEvent *ev, const char **reason, char *m, size_t ml) {
    return event_decode(b->sb.data, b->sb.size, lim ? lim : &LIM, ev, reason, m, ml);
}

/* ---- valid events ------------------------------------------------------------ */

START_TEST(valid_string_content) {
    B *b = b_new();
    m_(b, 3);
    kv(b, "id", "evt-1");
    s_(b, "messages");
    a_(b, 2);
    msg(b, "user", "How do I bake bread?");
    msg(b, "assistant", "Mix flour and water.");
    s_(b, "unknown_field");
    m_(b, 1); s_(b, "deep"); a_(b, 2); msgpack_pack_nil(&b->pk); msgpack_pack_double(&b->pk, 1.5);
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    ck_assert_msg(decode(b, NULL, &ev, &reason, m, sizeof m) == 0, "%s: %s", reason, m);
    ck_assert_str_eq(ev.id, "evt-1");
    ck_assert_int_eq(ev.conv.n_msgs, 2);
    ck_assert_int_eq(ev.conv.msgs[0].role, ROLE_USER);
    ck_assert_int_eq(ev.conv.msgs[1].role, ROLE_ASSISTANT);
    ck_assert_int_eq(ev.conv.msgs[0].n_parts, 1);
    ck_assert_str_eq(ev.conv.msgs[0].parts[0], "How do I bake bread?");
    ck_assert_str_eq(ev.conv.msgs[1].parts[0], "Mix flour and water.");
    ck_assert_int_eq(ev.categories.n, 0);
    ck_assert_int_eq(ev.has_exclude, 0);
    ck_assert_int_eq(ev.role, FORCE_ROLE_AUTO);
    ck_assert_ptr_null(ev.metadata);
    event_free(&ev);
    b_free(b);
}
END_TEST

START_TEST(valid_parts_content_and_options) {
    B *b = b_new();
    m_(b, 5);
    kv(b, "id", "evt-2");
    s_(b, "messages");
    a_(b, 1);
    m_(b, 2);
    kv(b, "role", "user");
    s_(b, "content");
    a_(b, 2);
    m_(b, 2); kv(b, "type", "text"); kv(b, "text", "first part");
    m_(b, 3); kv(b, "text", "second \xc3\xa9 part"); kv(b, "type", "text"); kv(b, "cache_control", "x");
    s_(b, "categories");
    m_(b, 2); kv(b, "S1", "Violence."); kv(b, "X9", "Custom thing.");
    s_(b, "exclude");
    a_(b, 1); s_(b, "X9");
    kv(b, "role", "agent");
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    ck_assert_msg(decode(b, NULL, &ev, &reason, m, sizeof m) == 0, "%s: %s", reason, m);
    ck_assert_int_eq(ev.conv.msgs[0].n_parts, 2);
    ck_assert_str_eq(ev.conv.msgs[0].parts[0], "first part");
    ck_assert_str_eq(ev.conv.msgs[0].parts[1], "second \xc3\xa9 part");
    ck_assert_int_eq(ev.categories.n, 2);
    ck_assert_str_eq(ev.categories.items[1].code, "X9");
    ck_assert_str_eq(ev.categories.items[1].name, "Custom thing.");
    ck_assert_int_eq(ev.has_exclude, 1);
    ck_assert_int_eq(ev.n_exclude, 1);
    ck_assert_str_eq(ev.exclude[0], "X9");
    ck_assert_int_eq(ev.role, FORCE_ROLE_AGENT);
    event_free(&ev);
    b_free(b);
}
END_TEST

/* The metadata map as built here, byte for byte (a float, nested maps, bin,
 * an ext and a non-canonical 16-bit length for a short string, which a
 * re-encoder would shorten). */
static void pack_metadata(B *b) {
    m_(b, 4);
    kv(b, "tenant", "acme");
    s_(b, "score"); msgpack_pack_float(&b->pk, 0.25f);
    s_(b, "nested"); m_(b, 1); s_(b, "bin"); msgpack_pack_bin(&b->pk, 3); msgpack_pack_bin_body(&b->pk, "\0\1\2", 3);
    raw(b, "\xda\x00\x02hi", 5);                       /* str16 "hi" */
    msgpack_pack_ext(&b->pk, 1, 5); msgpack_pack_ext_body(&b->pk, "\x01", 1);
}

START_TEST(metadata_echoed_byte_for_byte) {
    B *meta = b_new();
    pack_metadata(meta);
    B *b = b_new();
    m_(b, 3);
    s_(b, "metadata");
    raw(b, meta->sb.data, meta->sb.size);
    kv(b, "id", "m1");
    s_(b, "messages"); a_(b, 1); msg(b, "user", "hello");
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    ck_assert_msg(decode(b, NULL, &ev, &reason, m, sizeof m) == 0, "%s: %s", reason, m);
    ck_assert_uint_eq(ev.metadata_len, meta->sb.size);
    ck_assert(memcmp(ev.metadata, meta->sb.data, meta->sb.size) == 0);
    /* and the verdict carries the same bytes right after its "metadata" key */
    ClassifyResult r = {0};
    r.raw = "safe";
    EventSource src = {"in", 0, 7};
    VerdictTiming t = {"llama-guard-3-1b", "abc", 0.001, 0.002, 1};
    size_t len;
    uint8_t *v = verdict_encode(&ev, &src, &r, &t, &len);
    const uint8_t *key = memmem(v, len, "\xa8metadata", 9);
    ck_assert_ptr_nonnull(key);
    ck_assert(memcmp(key + 9, meta->sb.data, meta->sb.size) == 0);
    free(v);
    event_free(&ev);
    b_free(b);
    b_free(meta);
}
END_TEST

START_TEST(json_event_decodes_like_msgpack) {
    const char *js = "{\"id\":\"j1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                     "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"yo\"}]}],"
                     "\"metadata\":{\"k\":[1,2.5,true,null]},\"categories\":{\"S1\":\"A.\"},\"role\":\"user\"}";
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    ck_assert_msg(event_decode_json(js, strlen(js), &LIM, &ev, &reason, m, sizeof m) == 0, "%s: %s", reason, m);
    ck_assert_str_eq(ev.id, "j1");
    ck_assert_str_eq(ev.conv.msgs[1].parts[0], "yo");
    ck_assert_int_eq(ev.role, FORCE_ROLE_USER);
    ck_assert_int_eq(ev.categories.n, 1);
    /* metadata {"k":[1,2.5,true,null]} as msgpack, spelled out by hand */
    static const uint8_t want[] = {0x81, 0xa1, 'k', 0x94, 0x01, 0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0, 0xc3, 0xc0};
    ck_assert_uint_eq(ev.metadata_len, sizeof want);
    ck_assert(memcmp(ev.metadata, want, sizeof want) == 0);
    event_free(&ev);
    static const struct { const char *js, *reason; } bad[] = {
        {"{\"id\":\"x\",\"messages\":[}", "bad_json"},
        {"{\"id\":\"x\",\"id\":\"y\",\"messages\":[]}", "bad_json"},
        {"[1,2]", "not_a_map"},
        {"{\"id\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"u\"}]}]}",
         "unsupported_content"},
        {"{\"id\":\"x\",\"messages\":[]}", "empty_conversation"},
        /* \u0000 parses; in text it is refused by the same rule as in msgpack */
        {"{\"id\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", "bad_text"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        reason = NULL;
        ck_assert_int_eq(event_decode_json(bad[i].js, strlen(bad[i].js), &LIM, &ev, &reason, m, sizeof m), -1);
        ck_assert_msg(reason && !strcmp(reason, bad[i].reason), "%s: got %s (%s)", bad[i].js, reason, m);
    }
}
END_TEST

START_TEST(decode_any_picks_the_encoding) {
    const char *js = " \n{\"id\":\"j\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    B *b = b_new();
    m_(b, 2); kv(b, "id", "m"); one_msg_(b);
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    ck_assert_msg(event_decode_any(js, strlen(js), NULL, &LIM, &ev, &reason, m, sizeof m) == 0, "%s", m);
    ck_assert_str_eq(ev.id, "j");
    event_free(&ev);
    ck_assert_int_eq(event_decode_any(b->sb.data, b->sb.size, NULL, &LIM, &ev, &reason, m, sizeof m), 0);
    ck_assert_str_eq(ev.id, "m");
    event_free(&ev);
    ck_assert_int_eq(event_decode_any(b->sb.data, b->sb.size, "application/msgpack", &LIM, &ev, &reason, m, sizeof m), 0);
    event_free(&ev);
    /* the header wins over sniffing */
    ck_assert_int_eq(event_decode_any(b->sb.data, b->sb.size, "application/json", &LIM, &ev, &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "bad_json");
    ck_assert_int_eq(event_decode_any(js, strlen(js), "application/x-msgpack", &LIM, &ev, &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "not_a_map");   /* the leading space is the msgpack integer 32 */
    b_free(b);
}
END_TEST

/* Media types are case-insensitive (RFC 9110): "Application/JSON" is JSON. */
START_TEST(decode_any_content_type_ignores_case) {
    B *b = b_new();
    m_(b, 2); kv(b, "id", "m"); one_msg_(b);
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    ck_assert_int_eq(event_decode_any(b->sb.data, b->sb.size, "Application/JSON; charset=utf-8", &LIM, &ev,
                                      &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "bad_json");
    const char *js = "{\"id\":\"j\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    ck_assert_int_eq(event_decode_any(js, strlen(js), "APPLICATION/MSGPACK", &LIM, &ev, &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "not_a_map");
    b_free(b);
}
END_TEST

/* What the consumer calls: the record's content-type header (any case of the
 * name, last one wins) decides, else the bytes are sniffed. */
START_TEST(record_decode_uses_the_header) {
    const char *js = "{\"id\":\"j\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    B *b = b_new();
    m_(b, 2); kv(b, "id", "m"); one_msg_(b);
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    /* no headers at all: sniffed */
    ck_assert_msg(event_decode_record(js, strlen(js), NULL, &LIM, &ev, &reason, m, sizeof m) == 0, "%s: %s", reason, m);
    ck_assert_str_eq(ev.id, "j");
    event_free(&ev);
    ck_assert_int_eq(event_decode_record(b->sb.data, b->sb.size, NULL, &LIM, &ev, &reason, m, sizeof m), 0);
    ck_assert_str_eq(ev.id, "m");
    event_free(&ev);
    /* unrelated headers: still sniffed */
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    rd_kafka_header_add(h, "traceparent", -1, "00-1-01", -1);
    ck_assert_int_eq(event_decode_record(js, strlen(js), h, &LIM, &ev, &reason, m, sizeof m), 0);
    event_free(&ev);
    /* the header decides: JSON declared, msgpack sent */
    rd_kafka_header_add(h, "Content-Type", -1, "application/json", -1);
    ck_assert_int_eq(event_decode_record(b->sb.data, b->sb.size, h, &LIM, &ev, &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "bad_json");
    ck_assert_int_eq(event_decode_record(js, strlen(js), h, &LIM, &ev, &reason, m, sizeof m), 0);
    event_free(&ev);
    /* the last one wins; a value that is not NUL-terminated or is huge is fine */
    rd_kafka_header_add(h, "content-type", -1, "application/msgpackXXXX", 19);
    ck_assert_int_eq(event_decode_record(b->sb.data, b->sb.size, h, &LIM, &ev, &reason, m, sizeof m), 0);
    event_free(&ev);
    char big[4096];
    memset(big, ' ', sizeof big);
    memcpy(big + sizeof big - 4, "json", 4);
    rd_kafka_header_add(h, "content-type", -1, big, sizeof big);
    ck_assert_int_eq(event_decode_record(js, strlen(js), h, &LIM, &ev, &reason, m, sizeof m), 0);
    event_free(&ev);
    /* a content type saying neither: sniffed */
    rd_kafka_header_add(h, "content-type", -1, "text/plain", -1);
    ck_assert_int_eq(event_decode_record(js, strlen(js), h, &LIM, &ev, &reason, m, sizeof m), 0);
    event_free(&ev);
    rd_kafka_headers_destroy(h);
    b_free(b);
}
END_TEST

/* ---- one case per reason code -------------------------------------------------- */

typedef struct {
    const char *name;
    void (*build)(B *);
    const char *reason;
    const char *words;       /* must appear in the human message */
} BadCase;

static void ev_head(B *b, size_t extra) { m_(b, 2 + extra); kv(b, "id", "bad"); }
static void one_msg(B *b) { s_(b, "messages"); a_(b, 1); msg(b, "user", "hi"); }

static void c_truncated(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 2); kv(b, "role", "user"); }
static void c_never_used(B *b) { raw(b, "\xc1", 1); }
static void c_empty(B *b) { (void)b; }
static void c_trailing(B *b) { ev_head(b, 0); one_msg(b); raw(b, "\x00", 1); }
static void c_not_map(B *b) { a_(b, 1); s_(b, "x"); }
static void c_no_id(B *b) { m_(b, 1); one_msg(b); }
static void c_no_messages(B *b) { m_(b, 1); kv(b, "id", "x"); }
static void c_no_content(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 1); kv(b, "role", "user"); }
static void c_part_no_text(B *b) {
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 2); kv(b, "role", "user");
    s_(b, "content"); a_(b, 1); m_(b, 1); kv(b, "type", "text");
}
static void c_dup_id(B *b) { ev_head(b, 1); one_msg(b); kv(b, "id", "again"); }
static void c_dup_role(B *b) {
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 3); kv(b, "role", "user"); kv(b, "content", "x"); kv(b, "role", "user");
}
static void c_id_int(B *b) { m_(b, 2); s_(b, "id"); msgpack_pack_int(&b->pk, 5); one_msg(b); }
static void c_key_int(B *b) { ev_head(b, 1); one_msg(b); msgpack_pack_int(&b->pk, 1); msgpack_pack_int(&b->pk, 2); }
static void c_content_int(B *b) {
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 2); kv(b, "role", "user"); s_(b, "content"); msgpack_pack_int(&b->pk, 3);
}
static void c_messages_map(B *b) { ev_head(b, 0); s_(b, "messages"); m_(b, 0); }
static void c_metadata_str(B *b) { ev_head(b, 1); one_msg(b); kv(b, "metadata", "text"); }
static void c_empty_id(B *b) { m_(b, 2); kv(b, "id", ""); one_msg(b); }
static void c_long_id(B *b) {
    char id[EVENT_MAX_ID_BYTES + 2];
    memset(id, 'a', sizeof id - 1);
    id[sizeof id - 1] = 0;
    m_(b, 2); kv(b, "id", id); one_msg(b);
}
static void c_bad_utf8(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); msg(b, "user", "caf\xc3"); }
static void c_overlong(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); msg(b, "user", "\xc0\xaf"); }
static void c_overlong3(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); msg(b, "user", "\xe0\x80\xaf"); }
static void c_surrogate(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); msg(b, "user", "x\xed\xa0\x80"); }
static void c_nul(B *b) {
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 2); kv(b, "role", "user"); s_(b, "content"); sn(b, "a\0b", 3);
}
static void c_too_many(B *b) {
    ev_head(b, 0); s_(b, "messages"); a_(b, 9);
    for (int i = 0; i < 9; i++) msg(b, i % 2 ? "assistant" : "user", "x");
}
static void c_msg_too_large(B *b) {
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); msg(b, "user", big);
}
static void c_parts_too_large(B *b) {     /* 3 x 100 bytes: each fits, the sum does not */
    char part[101];
    memset(part, 'y', 100);
    part[100] = 0;
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 2); kv(b, "role", "user"); s_(b, "content"); a_(b, 3);
    for (int i = 0; i < 3; i++) { m_(b, 2); kv(b, "type", "text"); kv(b, "text", part); }
}
static void c_bad_role(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); msg(b, "system", "x"); }
static void c_bad_force_role(B *b) { ev_head(b, 1); one_msg(b); kv(b, "role", "assistant"); }
static void c_starts_assistant(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 1); msg(b, "assistant", "x"); }
static void c_two_users(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 2); msg(b, "user", "a"); msg(b, "user", "b"); }
static void c_empty_conv(B *b) { ev_head(b, 0); s_(b, "messages"); a_(b, 0); }
static void c_image(B *b) {
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 2); kv(b, "role", "user"); s_(b, "content"); a_(b, 2);
    m_(b, 2); kv(b, "type", "text"); kv(b, "text", "look:");
    m_(b, 2); kv(b, "type", "image"); kv(b, "url", "http://x/y.png");
}
static void c_cat_value_int(B *b) { ev_head(b, 1); one_msg(b); s_(b, "categories"); m_(b, 1); s_(b, "S1"); msgpack_pack_int(&b->pk, 1); }
static void c_cat_code(B *b) { ev_head(b, 1); one_msg(b); s_(b, "categories"); m_(b, 1); kv(b, "S,1", "A."); }
static void c_cat_empty(B *b) { ev_head(b, 1); one_msg(b); s_(b, "categories"); m_(b, 0); }
static void c_cat_array(B *b) { ev_head(b, 1); one_msg(b); s_(b, "categories"); a_(b, 1); s_(b, "S1"); }
static void c_cat_dup(B *b) { ev_head(b, 1); one_msg(b); s_(b, "categories"); m_(b, 2); kv(b, "S1", "A."); kv(b, "S1", "B."); }
static void c_excl_unknown(B *b) {
    ev_head(b, 2); one_msg(b); s_(b, "categories"); m_(b, 2); kv(b, "S1", "A."); kv(b, "S2", "B.");
    s_(b, "exclude"); a_(b, 1); s_(b, "S3");
}
static void c_excl_all(B *b) {
    ev_head(b, 2); one_msg(b); s_(b, "exclude"); a_(b, 1); s_(b, "S1"); s_(b, "categories"); m_(b, 1); kv(b, "S1", "A.");
}
static void c_excl_int(B *b) { ev_head(b, 1); one_msg(b); s_(b, "exclude"); a_(b, 1); msgpack_pack_int(&b->pk, 1); }
static void c_schema_2(B *b) { ev_head(b, 1); one_msg(b); s_(b, "schema"); msgpack_pack_int(&b->pk, 2); }
/* metadata {"a": [[...[1]...]]}: levels container levels in all (the map is 1) */
static void metadata_nested(B *b, int levels) {
    m_(b, 1); s_(b, "a");
    for (int i = 1; i < levels; i++) a_(b, 1);
    msgpack_pack_int(&b->pk, 1);
}
static void c_deep_metadata(B *b) {
    ev_head(b, 1); one_msg(b); s_(b, "metadata"); metadata_nested(b, EVENT_MAX_METADATA_DEPTH + 1);
}
static void c_deep_empty_metadata(B *b) {   /* an empty container one level too deep counts too */
    ev_head(b, 1); one_msg(b); s_(b, "metadata");
    m_(b, 1); s_(b, "a");
    for (int i = 2; i < EVENT_MAX_METADATA_DEPTH; i++) a_(b, 1);
    m_(b, 1); s_(b, "b"); a_(b, 0);
}
/* hostile declared sizes: each header promises far more than the bytes hold */
static void c_huge_array(B *b) { ev_head(b, 0); s_(b, "messages"); raw(b, "\xdd\xff\xff\xff\xff\x80", 6); }
static void c_huge_str(B *b) { m_(b, 2); s_(b, "id"); raw(b, "\xdb\xff\xff\xff\xf0zz", 7); one_msg(b); }
static void c_huge_map(B *b) { raw(b, "\xdf\x7f\xff\xff\xff\xa2id", 8); }
static void c_huge_bin_unknown(B *b) { ev_head(b, 1); one_msg(b); s_(b, "blob"); raw(b, "\xc6\xff\xff\xff\xff" "abc", 8); }
static void c_huge_parts(B *b) {
    ev_head(b, 0); s_(b, "messages"); a_(b, 1); m_(b, 2); kv(b, "role", "user"); s_(b, "content");
    raw(b, "\xdd\x10\x00\x00\x00", 5);
}
static void c_deep_unknown(B *b) {    /* 3000 nested arrays in an ignored field: skipped without recursion */
    ev_head(b, 1); one_msg(b); s_(b, "deep");
    for (int i = 0; i < 3000; i++) raw(b, "\x91", 1);
    msgpack_pack_nil(&b->pk);
    raw(b, "\x00", 1);                /* then trailing garbage, to get a definite error */
}

static const BadCase bad_cases[] = {
    {"truncated", c_truncated, "bad_msgpack", "truncated"},
    {"byte 0xc1", c_never_used, "bad_msgpack", "msgpack"},
    {"empty input", c_empty, "bad_msgpack", "empty"},
    {"trailing bytes", c_trailing, "trailing_bytes", "1 bytes"},
    {"array event", c_not_map, "not_a_map", "map"},
    {"no id", c_no_id, "missing_field", "\"id\""},
    {"no messages", c_no_messages, "missing_field", "\"messages\""},
    {"no content", c_no_content, "missing_field", "\"content\""},
    {"part without text", c_part_no_text, "missing_field", "\"text\""},
    {"two ids", c_dup_id, "duplicate_field", "\"id\""},
    {"two roles", c_dup_role, "duplicate_field", "\"role\""},
    {"id is int", c_id_int, "wrong_type", "id must be a string"},
    {"int key", c_key_int, "wrong_type", "keys"},
    {"content int", c_content_int, "wrong_type", "content"},
    {"messages map", c_messages_map, "wrong_type", "messages must be an array"},
    {"metadata string", c_metadata_str, "wrong_type", "metadata"},
    {"empty id", c_empty_id, "bad_id", "empty"},
    {"long id", c_long_id, "bad_id", "256"},
    {"bad utf8", c_bad_utf8, "bad_text", "UTF-8"},
    {"overlong utf8", c_overlong, "bad_text", "UTF-8"},
    {"overlong 3-byte utf8", c_overlong3, "bad_text", "UTF-8"},
    {"surrogate utf8", c_surrogate, "bad_text", "UTF-8"},
    {"nul in text", c_nul, "bad_text", "NUL"},
    {"too many messages", c_too_many, "too_many_messages", "9 messages"},
    {"message too large", c_msg_too_large, "message_too_large", "256"},
    {"parts too large", c_parts_too_large, "message_too_large", "message 0"},
    {"system role", c_bad_role, "bad_role", "messages[0].role"},
    {"event role", c_bad_force_role, "bad_role", "agent"},
    {"starts with assistant", c_starts_assistant, "roles_not_alternating", "messages[0]"},
    {"user twice", c_two_users, "roles_not_alternating", "messages[1]"},
    {"no messages at all", c_empty_conv, "empty_conversation", "empty"},
    {"image part", c_image, "unsupported_content", "\"image\""},
    {"category value int", c_cat_value_int, "bad_categories", "string"},
    {"category code comma", c_cat_code, "bad_categories", "S,1"},
    {"categories empty", c_cat_empty, "bad_categories", "empty"},
    {"categories array", c_cat_array, "bad_categories", "map"},
    {"category twice", c_cat_dup, "bad_categories", "twice"},
    {"exclude unknown", c_excl_unknown, "bad_exclude", "S3"},
    {"exclude all", c_excl_all, "bad_exclude", "no category"},
    {"exclude int", c_excl_int, "bad_exclude", "exclude[0]"},
    {"schema 2", c_schema_2, "unsupported_schema", "2"},
    {"huge array", c_huge_array, "bad_msgpack", "msgpack"},
    {"huge string", c_huge_str, "bad_msgpack", "msgpack"},
    {"huge map", c_huge_map, "bad_msgpack", "msgpack"},
    {"huge bin in unknown field", c_huge_bin_unknown, "bad_msgpack", "msgpack"},
    {"huge parts array", c_huge_parts, "bad_msgpack", "msgpack"},
    {"deep unknown field", c_deep_unknown, "trailing_bytes", "bytes"},
    {"metadata too deep", c_deep_metadata, "metadata_too_deep", "levels"},
    {"empty container too deep in metadata", c_deep_empty_metadata, "metadata_too_deep", "levels"},
};

/* The deepest metadata accepted still gives a verdict that msgpack-c's
 * unpacker (32 levels at most) and guardctl tail's rendering read; the same
 * limit holds for JSON events. */
START_TEST(metadata_depth_limit_keeps_verdicts_readable) {
    B *b = b_new();
    ev_head(b, 1); one_msg(b); s_(b, "metadata"); metadata_nested(b, EVENT_MAX_METADATA_DEPTH);
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256];
    ck_assert_msg(decode(b, NULL, &ev, &reason, m, sizeof m) == 0, "%s: %s", reason, m);
    ClassifyResult r = {.raw = "safe"};
    EventSource src = {"in", 0, 1};
    VerdictTiming t = {"m", "r", 0, 0, 1};
    size_t len;
    void *buf = verdict_encode(&ev, &src, &r, &t, &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    ck_assert_int_eq(msgpack_unpack_next(&u, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    msgpack_unpacked_destroy(&u);
    char *js = record_to_json(buf, len);
    ck_assert_ptr_nonnull(js);
    free(js);
    free(buf);
    event_free(&ev);
    b_free(b);
    /* JSON: {"id":"j","messages":[...],"metadata":{"a":[[...[1]...]]}} one level too deep */
    char json[1024];
    int n = snprintf(json, sizeof json, "{\"id\":\"j\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                                        "\"metadata\":{\"a\":");
    for (int i = 1; i < EVENT_MAX_METADATA_DEPTH + 1; i++) json[n++] = '[';
    json[n++] = '1';
    for (int i = 1; i < EVENT_MAX_METADATA_DEPTH + 1; i++) json[n++] = ']';
    n += snprintf(json + n, sizeof json - (size_t)n, "}}");
    ck_assert_int_eq(event_decode_json(json, (size_t)n, &LIM, &ev, &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "metadata_too_deep");
}
END_TEST

START_TEST(bad_event_reason) {
    const BadCase *c = &bad_cases[_i];
    B *b = b_new();
    c->build(b);
    ConversationEvent ev;
    const char *reason = NULL;
    char m[256] = "";
    EventLimits lim = LIM;
    lim.max_event_bytes = 1 << 16;           /* room for the deep case */
    int rc = decode(b, &lim, &ev, &reason, m, sizeof m);
    ck_assert_msg(rc == -1, "%s: accepted", c->name);
    ck_assert_msg(reason && !strcmp(reason, c->reason), "%s: reason %s, want %s (%s)", c->name, reason, c->reason, m);
    ck_assert_msg(strstr(m, c->words), "%s: message \"%s\" lacks \"%s\"", c->name, m, c->words);
    ck_assert_ptr_null(ev.id);                /* nothing half-built left behind */
    ck_assert_ptr_null(ev.conv.msgs);
    event_free(&ev);
    b_free(b);
}
END_TEST

START_TEST(too_large_checked_first) {
    B *b = b_new();
    ev_head(b, 0);
    one_msg(b);
    EventLimits lim = LIM;
    lim.max_event_bytes = b->sb.size - 1;
    ConversationEvent ev;
    const char *reason = NULL;
    char m[128];
    ck_assert_int_eq(decode(b, &lim, &ev, &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "too_large");
    lim.max_event_bytes = b->sb.size;
    ck_assert_int_eq(decode(b, &lim, &ev, &reason, m, sizeof m), 0);
    event_free(&ev);
    b_free(b);
}
END_TEST

/* A million declared (and present) messages against a limit of 8: rejected by
 * count before anything is allocated for them. */
START_TEST(many_messages_rejected_by_count) {
    B *b = b_new();
    ev_head(b, 0);
    s_(b, "messages");
    a_(b, 1000000);
    for (int i = 0; i < 1000000; i++) raw(b, "\xc0", 1);
    EventLimits lim = LIM;
    lim.max_event_bytes = 2 << 20;
    ConversationEvent ev;
    const char *reason = NULL;
    char m[128];
    ck_assert_int_eq(decode(b, &lim, &ev, &reason, m, sizeof m), -1);
    ck_assert_str_eq(reason, "too_many_messages");
    b_free(b);
}
END_TEST

/* Under a tight address-space limit the hostile-size cases still come back
 * with their reason: an allocation sized from a declared length would fail
 * and turn into a different answer. (Not under ASan, which reserves
 * terabytes of address space up front.) */
START_TEST(hostile_sizes_under_memory_limit) {
#if defined(__SANITIZE_ADDRESS__)
    return;
#else
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    ck_assert(f && fscanf(f, "%lu", &pages) == 1);
    fclose(f);
    struct rlimit rl = {pages * 4096UL + (64UL << 20), pages * 4096UL + (64UL << 20)};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        if (strncmp(bad_cases[i].name, "huge", 4)) continue;
        B *b = b_new();
        bad_cases[i].build(b);
        ConversationEvent ev;
        const char *reason = NULL;
        char m[128];
        EventLimits lim = {(size_t)1 << 30, 1 << 30, (size_t)1 << 30};   /* limits do not save us here */
        ck_assert_int_eq(decode(b, &lim, &ev, &reason, m, sizeof m), -1);
        ck_assert_msg(!strcmp(reason, "bad_msgpack"), "%s: %s", bad_cases[i].name, reason);
        b_free(b);
    }
#endif
}
END_TEST

/* Random byte flips, truncations and insertions on a rich valid event: the
 * decoder must answer every one with 0 or a documented reason (never crash,
 * never leak: ASan/LSan watch in the SANITIZE=1 build), and record_to_json
 * must cope as well. Fixed seed: failures are reproducible. */
static const char *const known_reasons[] = {"too_large", "bad_msgpack", "trailing_bytes", "not_a_map",
    "missing_field", "duplicate_field", "wrong_type", "bad_id", "bad_text", "too_many_messages",
    "message_too_large", "bad_role", "roles_not_alternating", "empty_conversation", "unsupported_content",
    "bad_categories", "bad_exclude", "unsupported_schema", NULL};

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

START_TEST(mutations_never_crash) {
    B *b = b_new();
    m_(b, 6);
    kv(b, "id", "mut");
    s_(b, "messages"); a_(b, 2);
    m_(b, 2); kv(b, "role", "user"); s_(b, "content"); a_(b, 2);
    m_(b, 2); kv(b, "type", "text"); kv(b, "text", "part one");
    m_(b, 2); kv(b, "type", "text"); kv(b, "text", "part two \xe2\x82\xac");
    msg(b, "assistant", "reply");
    s_(b, "categories"); m_(b, 2); kv(b, "S1", "A."); kv(b, "S2", "B.");
    s_(b, "exclude"); a_(b, 1); s_(b, "S2");
    kv(b, "role", "agent");
    s_(b, "metadata"); pack_metadata(b);
    size_t n = b->sb.size;
    uint8_t *buf = malloc(n + 16);
    int ok = 0, rejected = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, b->sb.data, n);
        size_t len = n;
        int edits = 1 + (int)(rnd() % 3);
        for (int e = 0; e < edits; e++) {
            uint32_t kind = rnd() % 4, pos = rnd() % (uint32_t)len;
            if (kind == 0) buf[pos] = (uint8_t)rnd();
            else if (kind == 1) buf[pos] ^= (uint8_t)(1u << (rnd() % 8));
            else if (kind == 2) len = pos;
            else if (len < n + 16) { memmove(buf + pos + 1, buf + pos, len - pos); buf[pos] = (uint8_t)rnd(); len++; }
            if (len == 0) break;
        }
        ConversationEvent ev;
        const char *reason = NULL;
        char m[256];
        if (event_decode(buf, len, &LIM, &ev, &reason, m, sizeof m) == 0) {
            ok++;
            event_free(&ev);
        } else {
            int known = 0;
            for (int k = 0; known_reasons[k] && !known; k++) known = reason && !strcmp(reason, known_reasons[k]);
            ck_assert_msg(known, "iteration %d: undocumented reason %s", iter, reason ? reason : "(null)");
            ck_assert_msg(m[0] != 0, "iteration %d: reason %s without a message", iter, reason);
            rejected++;
        }
        free(record_to_json(buf, len));
    }
    ck_assert_int_gt(ok, 0);          /* some mutations stay valid (e.g. text bytes) */
    ck_assert_int_gt(rejected, 10000);
    free(buf);
    b_free(b);
}
END_TEST

/* ---- encoders ---------------------------------------------------------------- */

static const msgpack_object *get(const msgpack_object *map, const char *key) {
    ck_assert_int_eq(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *p = &map->via.map.ptr[i];
        if (p->key.type == MSGPACK_OBJECT_STR && p->key.via.str.size == strlen(key) &&
            !memcmp(p->key.via.str.ptr, key, strlen(key)))
            return &p->val;
    }
    return NULL;
}

static void want_str(const msgpack_object *map, const char *key, const char *v) {
    const msgpack_object *o = get(map, key);
    ck_assert_msg(o && o->type == MSGPACK_OBJECT_STR, "%s is not a string", key);
    ck_assert_msg(o->via.str.size == strlen(v) && !memcmp(o->via.str.ptr, v, strlen(v)), "%s: %.*s != %s", key,
                  (int)o->via.str.size, o->via.str.ptr, v);
}

static int64_t want_int(const msgpack_object *map, const char *key) {
    const msgpack_object *o = get(map, key);
    ck_assert_msg(o && (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER),
                  "%s is not an integer", key);
    return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)o->via.u64 : o->via.i64;
}

static double want_f64(const msgpack_object *map, const char *key) {
    const msgpack_object *o = get(map, key);
    ck_assert_msg(o && o->type == MSGPACK_OBJECT_FLOAT64, "%s is not a float64", key);
    return o->via.f64;
}

/* Unpacks exactly one object filling the whole buffer. */
static void unpack_all(const void *buf, size_t len, msgpack_unpacked *u) {
    size_t off = 0;
    msgpack_unpacked_init(u);
    ck_assert_int_eq(msgpack_unpack_next(u, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    ck_assert_uint_eq(off, len);
}

static ConversationEvent small_event(void) {
    B *b = b_new();
    m_(b, 3);
    kv(b, "id", "abc-123");
    s_(b, "messages"); a_(b, 2); msg(b, "user", "q"); msg(b, "assistant", "a");
    s_(b, "metadata"); m_(b, 1); kv(b, "tenant", "t1");
    ConversationEvent ev;
    const char *reason;
    char m[128];
    ck_assert_int_eq(decode(b, NULL, &ev, &reason, m, sizeof m), 0);
    b_free(b);
    return ev;
}

START_TEST(verdict_round_trip) {
    ConversationEvent ev = small_event();
    char *codes[] = {"S1", "S99"}, *names[] = {"Violent Crimes.", NULL};
    float scores[] = {0.5f, 0.125f};
    const char *score_codes[] = {"S1", "S2"};
    ClassifyResult r = {.unsafe = 1, .score = 0.75f, .parse_error = 0, .agent = 1, .n_categories = 2,
                        .codes = codes, .names = names, .category_scores = scores, .n_category_scores = 2,
                        .raw = "unsafe\nS1,S99", .prompt_tokens = 210, .cached_tokens = 150, .decode_tokens = 6};
    EventSource src = {"conversations", 2, 1234567890123LL};
    VerdictTiming t = {"llama-guard-3-1b", "rev-9", 0.0125, 0.25, 7};
    size_t len;
    void *buf = verdict_encode_ex(&ev, &src, &r, &t, score_codes, &len);
    msgpack_unpacked u;
    unpack_all(buf, len, &u);
    const msgpack_object *o = &u.data;
    ck_assert_int_eq(want_int(o, "schema"), EVENT_SCHEMA_VERSION);
    want_str(o, "record_id", "conversations/2/1234567890123");
    want_str(o, "id", "abc-123");
    want_str(o, "verdict", "unsafe");
    const msgpack_object *cats = get(o, "categories");
    ck_assert(cats && cats->type == MSGPACK_OBJECT_ARRAY && cats->via.array.size == 2);
    want_str(&cats->via.array.ptr[0], "code", "S1");
    want_str(&cats->via.array.ptr[0], "name", "Violent Crimes.");
    want_str(&cats->via.array.ptr[1], "code", "S99");
    ck_assert_int_eq(get(&cats->via.array.ptr[1], "name")->type, MSGPACK_OBJECT_NIL);
    ck_assert(want_f64(o, "score") == 0.75);
    const msgpack_object *cs = get(o, "category_scores");
    ck_assert(cs && cs->type == MSGPACK_OBJECT_MAP && cs->via.map.size == 2);
    ck_assert(want_f64(cs, "S1") == 0.5 && want_f64(cs, "S2") == 0.125);
    want_str(o, "role", "agent");
    ck_assert(get(o, "parse_error")->type == MSGPACK_OBJECT_BOOLEAN && !get(o, "parse_error")->via.boolean);
    want_str(get(o, "model"), "name", "llama-guard-3-1b");
    want_str(get(o, "model"), "revision", "rev-9");
    const msgpack_object *s = get(o, "source");
    want_str(s, "topic", "conversations");
    ck_assert_int_eq(want_int(s, "partition"), 2);
    ck_assert(want_int(s, "offset") == 1234567890123LL);
    const msgpack_object *tm = get(o, "timing");
    ck_assert(want_f64(tm, "queued_ms") > 12.49 && want_f64(tm, "queued_ms") < 12.51);
    ck_assert(want_f64(tm, "inference_ms") > 249.9 && want_f64(tm, "inference_ms") < 250.1);
    ck_assert_int_eq(want_int(tm, "batch_size"), 7);
    ck_assert_int_eq(want_int(tm, "prompt_tokens"), 210);
    ck_assert_int_eq(want_int(tm, "cached_tokens"), 150);
    ck_assert_int_eq(want_int(tm, "decode_tokens"), 6);
    want_str(get(o, "metadata"), "tenant", "t1");
    want_str(o, "raw", "unsafe\nS1,S99");
    ck_assert_uint_eq(o->via.map.size, 14);
    msgpack_unpacked_destroy(&u);
    free(buf);
    /* without score codes there is no category_scores field */
    buf = verdict_encode(&ev, &src, &r, &t, &len);
    unpack_all(buf, len, &u);
    ck_assert_ptr_null(get(&u.data, "category_scores"));
    ck_assert_uint_eq(u.data.via.map.size, 13);
    msgpack_unpacked_destroy(&u);
    free(buf);
    event_free(&ev);
}
END_TEST

START_TEST(safe_verdict_without_metadata) {
    B *b = b_new();
    ev_head(b, 0);
    one_msg(b);
    ConversationEvent ev;
    const char *reason;
    char m[64];
    ck_assert_int_eq(decode(b, NULL, &ev, &reason, m, sizeof m), 0);
    ClassifyResult r = {.score = 0.01f, .raw = "safe"};
    EventSource src = {"in", 0, 0};
    size_t len;
    void *buf = verdict_encode(&ev, &src, &r, NULL, &len);
    msgpack_unpacked u;
    unpack_all(buf, len, &u);
    want_str(&u.data, "verdict", "safe");
    want_str(&u.data, "role", "user");
    ck_assert_int_eq(get(&u.data, "categories")->via.array.size, 0);
    ck_assert_int_eq(get(&u.data, "metadata")->type, MSGPACK_OBJECT_NIL);
    ck_assert(want_f64(&u.data, "score") == 0.01);
    msgpack_unpacked_destroy(&u);
    free(buf);
    event_free(&ev);
    b_free(b);
}
END_TEST

START_TEST(dlq_round_trip) {
    uint8_t payload[300];
    for (int i = 0; i < 300; i++) payload[i] = (uint8_t)(i * 7);
    EventSource src = {"conversations", 1, 42};
    size_t len;
    void *buf = dlq_encode(&src, "bad_role", "messages[0].role must be \"user\"", payload, sizeof payload, &len);
    msgpack_unpacked u;
    unpack_all(buf, len, &u);
    const msgpack_object *o = &u.data;
    ck_assert_int_eq(want_int(o, "schema"), 1);
    want_str(o, "record_id", "conversations/1/42");
    want_str(get(o, "error"), "code", "bad_role");
    want_str(get(o, "error"), "message", "messages[0].role must be \"user\"");
    ck_assert_int_eq(want_int(get(o, "source"), "offset"), 42);
    const msgpack_object *p = get(o, "payload");
    ck_assert(p && p->type == MSGPACK_OBJECT_BIN && p->via.bin.size == sizeof payload);
    ck_assert(memcmp(p->via.bin.ptr, payload, sizeof payload) == 0);
    msgpack_unpacked_destroy(&u);
    free(buf);
}
END_TEST

START_TEST(source_id_is_deterministic) {
    EventSource a = {"t.x", 3, 99}, b = {"t.x", 3, 99}, c = {"t.x", 3, 100};
    char ia[64], ib[64], ic[64];
    event_source_id(&a, ia, sizeof ia);
    event_source_id(&b, ib, sizeof ib);
    event_source_id(&c, ic, sizeof ic);
    ck_assert_str_eq(ia, "t.x/3/99");
    ck_assert_str_eq(ia, ib);
    ck_assert_str_ne(ia, ic);
}
END_TEST

START_TEST(event_encode_round_trip) {
    ConversationEvent ev = small_event(), back;
    size_t len;
    void *buf = event_encode(&ev, &len);
    const char *reason;
    char m[128];
    ck_assert_int_eq(event_decode(buf, len, &LIM, &back, &reason, m, sizeof m), 0);
    ck_assert_str_eq(back.id, ev.id);
    ck_assert_int_eq(back.conv.n_msgs, 2);
    ck_assert_str_eq(back.conv.msgs[1].parts[0], "a");
    ck_assert_uint_eq(back.metadata_len, ev.metadata_len);
    ck_assert(!memcmp(back.metadata, ev.metadata, ev.metadata_len));
    free(buf);
    event_free(&back);
    event_free(&ev);
}
END_TEST

START_TEST(json_rendering) {
    uint8_t payload[] = {0xff, 0x00, 'h', 'i'};
    EventSource src = {"in", 0, 5};
    size_t len;
    void *buf = dlq_encode(&src, "bad_msgpack", "bad \"x\"\n", payload, sizeof payload, &len);
    char *js = record_to_json(buf, len);
    ck_assert_str_eq(js, "{\"schema\":1,\"record_id\":\"in/0/5\",\"error\":{\"code\":\"bad_msgpack\","
                         "\"message\":\"bad \\\"x\\\"\\n\"},\"source\":{\"topic\":\"in\",\"partition\":0,"
                         "\"offset\":5},\"payload\":\"/wBoaQ==\"}");
    free(js);
    free(buf);
    /* odd input: invalid UTF-8 replaced, int keys spelled, NaN as null */
    B *b = b_new();
    m_(b, 3);
    s_(b, "s"); sn(b, "a\xff", 2);
    msgpack_pack_int(&b->pk, 7); msgpack_pack_true(&b->pk);
    s_(b, "f"); msgpack_pack_double(&b->pk, 0.0 / 0.0);
    js = record_to_json(b->sb.data, b->sb.size);
    ck_assert_str_eq(js, "{\"s\":\"a\xef\xbf\xbd\",\"7\":true,\"f\":null}");
    free(js);
    ck_assert_ptr_null(record_to_json(b->sb.data, b->sb.size - 1));     /* truncated */
    raw(b, "\x01", 1);
    ck_assert_ptr_null(record_to_json(b->sb.data, b->sb.size));         /* trailing */
    b_free(b);
    b = b_new();
    for (int i = 0; i < 100; i++) a_(b, 1);
    msgpack_pack_nil(&b->pk);
    ck_assert_ptr_null(record_to_json(b->sb.data, b->sb.size));         /* too deep */
    b_free(b);
    /* NUL bytes in keys and values are escaped, keys kept whole (not cut at
     * the NUL, which would merge "a\0b" with "a") */
    b = b_new();
    m_(b, 2);
    sn(b, "a\0b", 3); sn(b, "x\0y", 3);
    s_(b, "a"); msgpack_pack_int(&b->pk, 1);
    js = record_to_json(b->sb.data, b->sb.size);
    ck_assert_str_eq(js, "{\"a\\u0000b\":\"x\\u0000y\",\"a\":1}");
    free(js);
    /* the same as a value (guardctl tail embeds it; jansson cannot parse the
     * text back: it refuses NUL in keys) */
    json_t *jv = record_to_json_value(b->sb.data, b->sb.size);
    ck_assert_ptr_nonnull(jv);
    ck_assert_uint_eq(json_object_size(jv), 2);
    void *iter = json_object_iter(jv);
    ck_assert_uint_eq(json_object_iter_key_len(iter), 3);
    ck_assert_uint_eq(json_string_length(json_object_iter_value(iter)), 3);
    json_decref(jv);
    b_free(b);
}
END_TEST

/* ---- schemas/examples --------------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    static char buf[1 << 20];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

/* Valid examples decode; invalid ones are named REASON.whatever.json and must
 * fail with that reason (limits as in the shipped guardd.conf). */
START_TEST(schema_examples_agree_with_decoder) {
    const char *dir = getenv("GUARDD_EXAMPLES");
    if (!dir) dir = "schemas/examples";
    char path[600];
    EventLimits lim = {1 << 20, 64, 256 << 10};
    int valid = 0, invalid = 0;
    for (int pass = 0; pass < 2; pass++) {
        snprintf(path, sizeof path, "%s/%s", dir, pass ? "invalid" : "valid");
        DIR *d = opendir(path);
        ck_assert_msg(d != NULL, "no %s", path);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strstr(e->d_name, ".json")) continue;
            if (!pass && strncmp(e->d_name, "conversation-event", 18)) continue;   /* verdicts etc. */
            char file[900], want[64];
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            size_t len;
            char *js = slurp(file, &len);
            ConversationEvent ev;
            const char *reason = NULL;
            char m[256];
            int rc = event_decode_json(js, len, &lim, &ev, &reason, m, sizeof m);
            if (!pass) {
                ck_assert_msg(rc == 0, "%s: %s: %s", file, reason, m);
                event_free(&ev);
                valid++;
                continue;
            }
            snprintf(want, sizeof want, "%.*s", (int)strcspn(e->d_name, "."), e->d_name);
            ck_assert_msg(rc == -1 && !strcmp(reason, want), "%s: got %s (%s)", file, rc ? reason : "accepted", m);
            invalid++;
        }
        closedir(d);
    }
    ck_assert_int_ge(valid, 2);
    ck_assert_int_ge(invalid, 5);
}
END_TEST

/* ---- samples for t_schemas.sh -------------------------------------------------- */

static void write_file(const char *dir, const char *name, const void *buf, size_t len) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fwrite(buf, 1, len, f);
    fclose(f);
}

static void write_record(const char *dir, const char *name, void *buf, size_t len) {
    char jname[300];
    write_file(dir, name, buf, len);
    char *js = record_to_json(buf, len);
    ck_assert_ptr_nonnull(js);
    snprintf(jname, sizeof jname, "%s.json", name);
    write_file(dir, jname, js, strlen(js));
    free(js);
    free(buf);
}

START_TEST(samples) {
    const char *dir = getenv("GUARDD_SAMPLES_DIR");
    if (!dir) return;                 /* only when t_schemas.sh asks */
    ConversationEvent ev = small_event();
    char *codes[] = {"S1", "S10"}, *names[] = {"Violent Crimes.", NULL};
    float scores[] = {0.9f, 0.0f, 1.0f};
    const char *score_codes[] = {"S1", "S2", "S10"};
    EventSource src = {"conversations", 0, 17};
    VerdictTiming t = {"llama-guard-3-1b", "main", 0.003, 0.120, 4};
    size_t len;
    ClassifyResult unsafe = {.unsafe = 1, .score = 0.93f, .agent = 1, .n_categories = 2, .codes = codes,
                             .names = names, .category_scores = scores, .n_category_scores = 3,
                             .raw = "unsafe\nS1,S10", .prompt_tokens = 230, .cached_tokens = 170, .decode_tokens = 7};
    void *buf = verdict_encode_ex(&ev, &src, &unsafe, &t, score_codes, &len);
    write_record(dir, "verdict-unsafe.msgpack", buf, len);
    ClassifyResult safe = {.score = 0.001f, .raw = "safe", .prompt_tokens = 200, .cached_tokens = 170};
    buf = verdict_encode(&ev, &src, &safe, &t, &len);
    write_record(dir, "verdict-safe.msgpack", buf, len);
    ClassifyResult perr = {.unsafe = 1, .score = 0.4f, .parse_error = 1, .raw = "unsure"};
    ConversationEvent bare = ev;
    bare.metadata = NULL;
    bare.metadata_len = 0;
    buf = verdict_encode(&bare, &src, &perr, NULL, &len);
    write_record(dir, "verdict-parse-error.msgpack", buf, len);
    buf = dlq_encode(&src, "roles_not_alternating", "messages[1] should be assistant", "\x81\xa1x\xc0", 4, &len);
    write_record(dir, "dlq-roles.msgpack", buf, len);
    buf = dlq_encode(&src, "bad_msgpack", "malformed or truncated msgpack", "\xc1\xff", 2, &len);
    write_record(dir, "dlq-bad-msgpack.msgpack", buf, len);
    buf = dlq_encode(&src, "too_large", "big", NULL, 0, &len);
    write_record(dir, "dlq-empty-payload.msgpack", buf, len);
    buf = event_encode(&ev, &len);
    write_file(dir, "event-encoded.msgpack", buf, len);
    free(buf);
    event_free(&ev);
}
END_TEST

int main(void) {
    Suite *s = suite_create("event");
    TCase *tc = check_case(s, "decode", 0);
    tcase_add_test(tc, valid_string_content);
    tcase_add_test(tc, valid_parts_content_and_options);
    tcase_add_test(tc, metadata_echoed_byte_for_byte);
    tcase_add_test(tc, json_event_decodes_like_msgpack);
    tcase_add_test(tc, decode_any_picks_the_encoding);
    tcase_add_test(tc, decode_any_content_type_ignores_case);
    tcase_add_test(tc, record_decode_uses_the_header);
    tcase_add_loop_test(tc, bad_event_reason, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, metadata_depth_limit_keeps_verdicts_readable);
    tcase_add_test(tc, too_large_checked_first);
    tcase_add_test(tc, many_messages_rejected_by_count);
    tcase_add_test(tc, hostile_sizes_under_memory_limit);
    tcase_add_test(tc, schema_examples_agree_with_decoder);
    tcase_add_test(tc, mutations_never_crash);
    TCase *enc = check_case(s, "encode", 0);
    tcase_add_test(enc, verdict_round_trip);
    tcase_add_test(enc, safe_verdict_without_metadata);
    tcase_add_test(enc, dlq_round_trip);
    tcase_add_test(enc, source_id_is_deterministic);
    tcase_add_test(enc, event_encode_round_trip);
    tcase_add_test(enc, json_rendering);
    TCase *smp = check_case(s, "samples", 0);
    tcase_add_test(smp, samples);
    return check_run(s);
}
