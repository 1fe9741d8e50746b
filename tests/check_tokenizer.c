/* check_tokenizer.c - Check suite for the Llama 3 tokenizer (model/tokenizer.h).
 *
 * Runs against the genuine Llama 3.2 tokenizer.json ($GUARDD_TOKENIZER; the
 * suite skips with exit 77 if it is missing). Expected ids never come from the
 * code under test: they are Hugging Face's output (the reference corpus in
 * tests/reference/tokenizer/, a few entries of which are also written out
 * below), the published verdict-token ids (reference token_ids.md), the
 * rendered-prompt ids (tests/reference/prompt/rendered_token_ids.json), or
 * pre-token splits that follow from the regex, checked with vocabulary lookups
 * (tokenizer_token_id, a separate path from encode).
 * The tokenizer is loaded once in main(); forked test processes share it.
 */
#include "check_main.h"
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tok_internal.h"
#include "tokenizer.h"

#define CORPUS "tests/reference/tokenizer/llama3_corpus.jsonl"
#define RENDERED_DIR "tests/reference/prompt/"

static Tokenizer *T;

/* Encodes s and compares with the expected ids; msg names the case. */
static void expect_ids(const char *s, size_t len, int special, const int *want, size_t n)
{
    TokenVec v = {0};
    char err[256] = "";
    ck_assert_msg(tokenizer_encode(T, s, len, special, &v, err, sizeof err) == 0, "encode failed: %s", err);
    ck_assert_msg(v.n == n, "\"%s\": %zu ids, want %zu", s, v.n, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(v.ids[i] == want[i], "\"%s\": id[%zu] = %d, want %d", s, i, v.ids[i], want[i]);
    tokvec_free(&v);
}
#define EXPECT(s, special, ...) do { \
        static const int w_[] = {__VA_ARGS__}; \
        expect_ids(s, strlen(s), special, w_, sizeof w_ / sizeof w_[0]); \
    } while (0)

/* Vocabulary id of a piece of raw text (must exist). */
static int V(const char *piece)
{
    int id = tokenizer_token_id(T, piece);
    ck_assert_msg(id >= 0, "\"%s\" is not in the vocabulary", piece);
    return id;
}

/* Encodes s and compares with ids given at run time (from V()). */
static void expect_dyn(const char *s, const int *want, size_t n)
{
    expect_ids(s, strlen(s), 1, want, n);
}
#define EXPECT_SPLIT(s, ...) do { \
        int w_[] = {__VA_ARGS__}; \
        expect_dyn(s, w_, sizeof w_ / sizeof w_[0]); \
    } while (0)

static void roundtrip(const char *s, size_t len)
{
    TokenVec v = {0};
    char err[256];
    size_t out_len = 0;
    ck_assert_msg(tokenizer_encode(T, s, len, 1, &v, err, sizeof err) == 0, "encode failed: %s", err);
    char *d = tokenizer_decode(T, v.ids, v.n, &out_len);
    ck_assert_ptr_nonnull(d);
    ck_assert_msg(out_len == len && memcmp(d, s, len) == 0, "round trip differs for \"%.40s\"", s);
    ck_assert_int_eq(d[out_len], 0);
    free(d);
    tokvec_free(&v);
}

/* ---- published ids ---------------------------------------------------------- */

START_TEST(test_verdict_token_ids)
{
    /* reference/llama-guard-3-1b/token_ids.md */
    EXPECT("safe", 1, 19193);
    EXPECT("unsafe", 1, 39257);
    EXPECT(" safe", 1, 6220);
    EXPECT(" unsafe", 1, 20451);
    EXPECT("\n\n", 1, 271);
    EXPECT("\n", 1, 198);
    EXPECT("S", 1, 50);
    EXPECT(",", 1, 11);
    EXPECT(",S", 1, 21861);
    EXPECT(" S", 1, 328);
    EXPECT("0", 1, 15);
    EXPECT("9", 1, 24);
    EXPECT("10", 1, 605);
    EXPECT("11", 1, 806);
    EXPECT("12", 1, 717);
    EXPECT("13", 1, 1032);
    EXPECT("14", 1, 975);
    EXPECT("User", 1, 1502);
    EXPECT("Agent", 1, 17230);
    EXPECT("\n\nsafe<|eot_id|>", 1, 271, 19193, 128009);
    EXPECT("\n\nunsafe\nS12<|eot_id|>", 1, 271, 39257, 198, 50, 717, 128009);
    EXPECT("\n\nunsafe\nS1,S10<|eot_id|>", 1, 271, 39257, 198, 50, 16, 21861, 605, 128009);
    EXPECT("\n\nunsafe\nS2,S9,S14<|eot_id|>", 1, 271, 39257, 198, 50, 17, 21861, 24, 21861, 975, 128009);
}
END_TEST

