/* notify.c - thin wrappers over libsystemd's sd_notify() for guardd.
 *
 * sd_notify() itself returns 0 without doing anything when NOTIFY_SOCKET is
 * unset, so these functions are safe to call unconditionally. The only state
 * kept here is the time of the last watchdog keep-alive, so that the daemon can
 * call notify_watchdog() from a busy loop without flooding the manager: one
 * datagram per half watchdog period is what sd_watchdog_enabled(3) recommends.
 */
#include "notify.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <systemd/sd-daemon.h>

/* Monotonic clock in microseconds: the clock systemd uses for MONOTONIC_USEC. */
static unsigned long long mono_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
}

void notify_ready(void) {
    sd_notify(0, "READY=1");
}

void notify_status(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* A newline would start a new assignment in the datagram: keep STATUS one line. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    sd_notifyf(0, "STATUS=%s", line);
}

int notify_watchdog_enabled(unsigned long long *usec) {
    uint64_t u = 0;
    /* Re-read each time: cheap, and honours WATCHDOG_PID (a forked child must
     * not send keep-alives for its parent). */
    int on = sd_watchdog_enabled(0, &u) > 0 && u > 0;
    if (usec) *usec = on ? (unsigned long long)u : 0;
    return on;
}

static _Atomic unsigned long long last_sent; /* of a keep-alive; 0 = never */

void notify_watchdog_reset(void) {
    atomic_store(&last_sent, 0);
}

void notify_watchdog(void) {
    unsigned long long period;
    if (!notify_watchdog_enabled(&period)) return;
    unsigned long long now = mono_usec();
    unsigned long long prev = atomic_load(&last_sent);
    if (prev != 0 && now - prev < period / 2) return;
    /* Only the thread that wins the exchange sends, so concurrent callers
     * cannot produce two keep-alives for the same half-period. */
    if (!atomic_compare_exchange_strong(&last_sent, &prev, now)) return;
    sd_notify(0, "WATCHDOG=1");
}

void notify_reloading(void) {
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", mono_usec());
}

void notify_stopping(void) {
    sd_notify(0, "STOPPING=1");
}
