/* tokenizer.c - loads a Hugging Face tokenizer.json (byte-level BPE, Llama 3).
 *
 * Supported (anything else is refused with a clear error): normalizer null;
 * model BPE without dropout, byte fallback or subword affixes, merges as "a b"
 * strings or ["a", "b"] pairs, optional ignore_merges; added_tokens without
 * lstrip/rstrip/single_word; pre_tokenizer Sequence[Split(Regex, Isolated),
 * ByteLevel(use_regex false, no prefix space)]; decoder null or ByteLevel.
 * The post_processor is ignored: encode never adds BOS (the prompt writes it).
 *
 * Token strings in the file are in GPT-2's byte-level alphabet (each byte
 * shown as a printable code point); they are mapped back to raw bytes here so
 * that encode and decode work on bytes only. See tok_internal.h for layout,
 * tok_bpe.c for the tables and merging, tok_encode.c for encode/decode.
 */
#include "errmsg.h"
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "tok_internal.h"

#define MAX_FILE_BYTES (512L << 20)

void tokvec_push(TokenVec *v, int id)
{
    if (tok_reserve(v, 1) < 0) {
        fprintf(stderr, "tokvec_push: out of memory\n");
        abort();
    }
    v->ids[v->n++] = id;
}

void tokvec_free(TokenVec *v)
{
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* GPT-2 bytes_to_unicode, inverted: code point -> byte, -1 if not in the
 * alphabet. Printable Latin-1 bytes stand for themselves; the other 68 bytes
 * are shown as U+0100.. in byte order. */
static void byte_level_inverse(int inv[324])
{
    int extra = 0;
    for (int i = 0; i < 324; i++)
        inv[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        inv[printable ? b : 256 + extra++] = b;
    }
}

/* Decodes one byte-level token string (valid UTF-8 from jansson) to raw bytes
 * in out (capacity TOK_MAX_TOKEN_LEN); returns the length or -1. */
static long byte_level_decode(const int inv[324], const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = (unsigned char)s[i];
        unsigned cp;
        if (c < 0x80) {
            cp = c;
            i += 1;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
            cp = ((c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F);
            i += 2;
        } else {
            return -1;  /* 3- and 4-byte sequences are beyond U+0143 */
        }
        if (cp >= 324 || inv[cp] < 0 || o >= TOK_MAX_TOKEN_LEN)
            return -1;
        out[o++] = (char)inv[cp];
    }
    return (long)o;
}

static int arena_add(Tokenizer *t, int id, const char *s, size_t n)
{
    if (t->arena_len + n > UINT32_MAX - 1)
        return -1;
    if (t->arena_len + n > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap * 2 : 1 << 20;
        while (cap < t->arena_len + n)
            cap *= 2;
        char *p = realloc(t->arena, cap);
        if (!p)
            return -1;
        t->arena = p;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, n);
    t->tok_off[id] = (uint32_t)t->arena_len;
    t->tok_len[id] = (uint32_t)n;
    t->arena_len += n;
    return 0;
}

/* ---- configuration checks ------------------------------------------------ */

static int is_null_or_empty(json_t *v)
{
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

static int is_true(json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

static int check_model(json_t *model, char *err, size_t errlen)
{
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || (type && strcmp(type, "BPE") != 0)) {
        errmsg(err, errlen, "tokenizer: model type %s is not supported (only BPE)", type ? type : "?");
        return -1;
    }
    if (!is_null_or_empty(json_object_get(model, "dropout")) || is_true(model, "byte_fallback") ||
        !is_null_or_empty(json_object_get(model, "continuing_subword_prefix")) ||
        !is_null_or_empty(json_object_get(model, "end_of_word_suffix"))) {
        errmsg(err, errlen, "tokenizer: BPE dropout, byte_fallback and subword prefix/suffix are not supported");
        return -1;
    }
    if (!json_is_object(json_object_get(model, "vocab")) || !json_is_array(json_object_get(model, "merges"))) {
        errmsg(err, errlen, "tokenizer: model.vocab (object) and model.merges (array) are required");
        return -1;
    }
    return 0;
}

static int check_byte_level(json_t *bl, char *err, size_t errlen)
{
    if (is_true(bl, "use_regex") || is_true(bl, "add_prefix_space")) {
        errmsg(err, errlen, "tokenizer: ByteLevel pre-tokenizer with use_regex or add_prefix_space is not supported");
        return -1;
    }
    return 0;
}

/* Returns the Split regex of Sequence[Split(Regex, Isolated), ByteLevel]. */
static const char *split_regex(json_t *pre, char *err, size_t errlen)
{
    const char *type = json_string_value(json_object_get(pre, "type"));
    json_t *seq = json_object_get(pre, "pretokenizers");
    if (!type || strcmp(type, "Sequence") != 0 || json_array_size(seq) != 2) {
        errmsg(err, errlen, "tokenizer: pre_tokenizer must be Sequence[Split, ByteLevel]");
        return NULL;
    }
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    const char *t0 = json_string_value(json_object_get(split, "type"));
    const char *t1 = json_string_value(json_object_get(bl, "type"));
    const char *beh = json_string_value(json_object_get(split, "behavior"));
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    if (!t0 || !t1 || strcmp(t0, "Split") || strcmp(t1, "ByteLevel")) {
        errmsg(err, errlen, "tokenizer: pre_tokenizer must be Sequence[Split, ByteLevel]");
        return NULL;
    }
    if (!re || !beh || strcmp(beh, "Isolated") || is_true(split, "invert")) {
        errmsg(err, errlen, "tokenizer: only a Split with a Regex pattern, Isolated, not inverted, is supported");
        return NULL;
    }
    return check_byte_level(bl, err, errlen) < 0 ? NULL : re;
}

static int check_config(json_t *root, char *err, size_t errlen)
{
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        errmsg(err, errlen, "tokenizer: normalizers are not supported");
        return -1;
    }
    json_t *dec = json_object_get(root, "decoder");
    const char *dtype = json_string_value(json_object_get(dec, "type"));
    if (dec && !json_is_null(dec) && (!dtype || strcmp(dtype, "ByteLevel") != 0)) {
        errmsg(err, errlen, "tokenizer: decoder %s is not supported (only ByteLevel)", dtype ? dtype : "?");
        return -1;
    }
    return check_model(json_object_get(root, "model"), err, errlen);
}

/* ---- vocabulary, added tokens, merges ------------------------------------ */

static int max_id(json_t *vocab, json_t *added, char *err, size_t errlen)
{
    int maxid = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= TOK_MAX_ID) {
            errmsg(err, errlen, "tokenizer: vocab entry has a bad id (must be 0..%d)", TOK_MAX_ID - 1);
            return -1;
        }
        if (id > maxid)
            maxid = (int)id;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_t *jid = json_object_get(v, "id");
        json_int_t id = json_integer_value(jid);
        if (!json_is_integer(jid) || id < 0 || id >= TOK_MAX_ID) {
            errmsg(err, errlen, "tokenizer: added_tokens[%zu] has a bad id", i);
            return -1;
        }
        if (id > maxid)
            maxid = (int)id;
    }
    return maxid;
}

