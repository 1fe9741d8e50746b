/* check_verdict.c - Llama Guard output parsing and the first-token decision
 * (model/verdict.c). A table of generated texts with the verdict each must
 * give, written by hand from the output format in the model card. */
#include "check_main.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "prompt.h"
#include "verdict.h"

typedef struct {
    const char *text;
    int unsafe, parse_error, n_codes;
    const char *codes; /* comma-joined expected codes */
} Row;

static const Row rows[] = {
    {"safe", 0, 0, 0, ""},
    {"safe\n", 0, 0, 0, ""},
    {"  safe \r\n\t", 0, 0, 0, ""},
    {"unsafe\nS1", 1, 0, 1, "S1"},
    {"unsafe\nS1,S10", 1, 0, 2, "S1,S10"},
    {"unsafe\nS2,S9,S13", 1, 0, 3, "S2,S9,S13"},
    {"unsafe\nS1, S10 \n", 1, 0, 2, "S1,S10"},
    {"unsafe\r\nS3", 1, 0, 1, "S3"},
    {"unsafe\nS1,S1", 1, 0, 1, "S1"},              /* duplicates folded */
    {"unsafe\nS14", 1, 1, 1, "S14"},               /* not in the active list */
    {"unsafe\nS1,S99", 1, 1, 2, "S1,S99"},
    {"unsafe\nS6", 1, 1, 1, "S6"},                 /* excluded below -> unknown */
    {"unsafe", 1, 1, 0, ""},                       /* no code line */
    {"unsafe\n", 1, 1, 0, ""},
    {"unsafe S1", 1, 1, 0, ""},                    /* codes not on a new line */
    {"unsafely\nS1", 1, 1, 0, ""},
    {"unsafe\nS1,", 1, 1, 1, "S1"},
    {"unsafe\nS1,,S2", 1, 1, 2, "S1,S2"},
    {"unsafe\nS1\nS2", 1, 1, 1, "S1"},             /* second line */
    {"", 1, 1, 0, ""},
    {"   \n", 1, 1, 0, ""},
    {"Safe", 1, 1, 0, ""},
    {"SAFE", 1, 1, 0, ""},
    {"safe\nS1", 1, 1, 0, ""},
    {"safety first", 1, 1, 0, ""},
    {"I cannot help with that.", 1, 1, 0, ""},
    {"\xff\xfe garbage", 1, 1, 0, ""},
};

START_TEST(parse_table) {
    CategoryList active = {0};
    for (int i = 1; i <= 13; i++) {
        char code[8], name[32];
        snprintf(code, sizeof code, "S%d", i);
        snprintf(name, sizeof name, "Name %d.", i);
        if (i != 6) categories_add(&active, code, name);
    }
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        Verdict v;
        verdict_parse(rows[r].text, &active, &v);
        ck_assert_msg(v.unsafe == rows[r].unsafe && v.parse_error == rows[r].parse_error &&
                      v.n_codes == rows[r].n_codes,
                      "row %zu '%s': unsafe %d parse_error %d n %d", r, rows[r].text, v.unsafe,
                      v.parse_error, v.n_codes);
        char joined[256] = "";
        for (int i = 0; i < v.n_codes; i++) {
            if (i) strcat(joined, ",");
            strcat(joined, v.codes[i]);
            int known = strcmp(v.codes[i], "S14") && strcmp(v.codes[i], "S99") && strcmp(v.codes[i], "S6");
            ck_assert_msg(known ? v.names[i] != NULL : v.names[i] == NULL, "row %zu code %s name", r, v.codes[i]);
        }
        ck_assert_msg(!strcmp(joined, rows[r].codes), "row %zu: codes '%s'", r, joined);
        verdict_free(&v);
    }
    Verdict v;
    verdict_parse("unsafe\nS10", &active, &v);
    ck_assert_str_eq(v.names[0], "Name 10.");
    verdict_free(&v);
    verdict_parse(NULL, NULL, &v); /* no text, no list: still unsafe */
    ck_assert_int_eq(v.unsafe, 1);
    ck_assert_int_eq(v.parse_error, 1);
    verdict_free(&v);
    verdict_parse("unsafe\nS1", NULL, &v);
    ck_assert_int_eq(v.parse_error, 1);
    ck_assert_ptr_null(v.names[0]);
    verdict_free(&v);
    categories_free(&active);
}
END_TEST

