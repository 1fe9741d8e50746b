/* log.c - structured key=value logging to stderr (see log.h).
 *
 * The line is formatted into a stack buffer first and emitted with one
 * write(2) while holding a mutex: a single write keeps lines whole even when
 * stderr is a pipe shared with other processes, the mutex keeps the order of
 * our own threads. Lines longer than the buffer are cut and marked "...".
 */
#include "log.h"
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096

static atomic_int cur_level = LOG_INFO;
static atomic_int out_fd = 2;
static atomic_int journal_mode = -1;   /* -1: not yet looked at */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {3, 4, 6, 7};

void log_set_level(LogLevel level) {
    if (level < LOG_ERROR) level = LOG_ERROR;
    if (level > LOG_DEBUG) level = LOG_DEBUG;
    atomic_store(&cur_level, (int)level);
}

LogLevel log_get_level(void) { return (LogLevel)atomic_load(&cur_level); }

int log_enabled(LogLevel level) { return (int)level <= atomic_load(&cur_level); }

int log_level_parse(const char *name, LogLevel *out) {
    for (int i = 0; i <= LOG_DEBUG; i++)
        if (name && !strcmp(name, level_names[i])) { *out = (LogLevel)i; return 0; }
    if (name && !strcmp(name, "warning")) { *out = LOG_WARN; return 0; }
    return -1;
}

const char *log_level_name(LogLevel level) {
    return (level >= LOG_ERROR && level <= LOG_DEBUG) ? level_names[level] : "info";
}

void log_set_fd(int fd) {
    atomic_store(&out_fd, fd < 0 ? 2 : fd);
    atomic_store(&journal_mode, -1);
}

/* journald connects stderr to itself and says so in JOURNAL_STREAM; only then
 * is the <N> prefix understood (elsewhere it would be noise). */
static int in_journal(void) {
    int m = atomic_load(&journal_mode);
    if (m < 0) {
        const char *js = getenv("JOURNAL_STREAM");
        m = (js && *js && atomic_load(&out_fd) == 2) ? 1 : 0;
        atomic_store(&journal_mode, m);
    }
    return m;
}

static size_t line_prefix(char *buf, size_t n, LogLevel level) {
    if (in_journal())
        return (size_t)snprintf(buf, n, "<%d>level=%s ", syslog_prio[level], level_names[level]);
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    return (size_t)snprintf(buf, n, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ",
                            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                            tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, level_names[level]);
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;          /* nowhere to report a logging failure */
        p += w; n -= (size_t)w;
    }
}

void log_msg(LogLevel level, const char *fmt, ...) {
    if (level < LOG_ERROR || level > LOG_DEBUG) level = LOG_INFO;
    if (!log_enabled(level)) return;
    char line[LOG_LINE_MAX];
    size_t len = line_prefix(line, sizeof line, level);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + len, sizeof line - len, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof line - len - 1) {     /* cut: mark it, keep room for '\n' */
        len = sizeof line - 5;
        memcpy(line + len, "...", 3);
        len += 3;
    } else {
        len += (size_t)n;
    }
    line[len++] = '\n';
    pthread_mutex_lock(&write_lock);
    write_all(atomic_load(&out_fd), line, len);
    pthread_mutex_unlock(&write_lock);
}

static int needs_quotes(const char *s) {
    if (!*s) return 1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f) return 1;
    return 0;
}

const char *log_quote(const char *s, char *buf, size_t buflen) {
    if (!buf || buflen == 0) return "";
    if (!s) s = "";
    if (!needs_quotes(s)) {
        snprintf(buf, buflen, "%s", s);
        return buf;
    }
    size_t o = 0;
    if (buflen < 3) { buf[0] = 0; return buf; }
    buf[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[5];
        size_t el;
        if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = (char)*p; el = 2; }
        else if (*p == '\n') { memcpy(esc, "\\n", 2); el = 2; }
        else if (*p == '\t') { memcpy(esc, "\\t", 2); el = 2; }
        else if (*p < ' ' || *p == 0x7f) { snprintf(esc, sizeof esc, "\\x%02x", *p); el = 4; }
        else { esc[0] = (char)*p; el = 1; }
        if (o + el + 2 > buflen) break;          /* room for closing quote + NUL */
        memcpy(buf + o, esc, el);
        o += el;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}