START_TEST(test_token_id_lookup)
{
    ck_assert_int_eq(tokenizer_vocab_size(T), 128256);
    ck_assert_int_eq(tokenizer_token_id(T, "safe"), 19193);
    ck_assert_int_eq(tokenizer_token_id(T, " unsafe"), 20451);
    ck_assert_int_eq(tokenizer_token_id(T, "<|begin_of_text|>"), 128000);
    ck_assert_int_eq(tokenizer_token_id(T, "<|end_of_text|>"), 128001);
    ck_assert_int_eq(tokenizer_token_id(T, "<|finetune_right_pad_id|>"), 128004);
    ck_assert_int_eq(tokenizer_token_id(T, "<|start_header_id|>"), 128006);
    ck_assert_int_eq(tokenizer_token_id(T, "<|end_header_id|>"), 128007);
    ck_assert_int_eq(tokenizer_token_id(T, "<|eom_id|>"), 128008);
    ck_assert_int_eq(tokenizer_token_id(T, "<|eot_id|>"), 128009);
    ck_assert_int_eq(tokenizer_token_id(T, "<|python_tag|>"), 128010);
    ck_assert_int_eq(tokenizer_token_id(T, "<|reserved_special_token_3|>"), 128011);
    ck_assert_int_eq(tokenizer_token_id(T, "<|reserved_special_token_247|>"), 128255);
    /* Llama 3.0 names are gone in the 3.1/3.2 file. */
    ck_assert_int_eq(tokenizer_token_id(T, "<|reserved_special_token_4|>"), 128012);
    ck_assert_int_eq(tokenizer_token_id(T, "<|reserved_special_token_250|>"), -1);
    ck_assert_int_eq(tokenizer_token_id(T, "definitely not one token"), -1);
    ck_assert_int_eq(tokenizer_token_id(T, "Ġsafe"), -1);   /* byte-level spelling is not raw text */
}
END_TEST

/* ---- own cases --------------------------------------------------------------- */

