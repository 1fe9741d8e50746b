/* testhook.h - faults the end-to-end tests inject into a running guardd.
 *
 * Inert unless the environment variable GUARDD_TEST_FAULTS names a file: the
 * daemon then re-reads that file (at most every TESTHOOK_EVERY_S) and acts
 * on its lines while they are there:
 *   hold TOPIC/PARTITION   the consumer keeps that partition paused in the
 *                          client without guardd's own bookkeeping knowing
 *                          (what a lost resume after a rebalance did): a
 *                          partition stall for real; resumed once the line
 *                          (or the file) is gone
 *   block consumer         the consumer thread sleeps instead of polling (a
 *                          hung callback or a deadlock), until the line is gone
 * Unknown lines are ignored. Compiled in always so the tests exercise the
 * shipped binary; a production environment never sets the variable.
 * The variable is read once, when the pipeline starts (testhook_path), which
 * logs a warning if it is set: not on every round of the consumer loop,
 * where getenv could race a setenv on another thread (a test starting a
 * second classifier, whose BLIS set-up sets BLIS_ARCH_TYPE) and cost a
 * lookup every 100 ms in production.
 */
#ifndef GUARDD_TESTHOOK_H
#define GUARDD_TESTHOOK_H
#include <stddef.h>
#include <stdint.h>

#define TESTHOOK_ENV "GUARDD_TEST_FAULTS"
#define TESTHOOK_EVERY_S 0.2
#define TESTHOOK_MAX_TOPIC 250  /* bytes for a topic name: Kafka allows 249 characters */

/* The fault file GUARDD_TEST_FAULTS names, or NULL when it is unset or empty. */
const char *testhook_path(void);
/* Reads the fault file path (NULL: none) into buf (NUL-terminated, cut to
 * len). Returns 1 when the file exists, else 0 (buf empty). */
int testhook_read(const char *path, char *buf, size_t len);
/* 1 when the text of testhook_read holds the line `line` exactly. */
int testhook_has(const char *text, const char *line);
/* Parses line (up to its newline) as "hold TOPIC/PARTITION": 1 with the
 * topic copied to topic (len bytes) and *partition set; 0 for any other
 * line, a topic that does not fit in len or a partition that is not a
 * decimal number within 0..INT32_MAX. The topic is everything up to the last
 * '/' of the first word. */
int testhook_hold(const char *line, char *topic, size_t len, int32_t *partition);

#endif
