/* check_main.h - what every Check suite's main() shares: skipping (exit 77,
 * which tests/run.sh reports as SKIP with the last line printed) when a
 * fixture is missing, creating test cases, and running the suite to the exit
 * status run.sh expects (0 passed, 1 failed). Header-only: each suite is one
 * executable built from one file.
 *
 *   int main(void) {
 *       if (!(model_dir = check_tiny_model())) return check_skip("no tiny model at $GUARDD_TINY_MODEL");
 *       Suite *s = suite_create("name");
 *       TCase *tc = check_case(s, "case", 240);
 *       tcase_add_test(tc, some_test);
 *       return check_run(s);
 *   }
 */
#ifndef GUARDD_CHECK_MAIN_H
#define GUARDD_CHECK_MAIN_H
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHECK_SKIPPED 77    /* the exit status run.sh (and automake) take as "skipped" */

/* Prints "skipped: why" and returns CHECK_SKIPPED, for `return check_skip(...)`. */
static inline int check_skip(const char *why) {
    printf("skipped: %s\n", why);
    return CHECK_SKIPPED;
}

/* $GUARDD_TINY_MODEL when it names a model directory (its config.json is
 * readable), else NULL. */
static inline const char *check_tiny_model(void) {
    const char *dir = getenv("GUARDD_TINY_MODEL");
    char probe[4096];
    if (!dir) return NULL;
    snprintf(probe, sizeof probe, "%s/config.json", dir);
    return access(probe, R_OK) == 0 ? dir : NULL;
}

/* $GUARDD_TOKENIZER when it names a readable file, else NULL. */
static inline const char *check_tokenizer(void) {
    const char *path = getenv("GUARDD_TOKENIZER");
    return path && access(path, R_OK) == 0 ? path : NULL;
}

/* A test case named name, added to s; timeout_s > 0 sets its timeout
 * (otherwise Check's default, CK_DEFAULT_TIMEOUT). */
static inline TCase *check_case(Suite *s, const char *name, int timeout_s) {
    TCase *tc = tcase_create(name);
    if (timeout_s > 0) tcase_set_timeout(tc, timeout_s);
    suite_add_tcase(s, tc);
    return tc;
}

/* Runs every case of s (CK_RUN_CASE / CK_RUN_SUITE select as usual), frees
 * the runner and returns main's exit status: 0 when all passed, else 1. */
static inline int check_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
