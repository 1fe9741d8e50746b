/* metrics.h - guardd's Prometheus metrics registry and HTTP endpoint.
 *
 * Recording functions are thread-safe and cheap (atomic adds or a short lock);
 * the HTTP server (libmicrohttpd) renders the text exposition format on
 * /metrics and answers /healthz and /readyz.
 */
#ifndef GUARDD_METRICS_H
#define GUARDD_METRICS_H
#include <stdint.h>

void metrics_init(const char *model_name, const char *model_revision);
/* Adds precision="..." and kernels="..." to guardd_model_info (weights.h). */
void metrics_set_model_precision(const char *precision, const char *kernels);
/* listen "HOST:PORT" (default host 127.0.0.1); returns 0 or -1 with err.
 * Abuse limits (slow or many clients must not lock out /healthz):
 *   METRICS_HTTP_REQUEST_SECONDS  total time a connection gets for one request
 *       and its response, from its opening or from the previous response on a
 *       kept-alive connection (not an idle timeout: a client trickling bytes
 *       is cut all the same);
 *   METRICS_HTTP_PER_IP_LIMIT     connections at once from one address (a
 *       new one shuts down the address's oldest, so a quick probe still gets
 *       in from an address a slow client uses);
 *   METRICS_HTTP_CONNECTIONS      connections at once in all. */
#define METRICS_HTTP_REQUEST_SECONDS 5
#define METRICS_HTTP_PER_IP_LIMIT 8
#define METRICS_HTTP_CONNECTIONS 256
int metrics_http_start(const char *listen, char *err, unsigned long errlen);
int metrics_http_port(void);        /* actual port (for listen ":0") */
void metrics_http_stop(void);

void metrics_event_consumed(const char *topic);
void metrics_verdict(int unsafe);
void metrics_category(const char *code);
void metrics_dlq(const char *reason);
void metrics_tokens(long prefill, long cached_prefix, long decode);
/* The prefix cache's state after a batch: bytes held, evictions since start
 * (its token hits/misses are the cached_prefix/prefill counts above). */
void metrics_prefix_cache(unsigned long long bytes, unsigned long long evictions);
void metrics_kafka_error(const char *kind);
void metrics_batch(int size, double inference_seconds);
void metrics_end_to_end(double seconds);
void metrics_queue_wait(double seconds);
void metrics_queue_depth(int depth);
void metrics_paused_partitions(int n);
/* librdkafka statistics JSON (stats_cb): consumer lag per partition */
void metrics_kafka_stats(const char *json);
void metrics_set_model_loaded(int loaded);
void metrics_set_group_joined(int joined);
/* Output topics (allow, deny, DLQ) whose records cannot be delivered now;
 * guardd is not ready while any is. */
void metrics_set_outputs_failing(int n);
/* Input partitions with work that stopped making progress, and whether the
 * engine is stuck on one batch (stall.h); detail names them (one line, no
 * newline). guardd is not ready while either is. */
void metrics_set_stalled(int partitions, int engine_stuck, const char *detail);
/* Whether the consumer thread's loop has stopped coming round (health.c);
 * not ready while it has. The /readyz text comes from metrics_set_stalled's
 * detail, which then says so too: set this after the detail that names the
 * consumer, clear it before the detail that no longer does. */
void metrics_set_consumer_stalled(int stalled);
int metrics_ready(void);
/* Why metrics_ready() is 0, as one line for /readyz ("not ready: ...\n"),
 * written to buf (len bytes, cut to fit); returns buf. */
const char *metrics_not_ready_reason(char *buf, unsigned long len);

/* the exposition text (malloc'd), for tests and STATUS= lines */
char *metrics_render(void);

#endif
