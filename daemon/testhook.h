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
 */
#ifndef GUARDD_TESTHOOK_H
#define GUARDD_TESTHOOK_H
#include <stddef.h>

#define TESTHOOK_ENV "GUARDD_TEST_FAULTS"
#define TESTHOOK_EVERY_S 0.2

/* Reads the fault file into buf (NUL-terminated, cut to len). Returns 1 when
 * the variable is set and the file exists, else 0 (buf empty). */
int testhook_read(char *buf, size_t len);
/* 1 when the text of testhook_read holds the line `line` exactly. */
int testhook_has(const char *text, const char *line);
/* 1 when GUARDD_TEST_FAULTS is set. */
int testhook_enabled(void);

#endif
