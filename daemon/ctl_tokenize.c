/* ctl_tokenize.c - guardctl tokenize: text on stdin -> Llama 3 token ids.
 *
 *   guardctl tokenize [--tokenizer FILE] [--no-special] [--jsonl]
 *
 * Default: all of stdin is one text; its ids are printed separated by spaces
 * with a newline at the end. --jsonl: every input line is one JSON string and
 * every output line the JSON array of its ids (one process can check a whole
 * corpus). Special-token text such as "<|eot_id|>" becomes the special token
 * unless --no-special. FILE defaults to $GUARDD_TOKENIZER. Errors are one line
 * on stderr and a non-zero exit; input size is bounded.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ctl.h"
#include "tokenizer.h"

#define MAX_INPUT (256u << 20)   /* whole-stdin and per-line bound */

typedef struct {
    const char *path;
    int allow_special;
    int jsonl;
} Opts;

static int parse_opts(int argc, char **argv, Opts *o)
{
    o->path = getenv("GUARDD_TOKENIZER");
    o->allow_special = 1;
    o->jsonl = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc)
            o->path = argv[++i];
        else if (!strcmp(argv[i], "--no-special"))
            o->allow_special = 0;
        else if (!strcmp(argv[i], "--jsonl"))
            o->jsonl = 1;
        else {
            fprintf(stderr, "guardctl tokenize: unknown option '%s' "
                    "(usage: guardctl tokenize --tokenizer FILE [--no-special] [--jsonl])\n", argv[i]);
            return -1;
        }
    }
    if (!o->path) {
        fprintf(stderr, "guardctl tokenize: no tokenizer (give --tokenizer FILE or set GUARDD_TOKENIZER)\n");
        return -1;
    }
    return 0;
}

static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            char *p = cap >= MAX_INPUT ? NULL : realloc(buf, cap * 2);
            if (!p) {
                fprintf(stderr, "guardctl tokenize: input larger than %u MB or out of memory\n", MAX_INPUT >> 20);
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    *len = n;
    return buf;
}

static void print_ids(const TokenVec *v, int json)
{
    fputs(json ? "[" : "", stdout);
    for (size_t i = 0; i < v->n; i++)
        printf(i ? (json ? ",%d" : " %d") : "%d", v->ids[i]);
    fputs(json ? "]\n" : "\n", stdout);
}

static int tokenize_all(const Tokenizer *t, const Opts *o)
{
    size_t len;
    char *text = read_all(stdin, &len), err[256];
    TokenVec v = {0};
    if (!text)
        return 1;
    int rc = tokenizer_encode(t, text, len, o->allow_special, &v, err, sizeof err);
    if (rc == 0)
        print_ids(&v, 0);
    else
        fprintf(stderr, "guardctl tokenize: %s\n", err);
    free(text);
    tokvec_free(&v);
    return rc == 0 ? 0 : 1;
}

static int tokenize_line(const Tokenizer *t, const Opts *o, const char *line, size_t lineno)
{
    json_error_t je;
    char err[256];
    json_t *j = json_loads(line, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!json_is_string(j)) {
        fprintf(stderr, "guardctl tokenize: line %zu: expected a JSON string%s%s\n", lineno, j ? "" : ": ",
                j ? "" : je.text);
        json_decref(j);
        return -1;
    }
    TokenVec v = {0};
    int rc = tokenizer_encode(t, json_string_value(j), json_string_length(j), o->allow_special, &v, err, sizeof err);
    if (rc == 0)
        print_ids(&v, 1);
    else
        fprintf(stderr, "guardctl tokenize: line %zu: %s\n", lineno, err);
    tokvec_free(&v);
    json_decref(j);
    return rc;
}

/* Reads one line (without its newline) into *buf; returns its length, -1 at
 * end of input, -2 if it is longer than MAX_INPUT. */
static long read_line(FILE *f, char **buf, size_t *cap)
{
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(f)) != EOF && c != '\n') {
        if (n + 1 >= *cap) {
            size_t ncap = *cap ? *cap * 2 : 4096;
            char *p = ncap > MAX_INPUT + 1u ? NULL : realloc(*buf, ncap);
            if (!p)
                return -2;
            *buf = p;
            *cap = ncap;
        }
        (*buf)[n++] = (char)c;
    }
    if (c == EOF && n == 0)
        return -1;
    if (!*buf && !(*buf = malloc(*cap = 16)))
        return -2;
    (*buf)[n] = 0;
    return (long)n;
}

static int tokenize_jsonl(const Tokenizer *t, const Opts *o)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    long n;
    int rc = 0;
    while (rc == 0 && (n = read_line(stdin, &line, &cap)) != -1) {
        lineno++;
        if (n == -2) {
            fprintf(stderr, "guardctl tokenize: line %zu longer than %u MB or out of memory\n", lineno,
                    MAX_INPUT >> 20);
            rc = -1;
        } else if (strspn(line, " \t\r") != (size_t)n) {
            rc = tokenize_line(t, o, line, lineno);
        }
    }
    free(line);
    return rc == 0 ? 0 : 1;
}

int ctl_tokenize(int argc, char **argv)
{
    Opts o;
    char err[512];
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    Tokenizer *t = tokenizer_load(o.path, err, sizeof err);
    if (!t) {
        fprintf(stderr, "guardctl tokenize: %s\n", err);
        return 1;
    }
    int rc = o.jsonl ? tokenize_jsonl(t, &o) : tokenize_all(t, &o);
    tokenizer_free(t);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "guardctl tokenize: write error on stdout\n");
        rc = 1;
    }
    return rc;
}
