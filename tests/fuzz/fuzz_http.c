/* fuzz_http.c - libFuzzer harness for guardd's HTTP endpoint (daemon/http.c):
 * raw bytes sent to the real server over loopback.
 *
 * Why a loopback server rather than calling the handler: the handler gets a
 * struct MHD_Connection from libmicrohttpd and answers through it, so it
 * cannot run without the library, and the code that faces the network is the
 * library's request parsing plus our dispatch together. LLVMFuzzerInitialize
 * starts the endpoint exactly as guardd does (metrics_http_start on
 * 127.0.0.1, port 0 = any free port); each input is one TCP connection: the
 * bytes are written, the write side is shut (so the server never waits for
 * more), and the reply is read to the end. Coverage feedback comes from our
 * instrumented code (handler, /metrics rendering); the Debian libmicrohttpd is
 * not instrumented, but it runs in this process under ASan/UBSan's
 * interceptors, with our handler on its thread.
 *
 * Input: byte 0 sets the readiness state the handler reports (bit 0 model
 * loaded, bit 1 group joined); the rest is the request. Properties: whatever
 * the server sends starts as an HTTP/1.x status line, and it keeps serving
 * /healthz (checked every 64 inputs, must answer within 20 s). A connection
 * the server has not closed within 2 s is reset by the client: libmicrohttpd
 * can keep a half-closed connection with an incomplete request until its
 * deadline (see exchange()), which would only slow the fuzzer down.
 */
#include "fuzz_common.h"
#include "metrics.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static int port;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    char err[256];
    metrics_init("fuzz-model", "0123456789abcdef");
    metrics_event_consumed("conversations");
    metrics_dlq("bad_msgpack");
    metrics_batch(4, 0.5);
    if (metrics_http_start("127.0.0.1:0", err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_http: %s\n", err);
        abort();
    }
    port = metrics_http_port();
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One connection: sends req, returns the number of reply bytes (first bytes
 * in head); -1 if the server neither closed nor finished within wait_s. */
static long exchange(const uint8_t *req, size_t len, char *head, size_t headlen, double wait_s) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    FUZZ_ASSERT(s >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    FUZZ_ASSERT(connect(s, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s", strerror(errno));
    size_t off = 0;
    while (off < len) {   /* the server may close early (e.g. 405 then close): stop writing then */
        ssize_t n = send(s, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += (size_t)n;
    }
    /* Let the server read the request before the FIN arrives: libmicrohttpd
     * (edge-triggered epoll) misses a FIN that lands before its read of an
     * incomplete request, and then holds the connection until the reaper's
     * deadline (METRICS_HTTP_REQUEST_SECONDS). */
    struct pollfd first = {.fd = s, .events = POLLIN};
    poll(&first, 1, 10);
    shutdown(s, SHUT_WR);
    size_t got = 0;
    double deadline = now() + wait_s;
    char buf[16384];
    int closed = 0;
    while (!closed) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        double left = deadline - now();
        if (left <= 0) break;
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n <= 0) { closed = 1; break; }   /* closed (or reset) */
        if (got < headlen) memcpy(head + got, buf, (size_t)n < headlen - got ? (size_t)n : headlen - got);
        got += (size_t)n;
    }
    struct linger lg = {1, 0};   /* reset: no TIME_WAIT pile-up over millions of connections */
    setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(s);
    return closed || got ? (long)got : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return -1;
    metrics_set_model_loaded(data[0] & 1);
    metrics_set_group_joined(data[0] & 2);
    char head[16] = {0};
    long got = exchange(data + 1, size - 1, head, sizeof head, 2);
    if (got > 0)
        FUZZ_ASSERT(got >= 9 && !memcmp(head, "HTTP/1.", 7), "reply does not start with a status line");
    static unsigned runs;
    if (++runs % 64 == 0) {   /* still healthy after whatever came before */
        static const char health[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        memset(head, 0, sizeof head);
        got = exchange((const uint8_t *)health, sizeof health - 1, head, sizeof head, 20);
        FUZZ_ASSERT(got >= 12 && !memcmp(head + 9, "200", 3), "/healthz does not answer 200 within 20 s");
    }
    return 0;
}
