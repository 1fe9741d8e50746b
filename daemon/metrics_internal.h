/* metrics_internal.h - helpers shared by metrics.c and http.c (and their
 * tests); not part of the public metrics.h contract. */
#ifndef GUARDD_METRICS_INTERNAL_H
#define GUARDD_METRICS_INTERNAL_H
#include <stddef.h>

/* Copies in to out as a safe label value: invalid UTF-8 bytes become '?',
 * at most 128 bytes (whole characters), NULL/"" become "unknown". */
void metrics_clean_label(const char *in, char *out, size_t outlen);
/* Shortest exact decimal text of v; NaN, +Inf, -Inf as Prometheus spells them. */
void metrics_format_double(double v, char *out, size_t len);
int metrics_model_loaded(void);
int metrics_group_joined(void);
/* Splits "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" (host defaults to
 * 127.0.0.1). Returns 0, or -1 with err set. */
int metrics_parse_listen(const char *listen, char *host, size_t hostlen, int *port,
                         char *err, size_t errlen);
#endif
