/* event_mp.c - the bounded, allocation-free msgpack reader (see event_mp.h).
 * Follows the msgpack spec's format table byte for byte; 0xc1 is "never used"
 * and rejected. */
#include "event_mp.h"
#include <string.h>

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Takes n bytes of header payload; -1 if fewer remain. */
static int take(MpCur *c, int n, uint64_t *v) {
    if (c->end - c->p < n) return -1;
    *v = be(c->p, n);
    c->p += n;
    return 0;
}

static int bytes(MpCur *c, MpItem *it, MpType t, uint64_t n) {
    if ((uint64_t)(c->end - c->p) < n) return -1;
    it->type = t;
    it->data = c->p;
    it->len = (uint32_t)n;
    c->p += n;
    return 0;
}

/* A container needs at least one byte per element still to come. */
static int container(MpCur *c, MpItem *it, MpType t, uint64_t n) {
    uint64_t need = t == MP_MAP ? 2 * n : n;
    if ((uint64_t)(c->end - c->p) < need) return -1;
    it->type = t;
    it->len = (uint32_t)n;
    return 0;
}

static int ext(MpCur *c, MpItem *it, uint64_t n) {
    if (c->p >= c->end) return -1;
    it->ext_type = (int8_t)*c->p++;
    return bytes(c, it, MP_EXT, n);
}

static int set_uint(MpItem *it, uint64_t u) {
    it->type = u > INT64_MAX ? MP_UINT : MP_INT;
    it->u = u;
    it->i = (int64_t)(u > INT64_MAX ? 0 : u);
    return 0;
}

static int set_sint(MpItem *it, uint64_t raw, int nbytes) {
    int64_t v;
    switch (nbytes) {
    case 1: v = (int8_t)raw; break;
    case 2: v = (int16_t)raw; break;
    case 4: v = (int32_t)raw; break;
    default: v = (int64_t)raw; break;
    }
    it->type = MP_INT;
    it->i = v;
    it->u = v < 0 ? 0 : (uint64_t)v;
    return 0;
}

static int floats(MpCur *c, MpItem *it, int n) {
    uint64_t raw;
    if (take(c, n, &raw) < 0) return -1;
    it->type = MP_FLOAT;
    if (n == 4) { uint32_t r32 = (uint32_t)raw; float f; memcpy(&f, &r32, 4); it->f = f; }
    else memcpy(&it->f, &raw, 8);
    return 0;
}

/* The variable-size formats 0xc4..0xdf (after fix* and single-byte ones). */
static int sized(MpCur *c, MpItem *it, uint8_t b) {
    static const int8_t width[] = {
        /* c4 bin8 */ 1, 2, 4, /* c7 ext8 */ 1, 2, 4, /* ca f32 */ 4, 8,
        /* cc u8 */ 1, 2, 4, 8, /* d0 i8 */ 1, 2, 4, 8,
        /* d4 fixext */ 0, 0, 0, 0, 0, /* d9 str8 */ 1, 2, 4, /* dc arr16 */ 2, 4, /* de map16 */ 2, 4};
    static const uint8_t fixext[] = {1, 2, 4, 8, 16};
    if (b >= 0xd4 && b <= 0xd8) return ext(c, it, fixext[b - 0xd4]);
    if (b == 0xca || b == 0xcb) return floats(c, it, width[b - 0xc4]);
    uint64_t n;
    if (take(c, width[b - 0xc4], &n) < 0) return -1;
    if (b <= 0xc6) return bytes(c, it, MP_BIN, n);
    if (b <= 0xc9) return ext(c, it, n);
    if (b <= 0xcf) return set_uint(it, n);
    if (b <= 0xd3) return set_sint(it, n, width[b - 0xc4]);
    if (b <= 0xdb) return bytes(c, it, MP_STR, n);
    if (b <= 0xdd) return container(c, it, MP_ARRAY, n);
    return container(c, it, MP_MAP, n);
}

int mp_next(MpCur *c, MpItem *it) {
    memset(it, 0, sizeof *it);
    if (c->p >= c->end) return -1;
    uint8_t b = *c->p++;
    if (b <= 0x7f) return set_uint(it, b);
    if (b >= 0xe0) return set_sint(it, b, 1);
    if (b <= 0x8f) return container(c, it, MP_MAP, b & 0x0f);
    if (b <= 0x9f) return container(c, it, MP_ARRAY, b & 0x0f);
    if (b <= 0xbf) return bytes(c, it, MP_STR, b & 0x1f);
    switch (b) {
    case 0xc0: it->type = MP_NIL; return 0;
    case 0xc1: return -1;
    case 0xc2: case 0xc3: it->type = MP_BOOL; it->b = b == 0xc3; return 0;
    default: return sized(c, it, b);
    }
}

int mp_skip(MpCur *c) {
    /* pending never exceeds twice the bytes left (checked per container) */
    uint64_t pending = 1;
    while (pending > 0) {
        MpItem it;
        if (mp_next(c, &it) < 0) return -1;
        pending--;
        if (it.type == MP_ARRAY) pending += it.len;
        else if (it.type == MP_MAP) pending += 2 * (uint64_t)it.len;
    }
    return 0;
}

int mp_skip_depth(MpCur *c, int max_depth) {
    uint64_t left[MP_MAX_DEPTH];    /* elements still to read in each open container */
    int depth = 0;
    if (max_depth > MP_MAX_DEPTH) max_depth = MP_MAX_DEPTH;
    for (;;) {
        MpItem it;
        if (mp_next(c, &it) < 0) return -1;
        if (it.type == MP_ARRAY || it.type == MP_MAP) {
            if (depth >= max_depth) return -2;
            uint64_t n = it.type == MP_MAP ? 2 * (uint64_t)it.len : it.len;
            if (n) { left[depth++] = n; continue; }
        }
        /* a value is complete: close every container it completes */
        while (depth > 0 && --left[depth - 1] == 0) depth--;
        if (depth == 0) return 0;
    }
}

int mp_str_eq(const MpItem *it, const char *s) {
    size_t n = strlen(s);
    return it->type == MP_STR && it->len == n && memcmp(it->data, s, n) == 0;
}