static int load_vocab(Tokenizer *t, json_t *vocab, const int inv[324], char *err, size_t errlen)
{
    char buf[TOK_MAX_TOKEN_LEN];
    const char *key;
    json_t *v;
    if (tok_vocab_init(&t->vocab, json_object_size(vocab)) < 0)
        goto oom;
    json_object_foreach(vocab, key, v) {
        int id = (int)json_integer_value(v);
        long n = byte_level_decode(inv, key, strlen(key), buf);
        if (n <= 0) {
            errmsg(err, errlen, "tokenizer: vocab entry \"%.60s\" is not a byte-level token", key);
            return -1;
        }
        if (t->tok_len[id] != UINT32_MAX) {
            errmsg(err, errlen, "tokenizer: vocab id %d is used twice", id);
            return -1;
        }
        if (arena_add(t, id, buf, (size_t)n) < 0)
            goto oom;
        if (tok_vocab_insert(t, id)) {
            errmsg(err, errlen, "tokenizer: vocab entry \"%.60s\" is listed twice", key);
            return -1;
        }
        if (n == 1)
            t->byte_id[(unsigned char)buf[0]] = id;
    }
    for (int b = 0; b < 256; b++) {
        if (t->byte_id[b] < 0) {
            errmsg(err, errlen, "tokenizer: vocab lacks the single-byte token for byte 0x%02X", b);
            return -1;
        }
    }
    return 0;
oom:
    errmsg(err, errlen, "tokenizer: out of memory loading the vocabulary");
    return -1;
}

