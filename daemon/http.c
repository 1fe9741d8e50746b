/* http.c - guardd's small HTTP endpoint (libmicrohttpd): /metrics (Prometheus
 * text format 0.0.4), /healthz (the process answers), /readyz (model loaded
 * and consumer group joined, else 503).
 *
 * MHD runs its own polling thread; handlers only read the metrics registry,
 * which is thread-safe. It binds to 127.0.0.1 unless told otherwise: the
 * metrics reveal topic names and traffic volumes, so exposing them is a
 * deliberate configuration choice. Connections are limited and time out so a
 * slow client cannot pin resources.
 */
#include "metrics.h"
#include "metrics_internal.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <microhttpd.h>

static struct MHD_Daemon *daemon_h;
static int bound_port;

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
        static const char *why[2][2] = {
            {"not ready: model not loaded, consumer group not joined\n", "not ready: model not loaded\n"},
            {"not ready: consumer group not joined\n", "not ready\n"}};
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT,
                     (char *)why[metrics_model_loaded()][metrics_group_joined()], MHD_RESPMEM_PERSISTENT);
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
    errno = 0;
    daemon_h = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, handle, NULL,
                                MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                MHD_OPTION_CONNECTION_LIMIT, 64u,
                                MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)65536,
                                MHD_OPTION_END);
    int e = errno;
    freeaddrinfo(ai);
    if (!daemon_h) {
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
    MHD_stop_daemon(daemon_h);
    daemon_h = NULL;
    bound_port = 0;
}
