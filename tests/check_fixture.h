/* check_fixture.h - fixtures that several Check suites share. Header-only,
 * like check_main.h: each suite is one executable built from one file.
 *
 * A scratch directory per test, check_tmpdir: check_tmpdir_case(tc) gives
 * every test of tc one, made just before the test and removed with
 * everything in it just after. Check ends a failing test's process at the
 * failing assertion, without its teardown, so the directories live inside
 * one per test case (check_tmpbase), which the runner's own process makes
 * before the case and removes after it, whatever its tests did. A suite with
 * a setup of its own calls check_tmpdir_setup/_teardown from it and adds
 * check_tmpbase_setup/_teardown as the case's unchecked fixture.
 * check_path("x") is the path of x in check_tmpdir, check_write_file("x",
 * text) writes x there.
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

static char check_tmpbase[256], check_tmpdir[300];

static inline void check_rm_rf(const char *dir) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_msg(system(cmd) == 0, "cannot remove %s", dir);
}

/* Unchecked fixture: the test case's directory of scratch directories. */
static inline void check_tmpbase_setup(void) {
    snprintf(check_tmpbase, sizeof check_tmpbase, "/tmp/guardd-check.XXXXXX");
    ck_assert_msg(mkdtemp(check_tmpbase) != NULL, "cannot make a directory %s", check_tmpbase);
}

static inline void check_tmpbase_teardown(void) { check_rm_rf(check_tmpbase); }

/* Checked fixture: this test's scratch directory, inside check_tmpbase. */
static inline void check_tmpdir_setup(void) {
    ck_assert_msg(check_tmpbase[0], "check_tmpbase_setup is not the case's unchecked fixture");
    snprintf(check_tmpdir, sizeof check_tmpdir, "%s/test.XXXXXX", check_tmpbase);
    ck_assert_msg(mkdtemp(check_tmpdir) != NULL, "cannot make a directory %s", check_tmpdir);
}

static inline void check_tmpdir_teardown(void) { check_rm_rf(check_tmpdir); }

static inline void check_tmpdir_case(TCase *tc) {
    tcase_add_unchecked_fixture(tc, check_tmpbase_setup, check_tmpbase_teardown);
    tcase_add_checked_fixture(tc, check_tmpdir_setup, check_tmpdir_teardown);
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