static int added_cmp(const void *a, const void *b)
{
    const TokAdded *x = a, *y = b;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

static int load_one_added(Tokenizer *t, json_t *a, size_t i, char *err, size_t errlen)
{
    int id = (int)json_integer_value(json_object_get(a, "id"));
    json_t *c = json_object_get(a, "content");
    size_t n = json_string_length(c);
    if (!json_is_string(c) || n == 0 || n > TOK_MAX_TOKEN_LEN) {
        errmsg(err, errlen, "tokenizer: added_tokens[%zu] needs a non-empty content string", i);
        return -1;
    }
    if (is_true(a, "lstrip") || is_true(a, "rstrip") || is_true(a, "single_word")) {
        errmsg(err, errlen, "tokenizer: added token \"%.60s\": lstrip/rstrip/single_word are not supported",
               json_string_value(c));
        return -1;
    }
    const char *s = json_string_value(c);
    if (t->tok_len[id] != UINT32_MAX) {
        /* Already a vocabulary entry: allowed only if it is the same text. */
        if (t->tok_len[id] != n || memcmp(t->arena + t->tok_off[id], s, n) != 0) {
            errmsg(err, errlen, "tokenizer: added token \"%.60s\" reuses id %d", s, id);
            return -1;
        }
    } else if (arena_add(t, id, s, n) < 0) {
        errmsg(err, errlen, "tokenizer: out of memory loading added tokens");
        return -1;
    }
    TokAdded *d = &t->added[t->n_added++];
    d->id = id;
    d->special = is_true(a, "special");
    d->len = n;
    t->added_nonspecial |= !d->special;
    return 0;
}

/* Lookup structures for cutting added tokens out of text: the set of first
 * bytes, the distinct lengths and a hash table over the contents, so a
 * candidate position costs one probe per distinct length, not one compare per
 * added token (all 256 Llama specials start with "<|"). */
static int index_added(Tokenizer *t, char *err, size_t errlen)
{
    size_t cap = 16;
    while (cap < 2 * t->n_added)
        cap *= 2;
    t->added_slot = calloc(cap, sizeof *t->added_slot);
    if (!t->added_slot) {
        errmsg(err, errlen, "tokenizer: out of memory loading added tokens");
        return -1;
    }
    t->added_mask = (uint32_t)(cap - 1);
    for (size_t i = 0; i < t->n_added; i++) {
        const TokAdded *a = &t->added[i];
        t->added_first[(unsigned char)a->text[0]] = 1;
        if (t->n_added_lens == 0 || t->added_lens[t->n_added_lens - 1] != a->len) {
            if (t->n_added_lens == sizeof t->added_lens / sizeof t->added_lens[0]) {
                errmsg(err, errlen, "tokenizer: added tokens have more than 64 distinct lengths");
                return -1;
            }
            t->added_lens[t->n_added_lens++] = a->len;
        }
        uint32_t h = tok_hash_bytes(a->text, a->len) & t->added_mask;
        for (uint32_t v; (v = t->added_slot[h]) != 0; h = (h + 1) & t->added_mask) {
            const TokAdded *b = &t->added[v - 1];
            if (b->len == a->len && memcmp(b->text, a->text, a->len) == 0) {
                errmsg(err, errlen, "tokenizer: added token \"%.*s\" is listed twice",
                       (int)(a->len < 60 ? a->len : 60), a->text);
                return -1;
            }
        }
        t->added_slot[h] = (uint32_t)i + 1;
    }
    return 0;
}

static int load_added(Tokenizer *t, json_t *added, char *err, size_t errlen)
{
    size_t n = json_array_size(added), i;
    json_t *a;
    if (!n)
        return 0;
    t->added = calloc(n, sizeof *t->added);
    if (!t->added) {
        errmsg(err, errlen, "tokenizer: out of memory loading added tokens");
        return -1;
    }
    json_array_foreach(added, i, a) {
        if (load_one_added(t, a, i, err, errlen) < 0)
            return -1;
    }
    /* Pointers into the arena only once it has stopped growing. */
    for (i = 0; i < t->n_added; i++)
        t->added[i].text = t->arena + t->tok_off[t->added[i].id];
    qsort(t->added, t->n_added, sizeof *t->added, added_cmp);
    return index_added(t, err, errlen);
}

/* Splits one merges entry ("a b" or ["a", "b"]) into its two halves. */
static int merge_parts(json_t *m, const char **a, size_t *na, const char **b, size_t *nb)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return -1;
        *a = s;
        *na = (size_t)(sp - s);
        *b = sp + 1;
        *nb = strlen(sp + 1);
        return 0;
    }
    json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
    if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(x) || !json_is_string(y))
        return -1;
    *a = json_string_value(x);
    *na = json_string_length(x);
    *b = json_string_value(y);
    *nb = json_string_length(y);
    return 0;
}

