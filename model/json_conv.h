/* json_conv.h - conversations and category lists from JSON (guardctl, tests).
 *
 * Conversation object:
 *   {"messages": [{"role": "user"|"assistant",
 *                  "content": "text" | [{"type": "text", "text": "..."}, ...]}, ...],
 *    "categories": {"S1": "Violent Crimes.", ...},   optional, replaces S1..S13,
 *                                                    rendered in the JSON text's order
 *    "exclude": ["S6", ...]}                         optional
 * Other keys (id, metadata, ...) are ignored. Content parts of any type other
 * than "text" are refused (Llama Guard 3 1B is text-only).
 *
 * Category file (--categories FILE): either a JSON object code -> name (same
 * as "categories" above; the only way to write a name spanning lines), or
 * lines "CODE: NAME" (split at the first ": ", the name kept verbatim up to
 * the end of the line, CR LF tolerated; empty lines and lines starting with
 * '#' are skipped).
 */
#ifndef GUARDD_JSON_CONV_H
#define GUARDD_JSON_CONV_H
#include <stddef.h>
#include <stdio.h>
#include "conversation.h"

#define JSON_CONV_MAX_BYTES (8u << 20)   /* one conversation object / category file */

typedef struct {
    Conversation conv;
    CategoryList categories;  /* n == 0: none given */
    char **exclude;
    int n_exclude;
} JsonConv;

/* Parses one conversation object from text[0..len). 0, or -1 with err set
 * (and *out left empty). */
int json_conv_parse(const char *text, size_t len, JsonConv *out, char *err, size_t errlen);
void json_conv_free(JsonConv *c);

/* Command-line defaults: a conversation without its own "categories" gets a
 * copy of file_cats (if non-NULL/non-empty); extra excluded codes are added to
 * its own "exclude" list. */
void json_conv_apply_defaults(JsonConv *c, const CategoryList *file_cats,
                              char *const *extra_exclude, int n_extra);

/* Parses a category list (JSON object or "CODE: NAME" lines) into out. */
int categories_parse(const char *text, size_t len, CategoryList *out, char *err, size_t errlen);
/* Reads and parses a category file. */
int categories_load(const char *path, CategoryList *out, char *err, size_t errlen);

/* Reads one line (up to and including '\n') into *buf (grown as needed, at
 * most JSON_CONV_MAX_BYTES + 1). Returns its length, 0 at end of input, or
 * -1 with err set for a longer line (the rest of it is skipped) or an error. */
long json_read_line(FILE *f, char **buf, size_t *cap, char *err, size_t errlen);

/* Splits "S6,S7" into codes appended to *list (count in *n). 0 or -1. */
int exclude_parse(const char *csv, char ***list, int *n, char *err, size_t errlen);
void exclude_free(char **list, int n);

#endif
