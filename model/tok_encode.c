/* tok_encode.c - tokenizer_encode and tokenizer_decode.
 *
 * encode: (1) the whole input is checked to be valid UTF-8 (errors name the
 * byte offset; the regex then runs without re-checking); (2) added tokens are
 * cut out first, leftmost-longest (special ones only with allow_special, so
 * "<|eot_id|>" is plain text otherwise); (3) each remaining segment is split
 * by the file's regex (PCRE2, UTF + UCP, JIT) into pre-tokens, where matches
 * and the gaps between them both become pre-tokens ("Isolated"), and each
 * segment ends the subject so lookaheads see its end as the end of text, as in
 * Hugging Face; (4) each pre-token goes through BPE (tok_bpe.c).
 * Match data is allocated per call, so concurrent encodes share nothing mutable.
 */
#include "errmsg.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tok_internal.h"

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), or 0 with *why set. */
static size_t utf8_seq(const unsigned char *s, size_t n, const char **why)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c < 0xC0) { *why = "unexpected continuation byte"; return 0; }
    if (c < 0xC2) { *why = "overlong encoding"; return 0; }
    if (c < 0xE0)
        len = 2;
    else if (c < 0xF0) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;        /* below: overlong */
        if (c == 0xED) hi = 0x9F;        /* above: UTF-16 surrogates */
    } else if (c < 0xF5) {
        len = 4;
        if (c == 0xF0) lo = 0x90;        /* below: overlong */
        if (c == 0xF4) hi = 0x8F;        /* above: beyond U+10FFFF */
    } else { *why = "byte 0xF5..0xFF cannot occur in UTF-8"; return 0; }
    if (n < 2 || s[1] < 0x80 || s[1] > 0xBF) { *why = "truncated sequence"; return 0; }
    if (s[1] < lo) { *why = "overlong encoding"; return 0; }
    if (s[1] > hi) { *why = c == 0xED ? "UTF-16 surrogate" : "code point above U+10FFFF"; return 0; }
    for (size_t i = 2; i < len; i++)
        if (i >= n || (s[i] & 0xC0) != 0x80) { *why = "truncated sequence"; return 0; }
    return len;
}

/* Offset of the first invalid byte, or n if s is valid UTF-8. */
static size_t utf8_check(const unsigned char *s, size_t n, const char **why)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {   /* ASCII fast path, 8 bytes at a time */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        size_t l = utf8_seq(s + i, n - i, why);
        if (!l)
            return i;
        i += l;
    }
    return n;
}

typedef struct {
    const Tokenizer *t;
    pcre2_match_data *md;
    TokenVec *out;
    char *err;
    size_t errlen;
} Enc;

static int emit(Enc *e, const char *s, size_t n)
{
    if (tok_bpe(e->t, s, n, e->out) < 0) {
        errmsg(e->err, e->errlen, "tokenize: out of memory");
        return -1;
    }
    return 0;
}

static int run_regex(Enc *e, const char *s, size_t n, size_t start)
{
    if (e->t->re_jit)
        return pcre2_jit_match(e->t->re, (PCRE2_SPTR)s, n, start, 0, e->md, NULL);
    return pcre2_match(e->t->re, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, e->md, NULL);
}

/* Splits one segment (no added tokens inside) into pre-tokens and encodes them. */
static int pretokenize(Enc *e, const char *s, size_t n)
{
    size_t pos = 0, search = 0;   /* pos: start of text not yet emitted */
    while (pos < n) {
        int rc = run_regex(e, s, n, search);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(rc, msg, sizeof msg);
            errmsg(e->err, e->errlen, "tokenize: regex failed near byte %zu: %s", search, (char *)msg);
            return -1;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {   /* empty match: step over one character, keep it in the gap */
            if (ms >= n)
                break;
            search = ms + 1;
            while (search < n && ((unsigned char)s[search] & 0xC0) == 0x80)
                search++;
            continue;
        }
        if ((ms > pos && emit(e, s + pos, ms - pos) < 0) || emit(e, s + ms, me - ms) < 0)
            return -1;
        pos = search = me;
    }
    return pos < n ? emit(e, s + pos, n - pos) : 0;
}

/* The added token spelled exactly s[0..len), if it may be used, else NULL.
 * Two tokens cannot share a spelling (load rejects the second). */
static const TokAdded *added_lookup(const Tokenizer *t, const char *s, size_t len, int allow_special)
{
    uint32_t h = tok_hash_bytes(s, len) & t->added_mask;
    for (uint32_t v; (v = t->added_slot[h]) != 0; h = (h + 1) & t->added_mask) {
        const TokAdded *a = &t->added[v - 1];
        if (a->len == len && memcmp(a->text, s, len) == 0)
            return a->special && !allow_special ? NULL : a;
    }
    return NULL;
}

/* Leftmost-longest added token in s[from..n): returns its offset (n if none). */
static size_t find_added(const Tokenizer *t, const char *s, size_t n, size_t from, int allow_special,
                         const TokAdded **hit)
{
    for (size_t i = from; i < n; i++) {
        if (!t->added_first[(unsigned char)s[i]])
            continue;
        for (size_t k = 0; k < t->n_added_lens; k++) {
            size_t len = t->added_lens[k];
            if (len <= n - i && (*hit = added_lookup(t, s + i, len, allow_special)) != NULL)
                return i;
        }
    }
    return n;
}

static int encode_valid(Enc *e, const char *text, size_t len, int allow_special)
{
    const Tokenizer *t = e->t;
    int split = t->n_added && (allow_special || t->added_nonspecial);
    size_t pos = 0;
    while (pos < len) {
        const TokAdded *hit = NULL;
        size_t at = split ? find_added(t, text, len, pos, allow_special, &hit) : len;
        if (at > pos && pretokenize(e, text + pos, at - pos) < 0)
            return -1;
        if (!hit)
            break;
        if (tok_reserve(e->out, 1) < 0) {
            errmsg(e->err, e->errlen, "tokenize: out of memory");
            return -1;
        }
        e->out->ids[e->out->n++] = hit->id;
        pos = at + hit->len;
    }
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int allow_special, TokenVec *out,
                     char *err, size_t errlen)
{
    if (!t || !out || (!text && len)) {
        errmsg(err, errlen, "tokenize: bad arguments");
        return -1;
    }
    const char *why = "";
    size_t bad = utf8_check((const unsigned char *)text, len, &why);
    if (bad < len) {
        errmsg(err, errlen, "invalid UTF-8 at byte offset %zu: %s", bad, why);
        return -1;
    }
    Enc e = { t, pcre2_match_data_create_from_pattern(t->re, NULL), out, err, errlen };
    if (!e.md) {
        errmsg(err, errlen, "tokenize: out of memory");
        return -1;
    }
    size_t n0 = out->n;
    int rc = encode_valid(&e, text, len, allow_special);
    if (rc < 0)
        out->n = n0;   /* on error, leave out as it was */
    pcre2_match_data_free(e.md);
    return rc;
}

/* Unknown ids are skipped (as Hugging Face does); special ids give their text. */
char *tokenizer_decode(const Tokenizer *t, const int *ids, size_t n, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < t->n_ids && t->tok_len[ids[i]] != UINT32_MAX)
            total += t->tok_len[ids[i]];
    char *s = malloc(total + 1), *p = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || t->tok_len[ids[i]] == UINT32_MAX)
            continue;
        memcpy(p, t->arena + t->tok_off[ids[i]], t->tok_len[ids[i]]);
        p += t->tok_len[ids[i]];
    }
    *p = 0;
    if (len)
        *len = total;
    return s;
}