START_TEST(test_empty)
{
    TokenVec v = {0};
    char err[64];
    ck_assert_int_eq(tokenizer_encode(T, "", 0, 1, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 0);
    ck_assert_int_eq(tokenizer_encode(T, NULL, 0, 0, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 0);
    size_t len = 99;
    char *d = tokenizer_decode(T, NULL, 0, &len);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(d, "");
    free(d);
    tokvec_free(&v);
}
END_TEST

START_TEST(test_whitespace_runs)
{
    /* Hugging Face ids (corpus). */
    EXPECT("    ", 1, 257);
    EXPECT("a   b", 1, 64, 256, 293);
    EXPECT("  Hello  world  ", 1, 220, 22691, 220, 1917, 256);
    EXPECT("  \n  \n  ", 1, 31879, 256);
    EXPECT("\t\n\r\n \r\n\t", 1, 1602, 319, 2591, 197);
    /* \s+(?!\S) leaves the last space of a run to the next word;
     * \s*[\r\n]+ takes whitespace up to the last newline. */
    EXPECT_SPLIT("x     y", V("x"), V("    "), V(" y"));
    EXPECT_SPLIT("x\n\n   y", V("x"), V("\n\n"), V("  "), V(" y"));
    EXPECT_SPLIT("x  \t", V("x"), V("  \t"));
}
END_TEST

START_TEST(test_unicode_whitespace)
{
    /* Corpus: U+0085 is whitespace, U+FEFF is not (Rust/PCRE, not JavaScript). */
    EXPECT("x \xc2\x85y", 1, 87, 220, 116360, 88);
    EXPECT(". \xc2\x85", 1, 13, 2188, 227);
    EXPECT("\xef\xbb\xbf\n", 1, 62619);
    EXPECT("a\xe3\x80\x80" "b", 1, 64, 23249, 65);
    /* U+180E stopped being White_Space in Unicode 6.3: so " \u180e" is one
     * punctuation pre-token ( ?[^\s\p{L}\p{N}]+), not a space then "\u180eb". */
    TokenVec a = {0}, b = {0};
    char err[128];
    const char *whole = "a \xe1\xa0\x8e" "b";
    ck_assert_int_eq(tokenizer_encode(T, whole, strlen(whole), 1, &a, err, sizeof err), 0);
    ck_assert_int_eq(tokenizer_encode(T, "a", 1, 1, &b, err, sizeof err), 0);
    ck_assert_int_eq(tokenizer_encode(T, " \xe1\xa0\x8e", 4, 1, &b, err, sizeof err), 0);
    ck_assert_int_eq(tokenizer_encode(T, "b", 1, 1, &b, err, sizeof err), 0);
    ck_assert_uint_eq(a.n, b.n);
    ck_assert_mem_eq(a.ids, b.ids, a.n * sizeof(int));
    ck_assert_int_eq(b.ids[1], V(" \xe1"));
    tokvec_free(&a);
    tokvec_free(&b);
}
END_TEST

START_TEST(test_digits)
{
    EXPECT("1234567890", 1, 4513, 10961, 16474, 15);   /* corpus */
    EXPECT("  1234", 1, 220, 220, 4513, 19);
    /* \p{N}{1,3}: groups of three from the left, never merged with letters. */
    EXPECT_SPLIT("9876543", V("987"), V("654"), V("3"));
    EXPECT_SPLIT("x2024y", V("x"), V("202"), V("4"), V("y"));
}
END_TEST

START_TEST(test_contractions)
{
    EXPECT("it's", 1, 275, 596);         /* corpus */
    EXPECT("Don'T", 1, 8161, 17773);
    EXPECT("YOU'RE", 1, 57489, 95253);
    EXPECT("rock 'n' roll", 1, 21161, 364, 77, 6, 6638);
    EXPECT_SPLIT("we're", V("we"), V("'re"));
    EXPECT_SPLIT("can't", V("can"), V("'t"));
    EXPECT_SPLIT("HE'S", V("HE"), V("'S"));          /* (?i:...) */
    EXPECT_SPLIT("they'd", V("they"), V("'d"));
}
END_TEST

START_TEST(test_cjk_emoji)
{
    /* corpus ids */
    EXPECT("\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c\xef\xbc\x81", 1,
           57668, 53901, 3922, 102616, 6447);                          /* 你好，世界！ */
    EXPECT("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"
           "\xe3\x83\x88\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82", 1,
           102433, 102158, 16144, 57933, 62903, 71634, 38641, 1811);   /* 日本語のテキストです。 */
    EXPECT("\xf0\x9f\x98\x80", 1, 76460, 222);                          /* 😀 */
    EXPECT("Hello \xf0\x9f\x91\x8b world \xf0\x9f\x8c\x8d!", 1, 9906, 62904, 233, 1917, 11410, 234, 235, 0);
    EXPECT("I \xe2\x9d\xa4\xef\xb8\x8f NY", 1, 40, 71570, 31643, 12551);
    roundtrip("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", 18);
}
END_TEST

/* ignore_merges: a pre-token that is itself a vocabulary entry is that token,
 * even where the merges alone would not build it (588 such entries). */
START_TEST(test_ignore_merges)
{
    EXPECT_SPLIT("x vi\xe1\xbb\x87" "c", V("x"), V(" vi\xe1\xbb\x87" "c"));    /* " việc" */
    EXPECT_SPLIT("lardan", V("lardan"));
    EXPECT_SPLIT(" Vi\xe1\xbb\x87t", V(" Vi\xe1\xbb\x87t"));
}
END_TEST

START_TEST(test_special_tokens)
{
    EXPECT("<|eot_id|>", 1, 128009);
    EXPECT("a<|eot_id|>b", 1, 64, 128009, 65);
    EXPECT("<|eot_id|><|eot_id|>", 1, 128009, 128009);
    EXPECT("<|begin_of_text|><|start_header_id|>user<|end_header_id|>", 1, 128000, 128006, 882, 128007);
    EXPECT("<|reserved_special_token_247|>", 1, 128255);
    /* Without allow_special the same text is ordinary tokens. */
    TokenVec v = {0};
    char err[64];
    ck_assert_int_eq(tokenizer_encode(T, "<|eot_id|>", 10, 0, &v, err, sizeof err), 0);
    ck_assert_uint_gt(v.n, 1);
    for (size_t i = 0; i < v.n; i++)
        ck_assert_int_lt(v.ids[i], 128000);
    size_t len;
    char *d = tokenizer_decode(T, v.ids, v.n, &len);
    ck_assert_str_eq(d, "<|eot_id|>");
    free(d);
    tokvec_free(&v);
    /* Near misses stay text even with allow_special. */
    ck_assert_int_eq(tokenizer_encode(T, "<|eot_id|<|eot_id>", 18, 1, &v, err, sizeof err), 0);
    for (size_t i = 0; i < v.n; i++)
        ck_assert_int_lt(v.ids[i], 128000);
    tokvec_free(&v);
}
END_TEST

START_TEST(test_appends_to_vector)
{
    TokenVec v = {0};
    char err[64];
    tokvec_push(&v, 128000);
    ck_assert_int_eq(tokenizer_encode(T, "safe", 4, 1, &v, err, sizeof err), 0);
    ck_assert_uint_eq(v.n, 2);
    ck_assert_int_eq(v.ids[0], 128000);
    ck_assert_int_eq(v.ids[1], 19193);
    tokvec_free(&v);
    ck_assert_ptr_null(v.ids);
    ck_assert_uint_eq(v.n, 0);
}
END_TEST

/* ---- invalid UTF-8 ---------------------------------------------------------- */

static void expect_invalid(const char *s, size_t len, size_t offset, const char *what)
{
    TokenVec v = {0};
    char err[256] = "", want[64];
    tokvec_push(&v, 7);
    ck_assert_msg(tokenizer_encode(T, s, len, 1, &v, err, sizeof err) == -1, "accepted invalid %s", what);
    snprintf(want, sizeof want, "byte offset %zu", offset);
    ck_assert_msg(strstr(err, "invalid UTF-8") && strstr(err, want), "%s: message \"%s\" lacks \"%s\"", what, err,
                  want);
    ck_assert_uint_eq(v.n, 1);   /* output left as it was */
    tokvec_free(&v);
}
#define INVALID(lit, off, what) expect_invalid(lit, sizeof(lit) - 1, off, what)

START_TEST(test_invalid_utf8)
{
    INVALID("\x80", 0, "lone continuation byte");
    INVALID("ab\xbf" "cd", 2, "continuation byte mid-text");
    INVALID("a\xc3", 1, "truncated 2-byte sequence at the end");
    INVALID("a\xc3" "b", 1, "2-byte lead followed by ASCII");
    INVALID("xyz\xe2\x82", 3, "truncated 3-byte sequence");
    INVALID("\xf0\x9f\x98", 0, "truncated 4-byte sequence");
    INVALID("ok \xf0\x9f\x98 ok", 3, "truncated 4-byte sequence mid-text");
    INVALID("\xc0\xaf", 0, "overlong 2-byte '/'");
    INVALID("\xc1\xbf", 0, "overlong 2-byte");
    INVALID("\xe0\x80\xaf", 0, "overlong 3-byte");
    INVALID("\xf0\x80\x80\xaf", 0, "overlong 4-byte");
    INVALID("\xed\xa0\x80", 0, "high surrogate U+D800");
    INVALID("a\xed\xbf\xbf", 1, "low surrogate U+DFFF");
    INVALID("\xf4\x90\x80\x80", 0, "U+110000");
    INVALID("\xf5\x80\x80\x80", 0, "byte 0xF5");
    INVALID("\xff", 0, "byte 0xFF");
    INVALID("abcdefghij\xfe", 10, "byte 0xFE after the ASCII fast path");
    INVALID("<|eot_id|>\x80", 10, "invalid byte after a special token");
    /* Boundaries that are valid. */
    roundtrip("\xf4\x8f\xbf\xbf", 4);    /* U+10FFFF */
    roundtrip("\xed\x9f\xbf", 3);        /* U+D7FF */
    roundtrip("\xee\x80\x80", 3);        /* U+E000 */
    roundtrip("\xef\xbf\xbf", 3);        /* U+FFFF */
    roundtrip("a\0b", 3);                /* NUL is valid UTF-8 */
    TokenVec v = {0};
    ck_assert_int_eq(tokenizer_encode(T, "\xff", 1, 1, &v, NULL, 0), -1);   /* no error buffer: no crash */
    tokvec_free(&v);
}
END_TEST

/* Random byte strings biased towards UTF-8 lead and continuation bytes: encode
 * must accept exactly what PCRE2's own UTF-8 check accepts, report the same
 * offset, and round-trip what it accepts. */
START_TEST(test_random_utf8_vs_pcre2)
{
    static const unsigned char pool[] = {'a', ' ', '\n', '<', '|', '1', 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                         0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    int code;
    PCRE2_SIZE erroff;
    pcre2_code *any = pcre2_compile((PCRE2_SPTR) "x", 1, PCRE2_UTF, &code, &erroff, NULL);
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    unsigned long long r = 12345;
    size_t valid = 0;
    for (int iter = 0; iter < 3000; iter++) {
        unsigned char s[24];
        size_t n = (size_t)(iter % 24);
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            s[i] = (r >> 60) < 3 ? (unsigned char)(r >> 33) : pool[(r >> 33) % sizeof pool];
        }
        int rc = pcre2_match(any, s, n, 0, 0, md, NULL);
        int pcre_valid = rc >= 0 || rc == PCRE2_ERROR_NOMATCH;
        TokenVec v = {0};
        char err[256] = "", want[64];
        int ours = tokenizer_encode(T, (const char *)s, n, 1, &v, err, sizeof err);
        ck_assert_msg((ours == 0) == pcre_valid, "iteration %d: encode %d, PCRE2 %d (%s)", iter, ours, rc, err);
        if (pcre_valid) {
            roundtrip((const char *)s, n);
            valid++;
        } else {
            snprintf(want, sizeof want, "byte offset %zu", (size_t)pcre2_get_startchar(md));
            ck_assert_msg(strstr(err, want), "iteration %d: \"%s\" but PCRE2 says %s", iter, err, want);
        }
        tokvec_free(&v);
    }
    ck_assert_uint_gt(valid, 100);   /* both outcomes were exercised */
    ck_assert_uint_lt(valid, 2900);
    pcre2_match_data_free(md);
    pcre2_code_free(any);
}
END_TEST

/* ---- decode ----------------------------------------------------------------- */

START_TEST(test_decode)
{
    int ids[] = {128000, 128006, 882, 128007, 271, 9906, 128009};
    size_t len;
    char *d = tokenizer_decode(T, ids, 7, &len);
    ck_assert_str_eq(d, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");
    ck_assert_uint_eq(len, strlen(d));
    free(d);
    int bad[] = {-1, 9906, 128256, 1 << 30, 1917};   /* unknown ids are skipped */
    d = tokenizer_decode(T, bad, 5, NULL);
    ck_assert_str_eq(d, "Hello world");
    free(d);
    int half[] = {76460};   /* first bytes of 😀 only: raw bytes, no replacement */
    d = tokenizer_decode(T, half, 1, &len);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(d, "\xf0\x9f\x98", 3);
    free(d);
}
END_TEST

START_TEST(test_long_inputs)
{
    /* Long pre-tokens take the heap path of BPE; runs must not blow the regex stack. */
    size_t n = 300000;
    char *s = malloc(n + 1);
    memset(s, 'a', n);
    roundtrip(s, n);
    memset(s, ' ', n);
    s[n - 1] = 'x';
    roundtrip(s, n);
    for (size_t i = 0; i < n; i++)
        s[i] = "ab \n\t1,"[(i * 7919) % 7];
    roundtrip(s, n);
    /* Around the switch from the array path to the heap path of BPE. */
    memset(s, 'z', 200);
    roundtrip(s, TOK_BPE_SHORT_MAX);
    roundtrip(s, TOK_BPE_SHORT_MAX + 1);
    free(s);
}
END_TEST

/* ---- reference corpus and rendered prompts ------------------------------------ */

/* Every line must parse (a line jansson rejects must not shorten the corpus). */
static json_t *read_corpus(void)
{
    FILE *f = fopen(CORPUS, "r");
    ck_assert_msg(f != NULL, "cannot open %s (run from the repository root)", CORPUS);
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *row = json_loads(line, JSON_ALLOW_NUL, &je);
        lineno++;
        ck_assert_msg(json_is_string(json_object_get(row, "text")) && json_is_array(json_object_get(row, "ids")),
                      "%s:%zu: bad entry: %s", CORPUS, lineno, row ? "no text/ids" : je.text);
        json_array_append_new(all, row);
    }
    free(line);
    fclose(f);
    return all;
}

static int corpus_entry_ok(json_t *row, size_t i)
{
    json_t *jt = json_object_get(row, "text"), *jids = json_object_get(row, "ids");
    const char *text = json_string_value(jt);
    size_t len = json_string_length(jt), out_len;
    TokenVec v = {0};
    char err[256];
    int ok = tokenizer_encode(T, text, len, 1, &v, err, sizeof err) == 0 && v.n == json_array_size(jids);
    for (size_t k = 0; ok && k < v.n; k++)
        ok = v.ids[k] == json_integer_value(json_array_get(jids, k));
    char *d = tokenizer_decode(T, v.ids, v.n, &out_len);
    int rt = d && out_len == len && memcmp(d, text, len) == 0;
    if (!ok || !rt)
        fprintf(stderr, "corpus entry %zu (%s) %s: %.60s\n", i,
                json_string_value(json_object_get(row, "category")), ok ? "round trip differs" : "ids differ", text);
    free(d);
    tokvec_free(&v);
    return ok && rt;
}

START_TEST(test_reference_corpus)
{
    json_t *all = read_corpus();
    size_t n = json_array_size(all), good = 0;
    for (size_t i = 0; i < n; i++)
        good += corpus_entry_ok(json_array_get(all, i), i);
    printf("tokenizer corpus: %zu/%zu entries identical to Hugging Face (ids and round trip)\n", good, n);
    ck_assert_uint_ge(n, 300);
    ck_assert_uint_eq(good, n);
    /* Again with every pre-token on the heap path of BPE (normally only long ones). */
    tok_bpe_short_max = 0;
    for (size_t i = good = 0; i < n; i++)
        good += corpus_entry_ok(json_array_get(all, i), i);
    tok_bpe_short_max = TOK_BPE_SHORT_MAX;
    printf("tokenizer corpus, heap-path BPE only: %zu/%zu identical\n", good, n);
    ck_assert_uint_eq(good, n);
    json_decref(all);
}
END_TEST

START_TEST(test_rendered_prompts)
{
    json_error_t je;
    json_t *ref = json_load_file(RENDERED_DIR "rendered_token_ids.json", 0, &je);
    if (!ref || !json_object_size(ref)) {
        printf("rendered_token_ids.json missing or empty: rendered-prompt part skipped\n");
        json_decref(ref);
        return;
    }
    const char *name;
    json_t *ids;
    json_object_foreach(ref, name, ids) {
        char path[256], err[256];
        snprintf(path, sizeof path, RENDERED_DIR "%s", name);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        static char text[65536];
        size_t len = fread(text, 1, sizeof text, f);
        fclose(f);
        TokenVec v = {0};
        ck_assert_int_eq(tokenizer_encode(T, text, len, 1, &v, err, sizeof err), 0);
        ck_assert_msg(v.n == json_array_size(ids), "%s: %zu ids, want %zu", name, v.n, json_array_size(ids));
        for (size_t k = 0; k < v.n; k++)
            ck_assert_msg(v.ids[k] == json_integer_value(json_array_get(ids, k)), "%s: id[%zu] = %d, want %d",
                          name, k, v.ids[k], (int)json_integer_value(json_array_get(ids, k)));
        printf("%s: %zu ids identical\n", name, v.n);
        tokvec_free(&v);
    }
    json_decref(ref);
}
END_TEST

/* Two threads encode the whole corpus at once and must agree with one thread. */
static void *encode_corpus(void *arg)
{
    json_t *all = arg;
    size_t total = 0;
    for (int rep = 0; rep < 3; rep++)
        for (size_t i = 0; i < json_array_size(all); i++) {
            json_t *jt = json_object_get(json_array_get(all, i), "text");
            TokenVec v = {0};
            char err[128];
            if (tokenizer_encode(T, json_string_value(jt), json_string_length(jt), 1, &v, err, sizeof err) == 0)
                total += v.n;
            for (size_t k = 0; k < v.n; k++)
                total = total * 31 + (size_t)v.ids[k];
            tokvec_free(&v);
        }
    return (void *)total;
}

START_TEST(test_threads)
{
    json_t *all = read_corpus();
    pthread_t th[2];
    void *r[2];
    void *single = encode_corpus(all);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, encode_corpus, all), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], &r[i]);
    ck_assert_ptr_eq(r[0], single);
    ck_assert_ptr_eq(r[1], single);
    json_decref(all);
}
END_TEST

