/* check_http.c - the metrics HTTP endpoint (daemon/http.c) under abuse:
 * slow ("slowloris") clients must not lock out /healthz and /metrics.
 *
 * Loopback only, bounded count and time: 64 clients from 8 source addresses
 * (127.0.0.2-9, all loopback on Linux) each open a request and then trickle
 * one header line every 500 ms, never finishing it (faster than any idle
 * timeout). Meanwhile /healthz and /metrics, asked from 127.0.0.1 once a
 * second, must answer within 2 s every time, and every trickling connection
 * must be closed by the server within METRICS_HTTP_REQUEST_SECONDS (+ slack)
 * although it never went idle. 16 more trickle from 127.0.0.1, the probes'
 * own address. Per address at most METRICS_HTTP_PER_IP_LIMIT connections
 * stay open: each newer one shuts down the oldest.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include "check_main.h"
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "metrics.h"

#define N_ADDR 8
#define PER_ADDR 8
#define N_SAME 16     /* from 127.0.0.1, like the probes */
#define N_SLOW (N_ADDR * PER_ADDR + N_SAME)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A TCP connection to the server from 127.0.0.<last> (0: any). */
static int connect_from(int last) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(s, 0);
    if (last) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000000u | (unsigned)last);
        ck_assert_msg(bind(s, (struct sockaddr *)&src, sizeof src) == 0, "bind 127.0.0.%d: %s", last,
                      strerror(errno));
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_http_port())};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(s, (struct sockaddr *)&sa, sizeof sa) == 0, "connect: %s", strerror(errno));
    return s;
}

/* 1 when the peer closed s (EOF or reset), 0 while it is open. Never blocks. */
static int peer_closed(int s) {
    char b[256];
    for (;;) {
        ssize_t r = recv(s, b, sizeof b, MSG_DONTWAIT);
        if (r == 0) return 1;
        if (r < 0) return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
}

/* GET path from 127.0.0.1 with a 2 s budget; the status, or 0 on timeout. */
static int quick_get(const char *path, double *secs) {
    double t0 = now_s();
    int s = connect_from(0);
    char req[128], resp[4096];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
    ck_assert_int_eq(send(s, req, (size_t)n, MSG_NOSIGNAL), n);
    size_t len = 0;
    int status = 0;
    while (len < sizeof resp - 1) {
        int left_ms = (int)((t0 + 2.0 - now_s()) * 1000);
        struct pollfd pf = {.fd = s, .events = POLLIN};
        if (left_ms <= 0 || poll(&pf, 1, left_ms) <= 0) break;
        ssize_t r = recv(s, resp + len, sizeof resp - 1 - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
    }
    resp[len] = 0;
    close(s);
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1) status = 0;
    *secs = now_s() - t0;
    return status;
}

typedef struct {
    int fd[N_SLOW];
    double opened[N_SLOW], closed[N_SLOW]; /* closed: 0 while open */
    atomic_int stop;
} Slow;

static void *trickle(void *arg) {
    Slow *sl = arg;
    int line = 0;
    while (!atomic_load(&sl->stop)) {
        char h[64];
        int n = snprintf(h, sizeof h, "X-Slow-%d: still typing\r\n", line++);
        for (int i = 0; i < N_SLOW; i++) {
            if (sl->closed[i]) continue;
            if (peer_closed(sl->fd[i]) || send(sl->fd[i], h, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
                sl->closed[i] = now_s();
        }
        usleep(500 * 1000);
    }
    return NULL;
}

START_TEST(slow_clients_do_not_lock_out_health) {
    char err[256];
    metrics_init("m", "r");
    ck_assert_msg(metrics_http_start("127.0.0.1:0", err, sizeof err) == 0, "%s", err);
    static Slow sl;
    memset(&sl, 0, sizeof sl);
    static const char start[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < N_SLOW; i++) {
        sl.fd[i] = connect_from(i < N_ADDR * PER_ADDR ? 2 + i / PER_ADDR : 1);
        sl.opened[i] = now_s();
        ck_assert_int_eq(send(sl.fd[i], start, sizeof start - 1, MSG_NOSIGNAL), (ssize_t)(sizeof start - 1));
    }
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, trickle, &sl), 0);
    usleep(300 * 1000);
    /* probes for longer than the request budget, so the slow clients are
     * still trickling (or being cut) during all of them */
    int rounds = METRICS_HTTP_REQUEST_SECONDS + 3, bad = 0;
    double worst = 0;
    for (int r = 0; r < rounds; r++) {
        double secs;
        int st = quick_get(r % 2 ? "/metrics" : "/healthz", &secs);
        if (secs > worst) worst = secs;
        if (st != 200) {
            bad++;
            fprintf(stderr, "round %d: %s status %d after %.2f s\n", r, r % 2 ? "/metrics" : "/healthz", st, secs);
        }
        usleep(700 * 1000);
    }
    atomic_store(&sl.stop, 1);
    pthread_join(th, NULL);
    int open = 0;
    double longest = 0;
    for (int i = 0; i < N_SLOW; i++) {
        if (!sl.closed[i] && peer_closed(sl.fd[i])) sl.closed[i] = now_s();
        if (!sl.closed[i]) open++;
        else if (sl.closed[i] - sl.opened[i] > longest) longest = sl.closed[i] - sl.opened[i];
        close(sl.fd[i]);
    }
    fprintf(stderr, "slow clients: %d still open, longest lived %.2f s; worst probe %.2f s\n", open, longest,
            worst);
    ck_assert_msg(bad == 0, "%d of %d probes failed while slow clients trickled", bad, rounds);
    ck_assert_msg(open == 0, "%d trickling connections still open after %d s", open, rounds);
    ck_assert_msg(longest <= METRICS_HTTP_REQUEST_SECONDS + 1.5, "a trickling connection lived %.2f s", longest);
    metrics_http_stop();
}
END_TEST

START_TEST(connections_per_address_are_capped) {
    char err[256];
    metrics_init("m", "r");
    ck_assert_msg(metrics_http_start("127.0.0.1:0", err, sizeof err) == 0, "%s", err);
    enum { N = METRICS_HTTP_PER_IP_LIMIT + 4 };
    int fd[N];
    for (int i = 0; i < N; i++) fd[i] = connect_from(10);
    usleep(1000 * 1000);
    /* the oldest ones made room for the newer ones */
    for (int i = 0; i < N; i++)
        ck_assert_msg(peer_closed(fd[i]) == (i < N - METRICS_HTTP_PER_IP_LIMIT),
                      "connection %d of %d from one address: %s", i + 1, N, peer_closed(fd[i]) ? "closed" : "open");
    /* another address is still served */
    double secs;
    ck_assert_int_eq(quick_get("/healthz", &secs), 200);
    for (int i = 0; i < N; i++) close(fd[i]);
    metrics_http_stop();
}
END_TEST

int main(void) {
    Suite *s = suite_create("http");
    TCase *tc = check_case(s, "abuse", 60);
    tcase_add_test(tc, slow_clients_do_not_lock_out_health);
    tcase_add_test(tc, connections_per_address_are_capped);
    return check_run(s);
}
