/* http.c - guardd's small HTTP endpoint (libmicrohttpd): /metrics (Prometheus
 * text format 0.0.4), /healthz (the process answers), /readyz (model loaded,
 * consumer group joined and output topics taking records, else 503).
 *
 * MHD runs its own polling thread; handlers only read the metrics registry,
 * which is thread-safe. It binds to 127.0.0.1 unless told otherwise: the
 * metrics reveal topic names and traffic volumes, so exposing them is a
 * deliberate configuration choice.
 *
 * Slow clients must not lock out /healthz (an orchestrator would restart a
 * healthy daemon): connections are capped per address and in all, and each
 * request has a total time budget (metrics.h). MHD only has idle timeouts, so
 * a client trickling a header line every few seconds would hold its slot
 * forever; instead every connection is tracked (open/close notifications)
 * with a deadline, moved on when a response completes, and a reaper thread
 * shuts down the socket of any connection past it: MHD then reads EOF and
 * closes the connection itself, freeing its slot. The list lock is also taken
 * by the close notification, which runs before MHD closes the descriptor, so
 * the reaper never touches a descriptor that is closed or reused.
 *
 * The per-address cap makes room rather than refusing: a new connection from
 * an address that already has METRICS_HTTP_PER_IP_LIMIT open shuts down that
 * address's oldest one. A probe (which completes in milliseconds) therefore
 * gets in even from the address a slow client uses, and one address can hold
 * at most that many slots.
 */
#include "metrics.h"
#include "metrics_internal.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <microhttpd.h>

static struct MHD_Daemon *daemon_h;
static int bound_port;

/* ---- per-connection deadlines ---- */

typedef struct Conn {
    struct Conn *prev, *next;   /* newest first */
    int fd;
    int cut;            /* shut down once already */
    double deadline;    /* CLOCK_MONOTONIC seconds */
    int family;         /* client address: AF_INET (4 bytes) or AF_INET6 (16), else 0 */
    unsigned char addr[16];
} Conn;

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reaper_cv = PTHREAD_COND_INITIALIZER;
static Conn *conns;
static int reaper_stop, reaper_running;
static pthread_t reaper_th;

#define REAPER_TICK_MS 100

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void client_address(struct MHD_Connection *c, Conn *k) {
    const union MHD_ConnectionInfo *ai = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ai ? ai->client_addr : NULL;
    if (sa && sa->sa_family == AF_INET) {
        k->family = AF_INET;
        memcpy(k->addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        k->family = AF_INET6;
        memcpy(k->addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    }
}

static int same_address(const Conn *a, const Conn *b) {
    return a->family && a->family == b->family &&
           !memcmp(a->addr, b->addr, a->family == AF_INET ? 4 : 16);
}

/* Under conns_mu, k not yet listed: if its address already has the limit of
 * live connections, shut down the oldest of them. */
static void make_room_for(const Conn *k) {
    Conn *oldest = NULL;
    int live = 0;
    for (Conn *o = conns; o; o = o->next)
        if (!o->cut && same_address(o, k)) {
            live++;
            oldest = o;
        }
    if (live >= METRICS_HTTP_PER_IP_LIMIT) {
        shutdown(oldest->fd, SHUT_RDWR);
        oldest->cut = 1;
    }
}

static void on_connection(void *cls, struct MHD_Connection *c, void **sock_ctx,
                          enum MHD_ConnectionNotificationCode what) {
    (void)cls;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        Conn *k = fi ? calloc(1, sizeof *k) : NULL;
        if (!k) {   /* untracked: only MHD's idle timeout applies to it */
            *sock_ctx = NULL;
            return;
        }
        k->fd = fi->connect_fd;
        k->deadline = mono_s() + METRICS_HTTP_REQUEST_SECONDS;
        client_address(c, k);
        pthread_mutex_lock(&conns_mu);
        make_room_for(k);
        k->next = conns;
        if (conns) conns->prev = k;
        conns = k;
        pthread_mutex_unlock(&conns_mu);
        *sock_ctx = k;
    } else if (*sock_ctx) {     /* closed */
        Conn *k = *sock_ctx;
        pthread_mutex_lock(&conns_mu);
        if (k->prev) k->prev->next = k->next;
        else conns = k->next;
        if (k->next) k->next->prev = k->prev;
        pthread_mutex_unlock(&conns_mu);
        free(k);
        *sock_ctx = NULL;
    }
}

/* A response went out: the next request on this connection gets a full budget. */
static void on_completed(void *cls, struct MHD_Connection *c, void **req_ctx,
                         enum MHD_RequestTerminationCode why) {
    (void)cls; (void)req_ctx; (void)why;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (!ci || !ci->socket_context) return;
    Conn *k = ci->socket_context;
    pthread_mutex_lock(&conns_mu);
    k->deadline = mono_s() + METRICS_HTTP_REQUEST_SECONDS;
    pthread_mutex_unlock(&conns_mu);
}

static void *reaper(void *arg) {
    (void)arg;
    pthread_mutex_lock(&conns_mu);
    while (!reaper_stop) {
        double now = mono_s();
        for (Conn *k = conns; k; k = k->next)
            if (!k->cut && now >= k->deadline) {
                shutdown(k->fd, SHUT_RDWR);
                k->cut = 1;
            }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += REAPER_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&reaper_cv, &conns_mu, &until);
    }
    pthread_mutex_unlock(&conns_mu);
    return NULL;
}

