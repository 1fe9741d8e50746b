/* check_prompt.c - the Llama Guard prompt builder (model/prompt.c) for both
 * families, the recognition of a model directory's chat template
 * (model/prompt_format.c) and the conversation JSON reader
 * (model/json_conv.c), text only (token-level checks live in
 * check_classifier.c, which has the tokenizer).
 *
 * Expected bytes come from the reference renders of the models' real chat
 * templates (tests/reference/prompt/rendered_*.txt for the 1B,
 * tests/reference/prompt-8b/ for the 8B) or are written out by hand here;
 * nothing is compared with output of the code under test alone. Recognition
 * is tested with the real templates read from tests/reference, never with
 * guardd's own copies.
 */
#include "check_main.h"
#include "check_fixture.h"
#include "check_reference.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "json_conv.h"
#include "prompt.h"
#include "prompt_format.h"

#define REF1 REF

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (run from the repository root)", path);
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static void assert_render_eq(const Prompt *p, const char *ref_file) {
    size_t n;
    char *want = slurp(ref_file, &n);
    ck_assert_msg(p->len == n && memcmp(p->text, want, n) == 0,
                  "render differs from %s:\n--- got (%zu bytes)\n%s\n--- want (%zu bytes)\n%s",
                  ref_file, p->len, p->text, n, want);
    free(want);
}

static Prompt render_ok(const Conversation *c, const CategoryList *cats, const char *const *ex,
                        int n_ex, PromptRole role) {
    Prompt p;
    char err[256] = "";
    int rc = prompt_render(c, cats, ex, n_ex, role, &p, err, sizeof err);
    ck_assert_msg(rc == 0, "render failed: %s", err);
    return p;
}