/* ---- loading errors ---------------------------------------------------------- */

static void expect_load_error(const char *json, const char *needle)
{
    char path[] = "/tmp/check_tokenizer_XXXXXX", err[256] = "";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(json, f);
    fclose(f);
    Tokenizer *t = tokenizer_load(path, err, sizeof err);
    unlink(path);
    ck_assert_msg(t == NULL, "loaded a bad tokenizer.json (want error with \"%s\")", needle);
    ck_assert_msg(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
}

START_TEST(test_load_errors)
{
    char err[256] = "";
    ck_assert_ptr_null(tokenizer_load("/nonexistent/tokenizer.json", err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "cannot open"));
    expect_load_error("{\"model\": ", "tokenizer");
    expect_load_error("[1, 2]", "not a JSON object");
    expect_load_error("{\"normalizer\": {\"type\": \"NFC\"}, \"model\": {}}", "normalizers are not supported");
    expect_load_error("{\"model\": {\"type\": \"WordPiece\"}}", "only BPE");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []},"
                      " \"pre_tokenizer\": {\"type\": \"Whitespace\"}}", "Sequence");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                      "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{L}+\"}, \"behavior\": \"Isolated\"},"
                      "{\"type\": \"ByteLevel\", \"use_regex\": false}]}}", "single-byte token");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"byte_fallback\": true}}",
                      "byte_fallback");
}
END_TEST