static int reaper_start(void) {
    reaper_stop = 0;
    reaper_running = pthread_create(&reaper_th, NULL, reaper, NULL) == 0;
    return reaper_running ? 0 : -1;
}

static void reaper_end(void) {
    if (!reaper_running) return;
    pthread_mutex_lock(&conns_mu);
    reaper_stop = 1;
    pthread_cond_signal(&reaper_cv);
    pthread_mutex_unlock(&conns_mu);
    pthread_join(reaper_th, NULL);
    reaper_running = 0;
}

int metrics_parse_listen(const char *listen, char *host, size_t hostlen, int *port,
                         char *err, size_t errlen) {
    const char *portstr;
    size_t hl;
    if (!listen || !*listen) { snprintf(err, errlen, "empty listen address"); return -1; }
    if (listen[0] == '[') {                     /* [v6]:port */
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "'%s': expected [ADDRESS]:PORT", listen);
            return -1;
        }
        hl = (size_t)(close - listen - 1);
        if (hl == 0 || hl >= hostlen) { snprintf(err, errlen, "'%s': bad address", listen); return -1; }
        memcpy(host, listen + 1, hl);
        host[hl] = 0;
        portstr = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (colon && strchr(listen, ':') != colon) {
            snprintf(err, errlen, "'%s': write IPv6 addresses as [ADDRESS]:PORT", listen);
            return -1;
        }
        hl = colon ? (size_t)(colon - listen) : 0;
        if (hl >= hostlen) { snprintf(err, errlen, "'%s': host name too long", listen); return -1; }
        if (hl == 0) snprintf(host, hostlen, "127.0.0.1");
        else { memcpy(host, listen, hl); host[hl] = 0; }
        portstr = colon ? colon + 1 : listen;
    }
    char *end;
    errno = 0;
    long p = strtol(portstr, &end, 10);
    if (!*portstr || *end || errno || p < 0 || p > 65535 || *portstr == '-' || *portstr == '+') {
        snprintf(err, errlen, "'%s': port must be a number 0-65535", listen);
        return -1;
    }
    *port = (int)p;
    return 0;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             char *body, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

#define TEXT "text/plain; charset=utf-8"

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_len, void **state) {
    (void)cls; (void)version; (void)upload; (void)state;
    if (strcmp(method, "GET") && strcmp(method, "HEAD"))
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, TEXT, "method not allowed\n", MHD_RESPMEM_PERSISTENT);
    if (*upload_len) return MHD_NO; /* GET with a body: drop the connection */
    if (!strcmp(url, "/metrics")) {
        char *text = metrics_render();
        if (!text)
            return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, TEXT, "out of memory\n", MHD_RESPMEM_PERSISTENT);
        return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, MHD_RESPMEM_MUST_FREE);
    }
    if (!strcmp(url, "/healthz"))
        return reply(c, MHD_HTTP_OK, TEXT, "ok\n", MHD_RESPMEM_PERSISTENT);
    if (!strcmp(url, "/readyz")) {
        if (metrics_ready()) return reply(c, MHD_HTTP_OK, TEXT, "ready\n", MHD_RESPMEM_PERSISTENT);
        char why[512];
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT, (char *)metrics_not_ready_reason(why, sizeof why),
                     MHD_RESPMEM_MUST_COPY);
    }
    return reply(c, MHD_HTTP_NOT_FOUND, TEXT, "not found (try /metrics, /healthz, /readyz)\n",
                 MHD_RESPMEM_PERSISTENT);
}

int metrics_http_start(const char *listen, char *err, unsigned long errlen) {
    char host[256], portstr[8];
    int port;
    if (daemon_h) { snprintf(err, errlen, "metrics: HTTP server already running"); return -1; }
    if (metrics_parse_listen(listen, host, sizeof host, &port, err, errlen) != 0) return -1;
    snprintf(portstr, sizeof portstr, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE}, *ai = NULL;
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "metrics: cannot resolve '%s': %s", host, gai_strerror(gai));
        return -1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_TURBO;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    if (reaper_start() < 0) {
        freeaddrinfo(ai);
        snprintf(err, errlen, "metrics: cannot start a thread");
        return -1;
    }
    errno = 0;
    daemon_h = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, NULL,
                                MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_HTTP_CONNECTIONS,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_HTTP_REQUEST_SECONDS,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
                                MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                MHD_OPTION_END);
    int e = errno;
    freeaddrinfo(ai);
    if (!daemon_h) {
        reaper_end();
        snprintf(err, errlen, "metrics: cannot listen on %s: %s", listen,
                 e ? strerror(e) : "libmicrohttpd failed to start");
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_h, MHD_DAEMON_INFO_BIND_PORT);
    bound_port = info ? info->port : port;
    return 0;
}

int metrics_http_port(void) { return daemon_h ? bound_port : 0; }

void metrics_http_stop(void) {
    if (!daemon_h) return;
    reaper_end();
    MHD_stop_daemon(daemon_h);  /* closes (and untracks) every connection */
    daemon_h = NULL;
    bound_port = 0;
}
