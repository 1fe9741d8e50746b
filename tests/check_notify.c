/* check_notify.c - the systemd notify wrappers (daemon/notify.c) against a
 * datagram socket this test owns, standing in for the service manager.
 *
 * Each test binds a fresh AF_UNIX SOCK_DGRAM socket, points NOTIFY_SOCKET at
 * it, drives notify_* and then drains every datagram that arrived (sd_notify's
 * sendmsg has completed when it returns, so no waiting is needed) and compares
 * them, in order, with what systemd must see.
 */
#include "check_main.h"
#include "check_fixture.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include "notify.h"

static int sock = -1;
static char path[512];

static void setup(void) {
    check_tmpdir_setup();
    snprintf(path, sizeof path, "%s", check_path("notify"));
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(sock, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    ck_assert_uint_lt(strlen(path), sizeof sa.sun_path);
    strcpy(sa.sun_path, path);
    ck_assert_int_eq(bind(sock, (struct sockaddr *)&sa, sizeof sa), 0);
    setenv("NOTIFY_SOCKET", path, 1);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    /* the rate limit's clock is process state: under CK_FORK=no a keep-alive
     * of an earlier test would silence this test's first one */
    notify_watchdog_reset();
}

static void teardown(void) {
    if (sock >= 0) close(sock);
    check_tmpdir_teardown();
}

/* Next pending datagram as a string, or NULL when none is queued. */
static char *next_msg(void) {
    static char buf[4096];
    ssize_t n = recv(sock, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n < 0) return NULL;
    buf[n] = 0;
    return buf;
}

static void expect(const char *want) {
    char *got = next_msg();
    ck_assert_msg(got != NULL, "expected \"%s\", no datagram", want);
    ck_assert_str_eq(got, want);
}

static void expect_none(void) {
    char *got = next_msg();
    ck_assert_msg(got == NULL, "unexpected datagram \"%s\"", got ? got : "");
}

static unsigned long long now_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
}

START_TEST(lifecycle_in_order) {
    setenv("WATCHDOG_USEC", "60000000", 1);
    notify_status("loading model %s", "tiny");
    notify_ready();
    notify_watchdog();
    unsigned long long before = now_usec();
    notify_reloading();
    unsigned long long after = now_usec();
    notify_ready();
    notify_stopping();

    expect("STATUS=loading model tiny");
    expect("READY=1");
    expect("WATCHDOG=1");
    char *r = next_msg();
    ck_assert_ptr_nonnull(r);
    unsigned long long mono = 0;
    ck_assert_msg(sscanf(r, "RELOADING=1\nMONOTONIC_USEC=%llu", &mono) == 1, "got \"%s\"", r);
    ck_assert_msg(mono >= before && mono <= after, "MONOTONIC_USEC %llu outside [%llu,%llu]",
                  mono, before, after);
    expect("READY=1");
    expect("STOPPING=1");
    expect_none();
}
END_TEST

START_TEST(status_is_one_line) {
    notify_status("a\nb\rc");
    expect("STATUS=a b c");
    expect_none();
}
END_TEST

START_TEST(watchdog_rate_limited) {
    /* 60 s period: three calls in a row are far inside one half-period. */
    setenv("WATCHDOG_USEC", "60000000", 1);
    notify_watchdog();
    notify_watchdog();
    notify_watchdog();
    expect("WATCHDOG=1");
    expect_none();
}
END_TEST

static void *hammer_watchdog(void *arg) {
    (void)arg;
    for (int i = 0; i < 2000; i++) notify_watchdog();
    return NULL;
}

START_TEST(watchdog_rate_limit_is_thread_safe) {
    /* Four threads racing inside one half-period: exactly one keep-alive. */
    setenv("WATCHDOG_USEC", "60000000", 1);
    pthread_t t[4];
    for (int i = 0; i < 4; i++) ck_assert_int_eq(pthread_create(&t[i], NULL, hammer_watchdog, NULL), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    expect("WATCHDOG=1");
    expect_none();
}
END_TEST

START_TEST(watchdog_sends_again_after_half_period) {
    /* 100 ms period; after sleeping more than 50 ms the next call must send.
     * (Only a lower bound on elapsed time is relied on, never an upper one.) */
    setenv("WATCHDOG_USEC", "100000", 1);
    notify_watchdog();
    usleep(80 * 1000);
    notify_watchdog();
    expect("WATCHDOG=1");
    expect("WATCHDOG=1");
    expect_none();
}
END_TEST

START_TEST(watchdog_off_without_usec) {
    unsigned long long u = 123;
    ck_assert_int_eq(notify_watchdog_enabled(&u), 0);
    ck_assert_uint_eq(u, 0);
    notify_watchdog();
    expect_none();
}
END_TEST

START_TEST(watchdog_enabled_reports_period) {
    setenv("WATCHDOG_USEC", "30000000", 1);
    unsigned long long u = 0;
    ck_assert_int_eq(notify_watchdog_enabled(&u), 1);
    ck_assert_uint_eq(u, 30000000ULL);
    ck_assert_int_eq(notify_watchdog_enabled(NULL), 1);
}
END_TEST

START_TEST(watchdog_for_other_pid_is_off) {
    /* systemd sets WATCHDOG_PID; a child that inherited the environment must
     * not send keep-alives on behalf of its parent. */
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_USEC", "30000000", 1);
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_int_eq(notify_watchdog_enabled(NULL), 0);
    notify_watchdog();
    expect_none();
}
END_TEST

START_TEST(bad_watchdog_usec_is_off) {
    setenv("WATCHDOG_USEC", "soon", 1);
    ck_assert_int_eq(notify_watchdog_enabled(NULL), 0);
    notify_watchdog();
    expect_none();
}
END_TEST

START_TEST(no_socket_is_harmless) {
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "60000000", 1);
    notify_ready();
    notify_status("x");
    notify_watchdog();
    notify_reloading();
    notify_stopping();
    expect_none();
}
END_TEST

int main(void) {
    Suite *s = suite_create("notify");
    TCase *tc = check_case(s, "notify", 0);
    tcase_add_unchecked_fixture(tc, check_tmpbase_setup, check_tmpbase_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lifecycle_in_order);
    tcase_add_test(tc, status_is_one_line);
    tcase_add_test(tc, watchdog_rate_limited);
    tcase_add_test(tc, watchdog_rate_limit_is_thread_safe);
    tcase_add_test(tc, watchdog_sends_again_after_half_period);
    tcase_add_test(tc, watchdog_off_without_usec);
    tcase_add_test(tc, watchdog_enabled_reports_period);
    tcase_add_test(tc, watchdog_for_other_pid_is_off);
    tcase_add_test(tc, bad_watchdog_usec_is_off);
    tcase_add_test(tc, no_socket_is_harmless);
    return check_run(s);
}