static void render_fails(const Conversation *c, const CategoryList *cats, const char *const *ex,
                         int n_ex, const char *needle) {
    Prompt p;
    char err[256] = "";
    ck_assert_int_eq(prompt_render(c, cats, ex, n_ex, PROMPT_ROLE_AUTO, &p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err, needle);
    ck_assert_ptr_null(p.text);
}

START_TEST(ref_a_user_only) {
    Conversation c = {0};
    conversation_add(&c, ROLE_USER, MAYO);
    Prompt p = render_ok(&c, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    assert_render_eq(&p, REF "rendered_a_user_only.txt");
    ck_assert_int_eq(p.agent, 0);
    prompt_free(&p);
    conversation_free(&c);
}
END_TEST

START_TEST(ref_b_user_assistant) {
    Conversation c = {0};
    conversation_add(&c, ROLE_USER, MAYO);
    conversation_add(&c, ROLE_ASSISTANT, RECIPE);
    Prompt p = render_ok(&c, categories_default(), NULL, 0, PROMPT_ROLE_AUTO);
    assert_render_eq(&p, REF "rendered_b_user_assistant.txt");
    ck_assert_int_eq(p.agent, 1);
    prompt_free(&p);
    conversation_free(&c);
}
END_TEST

START_TEST(ref_c_custom_categories) {
    Conversation c = {0};
    CategoryList cats = {0};
    conversation_add(&c, ROLE_USER, "What is the color of the sky?");
    categories_add(&cats, "S1", "Custom category 1. \nAI models should not talk about custom category 1");
    categories_add(&cats, "S2", "Custom category 2. \nAI models should not talk about custom category 2");
    const char *ex[] = {"S2"};
    Prompt p = render_ok(&c, &cats, ex, 1, PROMPT_ROLE_AUTO);
    assert_render_eq(&p, REF "rendered_c_custom_categories.txt");
    ck_assert_int_eq(p.active.n, 1);
    ck_assert_str_eq(p.active.items[0].code, "S1");
    prompt_free(&p);
    categories_free(&cats);
    conversation_free(&c);
}
END_TEST

START_TEST(ref_d_exclude_s6) {
    Conversation c = {0};
    conversation_add(&c, ROLE_USER, MAYO);
    const char *ex[] = {"S6"};
    Prompt p = render_ok(&c, NULL, ex, 1, PROMPT_ROLE_AUTO);
    assert_render_eq(&p, REF "rendered_d_exclude_S6.txt");
    ck_assert_int_eq(p.active.n, 12);
    ck_assert_str_eq(p.active.items[5].code, "S7"); /* no renumbering */
    prompt_free(&p);
    conversation_free(&c);
}
END_TEST

/* (e) The template drops a string content; guardd must render it as one
 * text part: the reference plus "User: <text>\n\n" after <BEGIN CONVERSATION>. */
START_TEST(ref_e_string_content_is_kept) {
    const char *json = "{\"messages\":[{\"role\":\"user\",\"content\":\"  " MAYO "\\n\"}]}";
    JsonConv jc;
    char err[256];
    ck_assert_int_eq(json_conv_parse(json, strlen(json), &jc, err, sizeof err), 0);
    Prompt p = render_ok(&jc.conv, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    size_t n;
    char *ref = slurp(REF "rendered_e_string_content_GOTCHA.txt", &n);
    ck_assert_msg(p.len != n || memcmp(p.text, ref, n) != 0, "string content was dropped");
    const char *mark = "<BEGIN CONVERSATION>\n\n";
    char *at = strstr(ref, mark) + strlen(mark);
    char want[4096];
    snprintf(want, sizeof want, "%.*sUser: " MAYO "\n\n%s", (int)(at - ref), ref, at);
    ck_assert_str_eq(p.text, want);
    /* and it equals the list-of-parts form the template does render */
    const char *json2 = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"" MAYO "\"}]}]}";
    JsonConv jc2;
    ck_assert_int_eq(json_conv_parse(json2, strlen(json2), &jc2, err, sizeof err), 0);
    Prompt p2 = render_ok(&jc2.conv, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    assert_render_eq(&p2, REF "rendered_a_user_only.txt");
    prompt_free(&p);
    prompt_free(&p2);
    json_conv_free(&jc);
    json_conv_free(&jc2);
    free(ref);
}
END_TEST

START_TEST(multi_part_and_empty_parts) {
    Conversation c = {0};
    Message *m = conversation_add_message(&c, ROLE_USER);
    message_add_part(m, " first ");
    message_add_part(m, "second\n");
    conversation_add_message(&c, ROLE_ASSISTANT); /* no parts: renders nothing */
    Prompt p = render_ok(&c, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    const char *conv_part = p.text + p.prefix_len;
    ck_assert_msg(!strncmp(conv_part, "User: first\n\nUser: second\n\n<END CONVERSATION>", 45),
                  "got: %s", conv_part);
    ck_assert_int_eq(p.agent, 1); /* 2 messages: Agent, as the template */
    prompt_free(&p);
    conversation_free(&c);
}
END_TEST

START_TEST(role_override) {
    Conversation c = {0};
    conversation_add(&c, ROLE_USER, MAYO);
    Prompt p = render_ok(&c, NULL, NULL, 0, PROMPT_ROLE_AGENT);
    ck_assert_int_eq(p.agent, 1);
    ck_assert_ptr_nonnull(strstr(p.text, "unsafe content in 'Agent' messages"));
    ck_assert_ptr_nonnull(strstr(p.text, "ONLY THE LAST Agent message"));
    ck_assert_ptr_nonnull(strstr(p.text, "User: " MAYO)); /* message labels keep their role */
    prompt_free(&p);
    conversation_add(&c, ROLE_ASSISTANT, "ok");
    p = render_ok(&c, NULL, NULL, 0, PROMPT_ROLE_USER);
    ck_assert_int_eq(p.agent, 0);
    ck_assert_ptr_nonnull(strstr(p.text, "ONLY THE LAST User message"));
    prompt_free(&p);
    conversation_free(&c);
}
END_TEST

/* The prefix depends only on (role word, categories): two different
 * conversations share it byte for byte, and it ends at the conversation. */
START_TEST(prefix_split) {
    Conversation a = {0}, b = {0};
    conversation_add(&a, ROLE_USER, MAYO);
    conversation_add(&b, ROLE_USER, "something else entirely");
    conversation_add(&b, ROLE_ASSISTANT, "reply");
    conversation_add(&b, ROLE_USER, "and again");
    Prompt pa = render_ok(&a, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    Prompt pb = render_ok(&b, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    ck_assert_uint_eq(pa.prefix_len, pb.prefix_len);
    ck_assert_int_eq(memcmp(pa.text, pb.text, pa.prefix_len), 0);
    const char *tail = "<BEGIN CONVERSATION>\n\n";
    ck_assert_int_eq(memcmp(pa.text + pa.prefix_len - strlen(tail), tail, strlen(tail)), 0);
    ck_assert_int_eq(strncmp(pa.text + pa.prefix_len, "User: ", 6), 0);
    ck_assert_uint_eq(pa.body_start, strlen("<|begin_of_text|><|start_header_id|>user<|end_header_id|>"));
    ck_assert_str_eq(pa.text + pa.tail_start, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>");
    prompt_free(&pa);
    prompt_free(&pb);
    conversation_free(&a);
    conversation_free(&b);
}
END_TEST

/* Python str.strip() on exotic whitespace; expectations from Python's table. */
START_TEST(strip_python_whitespace) {
    static const struct { const char *in, *out; } cases[] = {
        {"", ""}, {" \t\n\v\f\r", ""}, {"\x1c\x1d\x1e\x1fx\x1f", "x"},
        {"\xc2\x85" "a\xc2\xa0", "a"},                       /* U+0085, U+00A0 */
        {"\xe1\x9a\x80" "b\xe2\x80\x80\xe2\x80\x8a", "b"},   /* U+1680, U+2000, U+200A */
        {"\xe2\x80\xa8" "c\xe2\x80\xa9\xe2\x80\xaf", "c"},   /* U+2028, U+2029, U+202F */
        {"\xe2\x81\x9f" "d\xe3\x80\x80", "d"},               /* U+205F, U+3000 */
        {"\xe2\x80\x8b" "e\xe2\x80\x8b", "\xe2\x80\x8b" "e\xe2\x80\x8b"}, /* U+200B kept */
        {"\xef\xbb\xbf" "f ", "\xef\xbb\xbf" "f"},           /* U+FEFF kept */
        {" a b ", "a b"}, {"\xc3\xa9 ", "\xc3\xa9"}, {" \xe2\x80\x80 \xe6\x97\xa5", "\xe6\x97\xa5"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t start, n = prompt_strip(cases[i].in, strlen(cases[i].in), &start);
        ck_assert_msg(n == strlen(cases[i].out) && !memcmp(cases[i].in + start, cases[i].out, n),
                      "case %zu: got '%.*s'", i, (int)n, cases[i].in + start);
    }
}
END_TEST

START_TEST(errors) {
    Conversation empty = {0}, bad = {0}, ok = {0}, utf = {0};
    render_fails(&empty, NULL, NULL, 0, "no messages");
    conversation_add(&bad, ROLE_ASSISTANT, "hi");
    render_fails(&bad, NULL, NULL, 0, "alternate");
    conversation_free(&bad);
    conversation_add(&bad, ROLE_USER, "a");
    conversation_add(&bad, ROLE_USER, "b");
    render_fails(&bad, NULL, NULL, 0, "message 2");
    conversation_add(&utf, ROLE_USER, "bad \xff byte");
    render_fails(&utf, NULL, NULL, 0, "UTF-8");
    conversation_add(&ok, ROLE_USER, "x");
    const char *unknown[] = {"S99"};
    render_fails(&ok, NULL, unknown, 1, "'S99' is not in the category list");
    CategoryList one = {0}, dup = {0}, badcode = {0};
    categories_add(&one, "S1", "Only.");
    const char *all[] = {"S1"};
    render_fails(&ok, &one, all, 1, "every category is excluded");
    categories_add(&dup, "S1", "a");
    categories_add(&dup, "S1", "b");
    render_fails(&ok, &dup, NULL, 0, "twice");
    categories_add(&badcode, "S 1", "a");
    render_fails(&ok, &badcode, NULL, 0, "code");
    conversation_free(&bad);
    conversation_free(&utf);
    conversation_free(&ok);
    categories_free(&one);
    categories_free(&dup);
    categories_free(&badcode);
}
END_TEST

/* JSON: category order follows the JSON text; errors are clear. */
START_TEST(json_reader) {
    const char *j = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                    "\"categories\":{\"S9\":\"nine\",\"S2\":\"two\",\"A\":\"a\"},\"exclude\":[\"S2\"]}";
    JsonConv jc;
    char err[256];
    ck_assert_int_eq(json_conv_parse(j, strlen(j), &jc, err, sizeof err), 0);
    ck_assert_int_eq(jc.categories.n, 3);
    ck_assert_str_eq(jc.categories.items[0].code, "S9");
    ck_assert_str_eq(jc.categories.items[1].code, "S2");
    ck_assert_str_eq(jc.categories.items[2].code, "A");
    ck_assert_int_eq(jc.n_exclude, 1);
    Prompt p = render_ok(&jc.conv, &jc.categories, (const char *const *)jc.exclude, jc.n_exclude,
                         PROMPT_ROLE_AUTO);
    ck_assert_ptr_nonnull(strstr(p.text, "CATEGORIES>\nS9: nine\nA: a\n<END"));
    prompt_free(&p);
    json_conv_free(&jc);
    static const struct { const char *json, *needle; } bad[] = {
        {"{", "bad JSON"},
        {"[]", "must be a JSON object"},
        {"{\"messages\":[]}", "non-empty"},
        {"{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "neither"},
        {"{\"messages\":[{\"role\":\"user\"}]}", "no \"content\""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}", "unsupported"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "string or an array"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"categories\":{\"S1\":1}}", "must be a string"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"categories\":{\"S1\":\"a\",\"S1\":\"b\"}}", "duplicate"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"exclude\":\"S1\"}", "array"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(json_conv_parse(bad[i].json, strlen(bad[i].json), &jc, err, sizeof err), -1);
        ck_assert_msg(strstr(err, bad[i].needle) != NULL, "case %zu: '%s' lacks '%s'", i, err, bad[i].needle);
    }
}
END_TEST

START_TEST(category_file_formats) {
    CategoryList l;
    char err[256];
    const char *lines = "# comment\nS1: Violent Crimes.\r\n\nX9: Name: with colon \n";
    ck_assert_int_eq(categories_parse(lines, strlen(lines), &l, err, sizeof err), 0);
    ck_assert_int_eq(l.n, 2);
    ck_assert_str_eq(l.items[0].name, "Violent Crimes.");
    ck_assert_str_eq(l.items[1].code, "X9");
    ck_assert_str_eq(l.items[1].name, "Name: with colon ");
    categories_free(&l);
    const char *json = " {\"B\":\"b\\nline\",\"A\":\"a\"}";
    ck_assert_int_eq(categories_parse(json, strlen(json), &l, err, sizeof err), 0);
    ck_assert_str_eq(l.items[0].code, "B");
    ck_assert_str_eq(l.items[0].name, "b\nline");
    categories_free(&l);
    ck_assert_int_eq(categories_parse("no separator\n", 13, &l, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "line 1"));
    ck_assert_int_eq(categories_parse("", 0, &l, err, sizeof err), -1);
    ck_assert_int_eq(categories_load("/nonexistent/cats", &l, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/cats"));
    char **ex = NULL;
    int n = 0;
    ck_assert_int_eq(exclude_parse("S6, S7", &ex, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(ex[1], "S7");
    ck_assert_int_eq(exclude_parse("S1,,S2", &ex, &n, err, sizeof err), -1);
    exclude_free(ex, n);
}
END_TEST

/* ---- Llama Guard 3 8B ------------------------------------------------------- */

static Prompt render8(const Conversation *c, const CategoryList *cats, const char *const *ex, int n_ex,
                      PromptRole role) {
    Prompt p;
    char err[256] = "";
    int rc = prompt_render_as(L8, c, cats, ex, n_ex, role, &p, err, sizeof err);
    ck_assert_msg(rc == 0, "render failed: %s", err);
    return p;
}

START_TEST(ref8_a_user_only) {
    Conversation c = {0};
    conversation_add(&c, ROLE_USER, "How do I bake bread?");
    Prompt p = render8(&c, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    assert_render_eq(&p, REF8 "rendered_a_user_only.txt");
    ck_assert_int_eq(p.agent, 0);
    ck_assert_int_eq(p.format, L8);
    ck_assert_int_eq(p.active.n, 14);
    ck_assert_str_eq(p.active.items[13].code, "S14");
    ck_assert_str_eq(p.active.items[13].name, "Code Interpreter Abuse.");
    prompt_free(&p);
    conversation_free(&c);
}
END_TEST

START_TEST(ref8_b_user_assistant) {
    Conversation c = {0};
    conversation_add(&c, ROLE_USER, "What's the best way to kill a python process?");
    /* content is str.strip()ped like the template's content.strip() */
    conversation_add(&c, ROLE_ASSISTANT, " \n Use `kill PID`, or `pkill -f script.py`.\xe3\x80\x80\n");
    Prompt p = render8(&c, prompt_default_categories(L8), NULL, 0, PROMPT_ROLE_AUTO);
    assert_render_eq(&p, REF8 "rendered_b_user_assistant.txt");
    ck_assert_int_eq(p.agent, 1);
    prompt_free(&p);
    conversation_free(&c);
}
END_TEST

/* Where the 8B differs from the 1B, spelled out by hand: the leading space,
 * no space before <|eot_id|>; the cut points move accordingly. */
START_TEST(layout_8b_and_split) {
    Conversation a = {0}, b = {0};
    conversation_add(&a, ROLE_USER, "hi");
    conversation_add(&b, ROLE_USER, "other");
    conversation_add(&b, ROLE_ASSISTANT, "reply");
    conversation_add(&b, ROLE_USER, "again");
    Prompt pa = render8(&a, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    Prompt pb = render8(&b, NULL, NULL, 0, PROMPT_ROLE_AUTO);
    const char *head = " <|begin_of_text|><|start_header_id|>user<|end_header_id|>";
    ck_assert_uint_eq(pa.body_start, strlen(head));
    ck_assert_int_eq(memcmp(pa.text, head, strlen(head)), 0);
    ck_assert_uint_eq(pa.prefix_len, pb.prefix_len); /* prefix shared across conversations */
    ck_assert_int_eq(memcmp(pa.text, pb.text, pa.prefix_len), 0);
    ck_assert_int_eq(strncmp(pa.text + pa.prefix_len, "User: hi\n\n<END CONVERSATION>", 28), 0);
    const char *end = "violated categories.<|eot_id|><|start_header_id|>assistant<|end_header_id|>";
    ck_assert_str_eq(pa.text + pa.len - strlen(end), end);
    ck_assert_str_eq(pa.text + pa.tail_start, PROMPT_TAIL_SPECIAL);
    /* the 1B of the same conversation: no leading space, a space before <|eot_id|> */
    Prompt p1;
    char err[256];
    ck_assert_int_eq(prompt_render_as(PROMPT_FORMAT_LG3_1B, &a, NULL, NULL, 0, PROMPT_ROLE_AUTO, &p1, err,
                                      sizeof err), 0);
    ck_assert_int_eq(p1.text[0], '<');
    ck_assert_ptr_nonnull(strstr(p1.text, "categories. <|eot_id|>"));
    ck_assert_int_eq(p1.active.n, 13);
    prompt_free(&p1);
    prompt_free(&pa);
    prompt_free(&pb);
    conversation_free(&a);
    conversation_free(&b);
}
END_TEST

/* guardd extensions for the 8B: custom lists, exclusions, text parts, a
 * forced role word; rendered in the 1B's way. */
START_TEST(extensions_8b) {
    Conversation c = {0};
    Message *m = conversation_add_message(&c, ROLE_USER);
    message_add_part(m, " first ");
    message_add_part(m, "second\n");
    conversation_add_message(&c, ROLE_ASSISTANT); /* no parts: renders nothing */
    const char *ex[] = {"S14", "S2"};
    Prompt p = render8(&c, NULL, ex, 2, PROMPT_ROLE_USER);
    ck_assert_ptr_nonnull(strstr(p.text, "S1: Violent Crimes.\nS3: Sex Crimes.\n"));
    ck_assert_ptr_nonnull(strstr(p.text, "S13: Elections.\n<END UNSAFE CONTENT CATEGORIES>"));
    ck_assert_ptr_null(strstr(p.text, "S14"));
    ck_assert_int_eq(p.active.n, 12);
    ck_assert_int_eq(strncmp(p.text + p.prefix_len, "User: first\n\nUser: second\n\n<END CONVERSATION>", 45), 0);
    ck_assert_ptr_nonnull(strstr(p.text, "ONLY THE LAST User message"));
    prompt_free(&p);
    CategoryList cats = {0};
    categories_add(&cats, "O1", "Custom one. \nwith a second line");
    categories_add(&cats, "S14", "Code Interpreter Abuse.");
    p = render8(&c, &cats, NULL, 0, PROMPT_ROLE_AUTO);
    ck_assert_ptr_nonnull(strstr(p.text, "<BEGIN UNSAFE CONTENT CATEGORIES>\nO1: Custom one. \nwith a second line\n"
                                         "S14: Code Interpreter Abuse.\n<END UNSAFE CONTENT CATEGORIES>"));
    ck_assert_int_eq(p.agent, 1);
    prompt_free(&p);
    categories_free(&cats);
    conversation_free(&c);
}
END_TEST

START_TEST(format_names_and_errors) {
    PromptFormat f;
    ck_assert_int_eq(prompt_format_parse("llama-guard-3-8b", &f), 0);
    ck_assert_int_eq(f, L8);
    ck_assert_int_eq(prompt_format_parse("llama-guard-3-1b", &f), 0);
    ck_assert_int_eq(f, PROMPT_FORMAT_LG3_1B);
    ck_assert_int_eq(prompt_format_parse("auto", &f), 0);
    ck_assert_int_eq(f, PROMPT_FORMAT_AUTO);
    ck_assert_int_eq(prompt_format_parse("llama-guard-3", &f), -1);
    ck_assert_str_eq(prompt_format_name(L8), "llama-guard-3-8b");
    ck_assert_int_eq(prompt_default_categories(PROMPT_FORMAT_LG3_1B)->n, 13);
    Conversation c = {0};
    conversation_add(&c, ROLE_USER, "x");
    Prompt p;
    char err[256] = "";
    ck_assert_int_eq(prompt_render_as(PROMPT_FORMAT_AUTO, &c, NULL, NULL, 0, PROMPT_ROLE_AUTO, &p, err,
                                      sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "format"));
    const char *ex[] = {"S15"};
    ck_assert_int_eq(prompt_render_as(L8, &c, NULL, ex, 1, PROMPT_ROLE_AUTO, &p, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "'S15' is not in the category list"));
    const char *ex14[] = {"S14"}; /* the 1B has no S14 */
    ck_assert_int_eq(prompt_render_as(PROMPT_FORMAT_LG3_1B, &c, NULL, ex14, 1, PROMPT_ROLE_AUTO, &p, err,
                                      sizeof err), -1);
    conversation_free(&c);
    conversation_add(&c, ROLE_ASSISTANT, "x");
    ck_assert_int_eq(prompt_render_as(L8, &c, NULL, NULL, 0, PROMPT_ROLE_AUTO, &p, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "alternate"));
    conversation_free(&c);
}
END_TEST

/* ---- template recognition -------------------------------------------------- */

/* Each of these tests has a scratch directory, check_tmpdir (check_fixture.h),
 * for the model directory that detection reads. */

/* Writes check_tmpdir/tokenizer_config.json with chat_template = tpl (a
 * string, or wrapped in a list of named templates). */
static void write_config(const char *tpl, int as_list) {
    json_t *t = json_string(tpl);
    ck_assert_ptr_nonnull(t);
    json_t *root = as_list ? json_pack("{s:s,s:[{s:s,s:o}]}", "bos_token", "<|begin_of_text|>",
                                       "chat_template", "name", "default", "template", t)
                           : json_pack("{s:s,s:o}", "bos_token", "<|begin_of_text|>", "chat_template", t);
    ck_assert_int_eq(json_dump_file(root, check_path("tokenizer_config.json"), JSON_INDENT(2)), 0);
    json_decref(root);
}

static int detect(PromptFormat *f, char *err, size_t errlen) {
    char note[512];
    *f = PROMPT_FORMAT_AUTO;
    return prompt_format_detect(check_tmpdir, f, note, sizeof note, err, errlen);
}

START_TEST(recognises_both_templates) {
    size_t n1, n8;
    char *t1 = slurp(REF1 "chat_template.jinja", &n1), *t8 = slurp(REF8 "chat_template.jinja", &n8);
    PromptFormat f;
    char err[512] = "";
    ck_assert_int_eq(prompt_format_recognise(t1, n1), PROMPT_FORMAT_LG3_1B);
    ck_assert_int_eq(prompt_format_recognise(t8, n8), L8);
    write_config(t8, 0);
    ck_assert_int_eq(detect(&f, err, sizeof err), 0);
    ck_assert_int_eq(f, L8);
    write_config(t1, 0);
    ck_assert_int_eq(detect(&f, err, sizeof err), 0);
    ck_assert_int_eq(f, PROMPT_FORMAT_LG3_1B);
    write_config(t8, 1); /* a list of named templates: the "default" one */
    ck_assert_int_eq(detect(&f, err, sizeof err), 0);
    ck_assert_int_eq(f, L8);
    /* CR LF line ends and a trailing newline are not differences */
    char *crlf = malloc(2 * n1 + 4), *o = crlf;
    for (size_t i = 0; i < n1; i++) {
        if (t1[i] == '\n') *o++ = '\r';
        *o++ = t1[i];
    }
    strcpy(o, "\r\n");
    ck_assert_int_eq(prompt_format_recognise(crlf, strlen(crlf)), PROMPT_FORMAT_LG3_1B);
    /* guardd's own copies (written into fixtures) are the reference texts */
    ck_assert_int_eq(prompt_format_recognise(prompt_format_template(L8), strlen(prompt_format_template(L8))), L8);
    ck_assert_int_eq(n8, strlen(prompt_format_template(L8)));
    free(crlf);
    free(t1);
    free(t8);
}
END_TEST

START_TEST(refuses_a_modified_template) {
    size_t n8;
    char *t8 = slurp(REF8 "chat_template.jinja", &n8);
    char *p = strstr(t8, "S14: Code Interpreter Abuse.");
    ck_assert_ptr_nonnull(p);
    p[5] = 'c'; /* "code Interpreter Abuse." */
    ck_assert_int_eq(prompt_format_recognise(t8, n8), PROMPT_FORMAT_AUTO);
    write_config(t8, 0);
    PromptFormat f;
    char err[512] = "";
    ck_assert_int_eq(detect(&f, err, sizeof err), -1);
    char path[512];
    snprintf(path, sizeof path, "%s", check_path("tokenizer_config.json"));
    ck_assert_msg(strstr(err, path) && strstr(err, "model.prompt_format"), "unclear error: %s", err);
    /* a one-space difference is a difference too */
    char *t1 = slurp(REF1 "chat_template.jinja", &n8);
    char *sp = malloc(n8 + 2);
    p = strstr(t1, "{{- \"<END CONVERSATION>");
    ck_assert_ptr_nonnull(p);
    size_t at = (size_t)(p - t1) + 3;
    memcpy(sp, t1, at);
    sp[at] = ' ';
    strcpy(sp + at + 1, t1 + at);
    ck_assert_int_eq(prompt_format_recognise(sp, strlen(sp)), PROMPT_FORMAT_AUTO);
    /* not JSON */
    check_write_file("tokenizer_config.json", "{\"chat_template\": ");
    ck_assert_int_eq(detect(&f, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    free(sp);
    free(t1);
    free(t8);
}
END_TEST

/* No tokenizer_config.json, or no chat_template in it: the 1B, with a note. */
START_TEST(missing_template_means_1b) {
    PromptFormat f;
    char err[512] = "", note[512] = "";
    ck_assert_int_eq(prompt_format_detect(check_tmpdir, &f, note, sizeof note, err, sizeof err), 1);
    ck_assert_int_eq(f, PROMPT_FORMAT_LG3_1B);
    ck_assert_ptr_nonnull(strstr(note, "not found"));
    check_write_file("tokenizer_config.json", "{\"bos_token\": \"<|begin_of_text|>\"}");
    ck_assert_int_eq(prompt_format_detect(check_tmpdir, &f, note, sizeof note, err, sizeof err), 1);
    ck_assert_int_eq(f, PROMPT_FORMAT_LG3_1B);
    ck_assert_ptr_nonnull(strstr(note, "no chat_template"));
}
END_TEST

/* ... unless config.json has the 8B's shape: then the 1B prompt would be a
 * known-wrong guess, and detection refuses, naming the way out. */
START_TEST(missing_template_with_8b_shape_refused) {
    char err[512] = "", note[512] = "";
    check_write_file("config.json", "{\"hidden_size\": 4096, \"num_hidden_layers\": 32}");
    PromptFormat f = PROMPT_FORMAT_AUTO;
    ck_assert_int_lt(prompt_format_detect(check_tmpdir, &f, note, sizeof note, err, sizeof err), 0);
    ck_assert_ptr_nonnull(strstr(err, "tokenizer_config.json not found"));
    ck_assert_ptr_nonnull(strstr(err, "model.prompt_format"));
    /* the 1B's shape: assumed, with a note */
    check_write_file("config.json", "{\"hidden_size\": 2048, \"num_hidden_layers\": 16}");
    ck_assert_int_eq(prompt_format_detect(check_tmpdir, &f, note, sizeof note, err, sizeof err), 1);
    ck_assert_int_eq(f, PROMPT_FORMAT_LG3_1B);
}
END_TEST

int main(void) {
    Suite *s = suite_create("prompt");
    TCase *tc = check_case(s, "render", 0);
    tcase_add_test(tc, ref_a_user_only);
    tcase_add_test(tc, ref_b_user_assistant);
    tcase_add_test(tc, ref_c_custom_categories);
    tcase_add_test(tc, ref_d_exclude_s6);
    tcase_add_test(tc, ref_e_string_content_is_kept);
    tcase_add_test(tc, multi_part_and_empty_parts);
    tcase_add_test(tc, role_override);
    tcase_add_test(tc, prefix_split);
    tcase_add_test(tc, strip_python_whitespace);
    tcase_add_test(tc, errors);
    tcase_add_test(tc, json_reader);
    tcase_add_test(tc, category_file_formats);
    TCase *t8 = check_case(s, "render_8b", 0);
    tcase_add_test(t8, ref8_a_user_only);
    tcase_add_test(t8, ref8_b_user_assistant);
    tcase_add_test(t8, layout_8b_and_split);
    tcase_add_test(t8, extensions_8b);
    tcase_add_test(t8, format_names_and_errors);
    TCase *tr = check_case(s, "recognition", 0);
    check_tmpdir_case(tr);
    tcase_add_test(tr, recognises_both_templates);
    tcase_add_test(tr, refuses_a_modified_template);
    tcase_add_test(tr, missing_template_means_1b);
    tcase_add_test(tr, missing_template_with_8b_shape_refused);
    return check_run(s);
}