/* ---- a small synthetic tokenizer.json -------------------------------------------- */

/* Writes a file with the 256 byte tokens (ids 0..255 in GPT-2 byte-level
 * spelling), "ab" = 256, "abc" = 257, "ca" = 258 with merges in the given
 * form, and added tokens "<x>" (300), "<x>y" (301, special) and "HELLO" (302,
 * not special). Returns the loaded tokenizer. */
static Tokenizer *synthetic(int array_merges, char *path, size_t pathlen)
{
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    for (int b = 0, extra = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        int cp = printable ? b : 256 + extra++;
        char key[3] = {0};
        if (cp < 0x80)
            key[0] = (char)cp;
        else {
            key[0] = (char)(0xC0 | (cp >> 6));
            key[1] = (char)(0x80 | (cp & 0x3F));
        }
        json_object_set_new(vocab, key, json_integer(b));
    }
    json_object_set_new(vocab, "ab", json_integer(256));
    json_object_set_new(vocab, "abc", json_integer(257));
    json_object_set_new(vocab, "ca", json_integer(258));
    const char *pairs[][2] = {{"a", "b"}, {"c", "a"}, {"ab", "c"}};
    for (int i = 0; i < 3; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%s %s", pairs[i][0], pairs[i][1]);
        json_array_append_new(merges, array_merges ? json_pack("[ss]", pairs[i][0], pairs[i][1]) : json_string(buf));
    }
    json_array_append_new(added, json_pack("{sisssb}", "id", 300, "content", "<x>", "special", 1));
    json_array_append_new(added, json_pack("{sisssb}", "id", 301, "content", "<x>y", "special", 1));
    json_array_append_new(added, json_pack("{sisssb}", "id", 302, "content", "HELLO", "special", 0));
    json_t *root = json_pack("{s:o, s:n, s:{s:s, s:o, s:o}, s:{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s, s:b}]}, s:{s:s}}",
                             "added_tokens", added, "normalizer", "model", "type", "BPE", "vocab", vocab, "merges",
                             merges, "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split",
                             "pattern", "Regex", "\\p{L}+|\\p{N}|\\s+|[^\\s\\p{L}\\p{N}]+", "behavior",
                             "Isolated", "type", "ByteLevel", "use_regex", 0, "decoder", "type", "ByteLevel");
    ck_assert_ptr_nonnull(root);
    snprintf(path, pathlen, "/tmp/check_tokenizer_syn_XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    char err[256] = "";
    Tokenizer *t = tokenizer_load(path, err, sizeof err);
    ck_assert_msg(t != NULL, "synthetic tokenizer: %s", err);
    return t;
}

static void expect_syn(Tokenizer *t, const char *s, int special, const int *want, size_t n)
{
    Tokenizer *saved = T;
    T = t;
    expect_ids(s, strlen(s), special, want, n);
    T = saved;
}
#define EXPECT_SYN(t, s, special, ...) do { \
        static const int w_[] = {__VA_ARGS__}; \
        expect_syn(t, s, special, w_, sizeof w_ / sizeof w_[0]); \
    } while (0)

