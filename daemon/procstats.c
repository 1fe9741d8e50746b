/* procstats.c - process_* metrics (CPU time, memory, file descriptors, start
 * time) from procfs, the same set the official Prometheus clients export so
 * that standard dashboards work on guardd. Only /proc/self is read, which stays
 * visible under systemd's ProcSubset=pid / ProtectProc=invisible.
 *
 * /proc/self/stat's second field is the command name in parentheses and may
 * itself contain spaces or ')', so the numeric fields are located after the
 * LAST ')' (proc(5)). Files are read into fixed buffers: procfs texts we need
 * are a few hundred bytes (limits ~1.5 KiB).
 */
#include "procstats.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

/* Reads a whole small file into buf (NUL-terminated). Returns 0 or -1. */
static int read_small(const char *path, char *buf, size_t len) {
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = 0;
    return n > 0 ? 0 : -1;
}

int procstats_parse_stat(const char *text, long ticks_per_s, long page_size,
                         double *cpu_s, double *vsize, double *rss, double *start_ticks) {
    const char *p = strrchr(text, ')');
    if (!p || ticks_per_s <= 0) return -1;
    /* After ")": field 3 (state) is first. We need utime (14), stime (15),
     * starttime (22), vsize (23), rss (24). */
    unsigned long long f[25] = {0};
    int field = 3;
    p++;
    while (*p && field <= 24) {
        while (*p == ' ') p++;
        if (!*p) break;
        char *end;
        if (field == 3) { /* state letter */
            while (*p && *p != ' ') p++;
        } else {
            f[field] = strtoull(p, &end, 10);
            if (end == p) return -1;
            p = end;
        }
        field++;
    }
    if (field <= 24) return -1;
    *cpu_s = (double)(f[14] + f[15]) / (double)ticks_per_s;
    *start_ticks = (double)f[22];
    *vsize = (double)f[23];
    *rss = (double)f[24] * (double)page_size;
    return 0;
}

int procstats_parse_limits(const char *text, double *max_fds) {
    const char *line = strstr(text, "Max open files");
    if (!line) return -1;
    line += strlen("Max open files");
    while (*line == ' ') line++;
    if (!strncmp(line, "unlimited", 9)) { *max_fds = -1; return 0; }
    char *end;
    unsigned long long v = strtoull(line, &end, 10);
    if (end == line) return -1;
    *max_fds = (double)v;
    return 0;
}

/* Boot time (epoch seconds) = wall clock minus time since boot: the same
 * arithmetic the kernel uses for /proc/stat's btime, so there is no need to
 * read /proc/stat, which systemd's ProcSubset=pid hides. Truncated to whole
 * seconds like btime, so the start time does not jitter between scrapes. */
static int boot_time(double *btime) {
    struct timespec real, boot;
    if (clock_gettime(CLOCK_REALTIME, &real) != 0 || clock_gettime(CLOCK_BOOTTIME, &boot) != 0)
        return -1;
    time_t b = real.tv_sec - boot.tv_sec - (real.tv_nsec < boot.tv_nsec ? 1 : 0);
    *btime = (double)b;
    return 0;
}

static double count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

int procstats_read(ProcStats *ps) {
    int rc = 0;
    char buf[4096];
    ps->cpu_seconds = ps->resident_bytes = ps->virtual_bytes = -1;
    ps->open_fds = ps->max_fds = ps->start_time_seconds = -1;

    long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    double start_ticks = -1, btime = -1;
    if (read_small("/proc/self/stat", buf, sizeof buf) != 0 ||
        procstats_parse_stat(buf, hz, page, &ps->cpu_seconds, &ps->virtual_bytes,
                             &ps->resident_bytes, &start_ticks) != 0)
        rc = -1;
    if (start_ticks >= 0 && boot_time(&btime) == 0)
        ps->start_time_seconds = btime + start_ticks / (double)hz;
    else
        rc = -1;

    if (read_small("/proc/self/limits", buf, sizeof buf) != 0 ||
        procstats_parse_limits(buf, &ps->max_fds) != 0) {
        struct rlimit rl; /* fall back to asking the kernel directly */
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            ps->max_fds = (double)rl.rlim_cur;
        else
            rc = -1;
    }
    ps->open_fds = count_fds();
    if (ps->open_fds < 0) rc = -1;
    return rc;
}