START_TEST(too_many_codes) {
    char text[2048] = "unsafe\n";
    CategoryList active = {0};
    for (int i = 0; i < VERDICT_MAX_CODES + 10; i++) {
        char code[16];
        snprintf(code, sizeof code, "C%d", i);
        categories_add(&active, code, "x");
        strcat(text, code);
        strcat(text, ",");
    }
    text[strlen(text) - 1] = 0;
    Verdict v;
    verdict_parse(text, &active, &v);
    ck_assert_int_eq(v.n_codes, VERDICT_MAX_CODES);
    ck_assert_int_eq(v.parse_error, 1);
    ck_assert_int_eq(v.unsafe, 1);
    verdict_free(&v);
    categories_free(&active);
}
END_TEST

START_TEST(decide) {
    enum { SAFE = 19193, UNSAFE = 39257 };
    ck_assert_int_eq(verdict_decide(0.2f, -1, SAFE, SAFE, UNSAFE), FIRST_SAFE);
    ck_assert_int_eq(verdict_decide(0.9f, -1, UNSAFE, SAFE, UNSAFE), FIRST_UNSAFE);
    ck_assert_int_eq(verdict_decide(0.0f, -1, 42, SAFE, UNSAFE), FIRST_OTHER);
    ck_assert_int_eq(verdict_decide(0.5f, 0.5f, SAFE, SAFE, UNSAFE), FIRST_UNSAFE); /* >= */
    ck_assert_int_eq(verdict_decide(0.49f, 0.5f, UNSAFE, SAFE, UNSAFE), FIRST_SAFE);
    ck_assert_int_eq(verdict_decide(0.0f, 0.0f, SAFE, SAFE, UNSAFE), FIRST_UNSAFE); /* 0 forces */
    ck_assert_int_eq(verdict_decide(1e-9f, 0.0f, 42, SAFE, UNSAFE), FIRST_UNSAFE);
}
END_TEST

START_TEST(draft) {
    const int d[3] = {39257, 198, 50};
    const int all[3] = {198, 50, 16}, none[3] = {11, 50, 16}, half[3] = {198, 7, 16};
    ck_assert_int_eq(draft_accept(d, all, 3), 3);  /* next token: pred[2] = "1" */
    ck_assert_int_eq(draft_accept(d, none, 3), 1); /* only "unsafe"; next pred[0] */
    ck_assert_int_eq(draft_accept(d, half, 3), 2); /* "unsafe" "\n"; next pred[1] */
    ck_assert_int_eq(draft_accept(d, all, 1), 1);
}
END_TEST

START_TEST(softmax) {
    float l[4] = {1000.0f, 1000.0f, -1000.0f, 999.0f}; /* large values: no overflow */
    double lse = logits_logsumexp(l, 4);
    double e = exp(-1.0), total = 2 + e;
    ck_assert_double_eq_tol(logits_prob(l, 4, lse, 0), 1 / total, 1e-6);
    ck_assert_double_eq_tol(logits_prob(l, 4, lse, 3), e / total, 1e-6);
    ck_assert_double_eq_tol(logits_prob(l, 4, lse, 2), 0.0, 1e-12);
    ck_assert_double_eq(logits_prob(l, 4, lse, 7), 0.0);
    ck_assert_int_eq(logits_argmax(l, 4), 0);
    float n[3] = {NAN, 1.0f, 2.0f};
    ck_assert_int_eq(logits_argmax(n, 3), 2);
}
END_TEST

/* With the 8B's default list S14 is a known code; with the 1B's it is not. */
START_TEST(s14_with_the_8b_list) {
    Verdict v;
    verdict_parse("unsafe\nS2,S14", prompt_default_categories(PROMPT_FORMAT_LG3_8B), &v);
    ck_assert_int_eq(v.unsafe, 1);
    ck_assert_int_eq(v.parse_error, 0);
    ck_assert_int_eq(v.n_codes, 2);
    ck_assert_str_eq(v.codes[1], "S14");
    ck_assert_str_eq(v.names[1], "Code Interpreter Abuse.");
    verdict_free(&v);
    verdict_parse("unsafe\nS14", prompt_default_categories(PROMPT_FORMAT_LG3_1B), &v);
    ck_assert_int_eq(v.parse_error, 1);
    ck_assert_ptr_null(v.names[0]);
    verdict_free(&v);
}
END_TEST

int main(void) {
    Suite *s = suite_create("verdict");
    TCase *tc = check_case(s, "verdict", 0);
    tcase_add_test(tc, parse_table);
    tcase_add_test(tc, s14_with_the_8b_list);
    tcase_add_test(tc, too_many_codes);
    tcase_add_test(tc, decide);
    tcase_add_test(tc, draft);
    tcase_add_test(tc, softmax);
    return check_run(s);
}
