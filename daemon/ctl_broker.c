/* ctl_broker.c - guardctl broker: a standalone mock Kafka cluster for tests and
 * demos (librdkafka's mock, through mockbroker.h).
 *
 *   guardctl broker [--brokers N] [--topics a,b,...] [--partitions P]
 *                   [--bootstrap-file F]
 *
 * Starts N brokers (default 3) on random 127.0.0.1 ports, creates the topics
 * with P partitions (default 4; other topics are auto-created with 4 on first
 * use), prints exactly one line "bootstrap=HOST:PORT,..." on stdout (flushed)
 * and writes the same line to F atomically (temp file + rename, so a waiting
 * script never reads half a line). Serves until SIGTERM or SIGINT, then stops
 * cleanly and exits 0. Everything is in memory. For outage tests, SIGUSR1
 * sets every broker down (connections closed and refused, data kept) and
 * SIGUSR2 sets them up again.
 *
 * SIGTERM/SIGINT are blocked before the cluster starts so librdkafka's threads
 * inherit the mask and the signal is taken by sigwait() in the main thread.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ctl.h"
#include "mockbroker.h"

static void broker_usage(FILE *f) {
    fprintf(f, "usage: guardctl broker [--brokers N] [--topics a,b,...] [--partitions P]\n"
               "                       [--bootstrap-file F]\n"
               "Runs an in-memory mock Kafka cluster until SIGTERM/SIGINT; prints\n"
               "'bootstrap=HOST:PORT,...' on stdout (and into F).\n"
               "SIGUSR1 sets every broker down, SIGUSR2 up again (outage tests).\n");
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Creates each comma-separated topic; empty items are skipped. */
static int create_topics(MockBroker *mb, const char *list, int partitions) {
    char *copy = strdup(list), *save = NULL, err[256];
    if (!copy) return -1;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (mockbroker_create_topic(mb, t, partitions, err, sizeof err) < 0) {
            fprintf(stderr, "guardctl broker: %s\n", err);
            rc = -1;
            break;
        }
    }
    free(copy);
    return rc;
}

static int write_file_atomic(const char *path, const char *line) {
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return -1;
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fprintf(f, "%s\n", line) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, path) != 0) ok = 0;
    if (!ok) { perror(path); unlink(tmp); }
    free(tmp);
    return ok ? 0 : -1;
}

int ctl_broker(int argc, char **argv) {
    int brokers = 3, partitions = 4;
    const char *topics = NULL, *file = NULL;
    static const struct option opts[] = {
        {"brokers", required_argument, 0, 'b'}, {"topics", required_argument, 0, 't'},
        {"partitions", required_argument, 0, 'p'}, {"bootstrap-file", required_argument, 0, 'f'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "b:t:p:f:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': if (parse_int(optarg, 1, 16, &brokers)) { fprintf(stderr, "guardctl broker: --brokers must be 1..16\n"); return 2; } break;
        case 'p': if (parse_int(optarg, 1, 1024, &partitions)) { fprintf(stderr, "guardctl broker: --partitions must be 1..1024\n"); return 2; } break;
        case 't': topics = optarg; break;
        case 'f': file = optarg; break;
        case 'h': broker_usage(stdout); return 0;
        default: broker_usage(stderr); return 2;
        }
    }
    if (optind < argc) { fprintf(stderr, "guardctl broker: unexpected argument '%s'\n", argv[optind]); return 2; }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    char err[256];
    MockBroker *mb = mockbroker_start(brokers, err, sizeof err);
    if (!mb) { fprintf(stderr, "guardctl broker: %s\n", err); return 1; }
    if (topics && create_topics(mb, topics, partitions) < 0) { mockbroker_stop(mb); return 1; }

    const char *bs = mockbroker_bootstraps(mb);
    size_t n = strlen(bs) + 16;
    char *line = malloc(n);
    if (!line) { mockbroker_stop(mb); return 1; }
    snprintf(line, n, "bootstrap=%s", bs);
    if (file && write_file_atomic(file, line) < 0) { free(line); mockbroker_stop(mb); return 1; }
    printf("%s\n", line);
    fflush(stdout);
    free(line);

    int sig = 0;
    while (sigwait(&set, &sig) == 0 && (sig == SIGUSR1 || sig == SIGUSR2)) {
        for (int id = 1; id <= brokers; id++)
            if (sig == SIGUSR1) mockbroker_broker_down(mb, id);
            else mockbroker_broker_up(mb, id);
        fprintf(stderr, "guardctl broker: all %d brokers %s\n", brokers, sig == SIGUSR1 ? "down" : "up");
    }
    fprintf(stderr, "guardctl broker: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    mockbroker_stop(mb);
    return 0;
}
