/* check_fixture.h - fixtures that several Check suites share. Header-only,
 * like check_main.h: each suite is one executable built from one file.
 *
 * A scratch directory per test, as a checked fixture: made in the test's
 * own process just before it runs, removed with everything in it just after,
 * also when the test fails (a directory made and removed inside the test
 * was left behind by a failing assertion):
 *
 *   tcase_add_checked_fixture(tc, check_tmpdir_setup, check_tmpdir_teardown);
 *
 * check_tmpdir is then its path, check_path("x") the path of x in it and
 * check_write_file("x", text) writes x there.
 *
 * check_classifier_open(&options) opens a classifier (the tiny fixture
 * model, usually), the test failing with classifier_open's error if it
 * cannot.
 */
#ifndef GUARDD_CHECK_FIXTURE_H
#define GUARDD_CHECK_FIXTURE_H
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include "classifier.h"

static char check_tmpdir[256];

static inline void check_tmpdir_setup(void) {
    snprintf(check_tmpdir, sizeof check_tmpdir, "/tmp/guardd-check.XXXXXX");
    ck_assert_msg(mkdtemp(check_tmpdir) != NULL, "cannot make a directory %s", check_tmpdir);
}

static inline void check_tmpdir_teardown(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", check_tmpdir);
    ck_assert_msg(system(cmd) == 0, "cannot remove %s", check_tmpdir);
}

/* check_tmpdir/name, in a static buffer that the next call overwrites. */
static inline const char *check_path(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", check_tmpdir, name);
    return path;
}

/* Writes text to check_tmpdir/name (replacing it); returns the path, in
 * check_path's buffer. */
static inline const char *check_write_file(const char *name, const char *text) {
    const char *path = check_path(name);
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    return path;
}

static inline Classifier *check_classifier_open(const ClassifierOptions *o) {
    char err[512];
    Classifier *c = classifier_open(o, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

#endif
