/* log.h - guardd's structured logging: one "key=value ..." line per call on
 * stderr, e.g.  log_msg(LOG_INFO, "event=batch size=%d", n)
 *
 * Each line is written with a single write(2) under a lock, so lines from
 * different threads never interleave. The level can be changed at any time
 * (config reload) from any thread. Under systemd (JOURNAL_STREAM set) lines
 * carry a "<N>" syslog priority prefix instead of a timestamp, so journald
 * records the right priority and its own time; otherwise each line starts
 * with "ts=... level=...".
 */
#ifndef GUARDD_LOG_H
#define GUARDD_LOG_H
#include <stddef.h>
#include "settings.h"   /* LogLevel */

void log_set_level(LogLevel level);
LogLevel log_get_level(void);
int log_enabled(LogLevel level);
/* "error" | "warn" | "info" | "debug" -> level; returns 0, or -1 if unknown. */
int log_level_parse(const char *name, LogLevel *out);
const char *log_level_name(LogLevel level);

/* Formats one line (printf-style; the text should be key=value pairs) and
 * writes it if level is enabled. A trailing newline is added. */
void log_msg(LogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Renders s as a value safe inside a key=value line: unchanged if it has no
 * space, quote, '=' or control byte, else double-quoted with \" \\ \n \t and
 * \xNN escapes. Truncated to fit buf (which it returns). */
const char *log_quote(const char *s, char *buf, size_t buflen);

/* Redirects output (tests); fd < 0 restores stderr. The journal prefix mode is
 * re-evaluated from the environment. */
void log_set_fd(int fd);

#endif
