/* procstats.h - the standard Prometheus process_* metrics for this process,
 * read from /proc/self (stat, fd/, limits) and the boot-time clock. */
#ifndef GUARDD_PROCSTATS_H
#define GUARDD_PROCSTATS_H

typedef struct {
    double cpu_seconds;         /* user + system */
    double resident_bytes;
    double virtual_bytes;
    double open_fds;
    double max_fds;             /* soft RLIMIT_NOFILE; -1 = unknown */
    double start_time_seconds;  /* since the Unix epoch */
} ProcStats;

/* Fills *ps; fields that could not be read are -1. Returns 0 when every
 * field was read, -1 when any was not (the rest are still valid). */
int procstats_read(ProcStats *ps);

/* Parsers, exposed for tests: text of /proc/self/stat and /proc/self/limits.
 * Return 0 or -1 on malformed input. */
int procstats_parse_stat(const char *text, long ticks_per_s, long page_size,
                         double *cpu_s, double *vsize, double *rss, double *start_ticks);
int procstats_parse_limits(const char *text, double *max_fds);

#endif