static int load_one_merge(Tokenizer *t, json_t *m, size_t rank, const int inv[324], char *err, size_t errlen)
{
    char buf[2 * TOK_MAX_TOKEN_LEN];
    const char *a, *b;
    size_t na, nb;
    if (merge_parts(m, &a, &na, &b, &nb) < 0) {
        errmsg(err, errlen, "tokenizer: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", rank);
        return -1;
    }
    long ra = byte_level_decode(inv, a, na, buf);
    long rb = ra > 0 ? byte_level_decode(inv, b, nb, buf + ra) : -1;
    int left = ra > 0 ? tok_vocab_find(t, buf, (size_t)ra) : -1;
    int right = rb > 0 ? tok_vocab_find(t, buf + ra, (size_t)rb) : -1;
    int merged = rb > 0 ? tok_vocab_find(t, buf, (size_t)(ra + rb)) : -1;
    if (left < 0 || right < 0 || merged < 0) {
        errmsg(err, errlen, "tokenizer: merges[%zu] (\"%.40s\" + \"%.40s\") uses a token not in the vocabulary",
               rank, a, b);
        return -1;
    }
    tok_merge_insert(&t->merges, left, right, (int)rank, merged);
    return 0;
}

static int load_merges(Tokenizer *t, json_t *merges, const int inv[324], char *err, size_t errlen)
{
    size_t i;
    json_t *m;
    if (json_array_size(merges) > TOK_MAX_MERGES) {
        errmsg(err, errlen, "tokenizer: more than %d merges are not supported", TOK_MAX_MERGES);
        return -1;
    }
    if (tok_merge_init(&t->merges, json_array_size(merges)) < 0) {
        errmsg(err, errlen, "tokenizer: out of memory loading merges");
        return -1;
    }
    json_array_foreach(merges, i, m) {
        if (load_one_merge(t, m, i, inv, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Unicode White_Space, the meaning of \s in Rust's regex and Oniguruma (which
 * Hugging Face and tiktoken use). PCRE2's \s under UCP also matches U+180E,
 * which stopped being a space in Unicode 6.3, so \s and \S are spelled out. */
#define WHITE_SPACE "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define MAX_REGEX_LEN 65536

/* Copies re with \s and \S replaced by the White_Space set; NULL (and err) if
 * the pattern uses \S inside a class or \Q..\E, which this does not rewrite. */
static char *rewrite_whitespace(const char *re, char *err, size_t errlen)
{
    size_t n = strlen(re), o = 0;
    int in_class = 0;
    char *out = n <= MAX_REGEX_LEN ? malloc(n * (sizeof WHITE_SPACE + 3) + 1) : NULL;
    if (!out) {
        errmsg(err, errlen, "tokenizer: pre-tokenizer regex too long (max %d bytes)", MAX_REGEX_LEN);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = re[i], d = i + 1 < n ? re[i + 1] : 0;
        if (c == '\\' && (d == 'Q' || (d == 'S' && in_class))) {
            errmsg(err, errlen, "tokenizer: regex uses \\%c %s, which is not supported", d, d == 'Q' ? "" : "in a class");
            free(out);
            return NULL;
        }
        if (c == '\\' && (d == 's' || d == 'S')) {
            o += (size_t)sprintf(out + o, in_class ? "%s" : d == 's' ? "[%s]" : "[^%s]", WHITE_SPACE);
            i++;
            continue;
        }
        out[o++] = c;
        if (c == '\\' && d) {
            out[o++] = re[++i];   /* an escaped character never opens or closes a class */
        } else if (c == '[' && !in_class) {
            in_class = 1;
            if (re[i + 1] == '^')
                out[o++] = re[++i];
            if (re[i + 1] == ']')   /* a leading ] is a literal */
                out[o++] = re[++i];
        } else if (c == '[' && in_class && d == ':') {   /* POSIX class [:name:] */
            const char *end = strstr(re + i, ":]");
            size_t k = end ? (size_t)(end - re) + 2 : i + 1;
            while (i + 1 < k)
                out[o++] = re[++i];
        } else if (c == ']' && in_class) {
            in_class = 0;
        }
    }
    out[o] = 0;
    return out;
}

static int compile_regex(Tokenizer *t, const char *file_re, char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    char *re = rewrite_whitespace(file_re, err, errlen);
    if (!re)
        return -1;
    t->re = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    free(re);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(code, msg, sizeof msg);
        errmsg(err, errlen, "tokenizer: pre-tokenizer regex does not compile at offset %zu: %s", (size_t)off,
               (char *)msg);
        return -1;
    }
    t->re_jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

/* ---- load / free ----------------------------------------------------------- */

static json_t *read_json(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        errmsg(err, errlen, "tokenizer: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (st.st_size > MAX_FILE_BYTES) {
        errmsg(err, errlen, "tokenizer: %s is larger than %ld MB", path, MAX_FILE_BYTES >> 20);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        errmsg(err, errlen, "tokenizer: %s:%d: %s", path, je.line, je.text);
    else if (!json_is_object(root)) {
        errmsg(err, errlen, "tokenizer: %s is not a JSON object", path);
        json_decref(root);
        root = NULL;
    }
    return root;
}

static int build(Tokenizer *t, json_t *root, char *err, size_t errlen)
{
    int inv[324];
    if (check_config(root, err, errlen) < 0)
        return -1;
    const char *re = split_regex(json_object_get(root, "pre_tokenizer"), err, errlen);
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab"), *added = json_object_get(root, "added_tokens");
    if (!re)
        return -1;
    int maxid = max_id(vocab, added, err, errlen);
    if (maxid < 0)
        return -1;
    t->n_ids = maxid + 1;
    t->tok_off = calloc((size_t)t->n_ids, sizeof *t->tok_off);
    t->tok_len = malloc((size_t)t->n_ids * sizeof *t->tok_len);
    if (!t->tok_off || !t->tok_len) {
        errmsg(err, errlen, "tokenizer: out of memory");
        return -1;
    }
    memset(t->tok_len, 0xff, (size_t)t->n_ids * sizeof *t->tok_len);
    for (int b = 0; b < 256; b++)
        t->byte_id[b] = -1;
    t->ignore_merges = is_true(model, "ignore_merges");
    byte_level_inverse(inv);
    if (load_vocab(t, vocab, inv, err, errlen) < 0 || load_merges(t, json_object_get(model, "merges"), inv, err, errlen) < 0 ||
        load_added(t, added, err, errlen) < 0)
        return -1;
    return compile_regex(t, re, err, errlen);
}

Tokenizer *tokenizer_load(const char *path, char *err, size_t errlen)
{
    json_t *root = read_json(path, err, errlen);
    if (!root)
        return NULL;
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        errmsg(err, errlen, "tokenizer: out of memory");
    } else if (build(t, root, err, errlen) < 0) {
        tokenizer_free(t);
        t = NULL;
    }
    json_decref(root);
    return t;
}

void tokenizer_free(Tokenizer *t)
{
    if (!t)
        return;
    tok_vocab_free(&t->vocab);
    tok_merge_free(&t->merges);
    pcre2_code_free(t->re);
    free(t->added);
    free(t->added_slot);
    free(t->arena);
    free(t->tok_off);
    free(t->tok_len);
    free(t);
}

/* 1 + the highest id (128256 for Llama 3): the size of the logits row. */
int tokenizer_vocab_size(const Tokenizer *t)
{
    return t ? t->n_ids : 0;
}

/* piece is raw text (what the token decodes to): "safe", " safe", "<|eot_id|>". */
int tokenizer_token_id(const Tokenizer *t, const char *piece)
{
    if (!t || !piece)
        return -1;
    size_t n = strlen(piece);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == n && memcmp(t->added[i].text, piece, n) == 0)
            return t->added[i].id;
    return tok_vocab_find(t, piece, n);
}
