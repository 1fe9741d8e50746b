/* notify.h - guardd's side of the systemd service-manager protocol (sd_notify).
 *
 * Every function is a no-op when NOTIFY_SOCKET is unset (guardd run by hand or
 * in tests), so callers never need to check. Thread-safe.
 *
 * Order guardd is expected to follow:
 *   start:   notify_status("loading model"); ...; notify_ready();
 *   running: notify_watchdog() from a loop that proves progress (guardd: the
 *            inference thread, while the consumer loop comes round; as often as
 *            you like: it is rate-limited to one keep-alive per WATCHDOG_USEC/2);
 *   SIGHUP:  notify_reloading(); reload; notify_ready();
 *   stop:    notify_stopping(); drain; exit.
 */
#ifndef GUARDD_NOTIFY_H
#define GUARDD_NOTIFY_H

/* READY=1 (also after a reload finishes). */
void notify_ready(void);
/* STATUS=<printf text> (one line: newlines are replaced by spaces). */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* WATCHDOG=1 at most once per WATCHDOG_USEC/2; no-op when the watchdog is off. */
void notify_watchdog(void);
/* RELOADING=1 plus MONOTONIC_USEC=<now> (systemd >= 253 Type=notify-reload wants it). */
void notify_reloading(void);
/* STOPPING=1 */
void notify_stopping(void);
/* 1 when systemd asked for keep-alives (WATCHDOG_USEC set for this pid), else 0.
 * *usec (may be NULL) receives the interval. */
int notify_watchdog_enabled(unsigned long long *usec);
/* Forgets the last keep-alive, so that the next notify_watchdog() sends at
 * once, as the first one of a process does. For tests that run one after
 * another in one process (check_notify under CK_FORK=no); guardd has no use
 * for it. */
void notify_watchdog_reset(void);

#endif