START_TEST(test_synthetic_tokenizer)
{
    for (int form = 0; form < 2; form++) {   /* merges as "a b", then as ["a", "b"] */
        char path[64];
        Tokenizer *t = synthetic(form, path, sizeof path);
        unlink(path);
        ck_assert_int_eq(tokenizer_vocab_size(t), 303);
        EXPECT_SYN(t, "abc", 1, 257);
        EXPECT_SYN(t, "abab", 1, 256, 256);
        EXPECT_SYN(t, "cab", 1, 'c', 256);       /* "a b" (rank 0) before "c a" (rank 1) */
        EXPECT_SYN(t, "abca", 1, 256, 258);      /* then "c a" (1) before "ab c" (2) */
        EXPECT_SYN(t, "abcab", 1, 257, 256);
        EXPECT_SYN(t, "<x>y", 1, 301);           /* longest added token wins */
        EXPECT_SYN(t, "<x>z", 1, 300, 'z');
        EXPECT_SYN(t, "<x>y", 0, '<', 'x', '>', 'y');
        EXPECT_SYN(t, "saying HELLO", 0, 's', 'a', 'y', 'i', 'n', 'g', ' ', 302);   /* non-special: always */
        EXPECT_SYN(t, " \n", 1, ' ', '\n');
        tokenizer_free(t);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = check_case(s, "core", 120);
    tcase_add_test(tc, test_verdict_token_ids);
    tcase_add_test(tc, test_token_id_lookup);
    tcase_add_test(tc, test_empty);
    tcase_add_test(tc, test_whitespace_runs);
    tcase_add_test(tc, test_unicode_whitespace);
    tcase_add_test(tc, test_digits);
    tcase_add_test(tc, test_contractions);
    tcase_add_test(tc, test_cjk_emoji);
    tcase_add_test(tc, test_ignore_merges);
    tcase_add_test(tc, test_special_tokens);
    tcase_add_test(tc, test_appends_to_vector);
    tcase_add_test(tc, test_invalid_utf8);
    tcase_add_test(tc, test_random_utf8_vs_pcre2);
    tcase_add_test(tc, test_decode);
    tcase_add_test(tc, test_long_inputs);
    tcase_add_test(tc, test_reference_corpus);
    tcase_add_test(tc, test_rendered_prompts);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_load_errors);
    tcase_add_test(tc, test_synthetic_tokenizer);
    return s;
}

int main(void)
{
    const char *path = check_tokenizer();
    char err[512];
    if (!path) return check_skip("GUARDD_TOKENIZER not readable; run tools/deps.sh");
    T = tokenizer_load(path, err, sizeof err);
    if (!T) {
        fprintf(stderr, "cannot load %s: %s\n", path, err);
        return 1;
    }
    int rc = check_run(suite());
    tokenizer_free(T);
    return rc;
}
