/* ctl_prompt.c - guardctl prompt: conversation JSON on stdin -> the exact
 * Llama Guard 3 prompt on stdout (model/prompt.h renders it).
 *
 *   guardctl prompt [--format llama-guard-3-1b|llama-guard-3-8b|auto]
 *                   [--model DIR] [--role auto|user|agent] [--categories FILE]
 *                   [--exclude S6,S7] [--jsonl] [--split]
 *                   [--tokens [--tokenizer FILE]]
 *
 * --format picks the prompt family; "auto" reads it from
 * DIR/tokenizer_config.json as guardd does (--model DIR needed). Default:
 * auto with --model, else llama-guard-3-1b.
 *
 * Default: stdin holds one conversation object (json_conv.h), stdout gets the
 * prompt bytes, nothing else. --split prints a line "PREFIX_LEN N" to stderr
 * too. --jsonl: one conversation object per input line, one JSON object per
 * output line, {"prompt": "...", "prefix_len": N, "role": "user"|"agent"} or
 * {"error": "..."}; all lines are processed, the exit code is 1 if any failed.
 * --tokens (single mode): instead of the text, its token ids as the
 * classifier feeds them (template specials as special ids, all other text
 * plain), space-separated, with " | " where the shared prefix ends; the
 * tokenizer is FILE or $GUARDD_TOKENIZER.
 * The conversation's own "categories" win over --categories; --exclude adds
 * to its "exclude".
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ctl.h"
#include "json_conv.h"
#include "prompt.h"
#include "prompt_format.h"

typedef struct {
    PromptFormat format;
    int format_set;
    const char *model;
    PromptRole role;
    CategoryList file_cats;
    char **exclude;
    int n_exclude;
    int jsonl, split, tokens;
    const char *tokenizer;
} PromptArgs;

static int usage(void) {
    fprintf(stderr, "usage: guardctl prompt [--format llama-guard-3-1b|llama-guard-3-8b|auto [--model DIR]]\n"
                    "  [--role auto|user|agent] [--categories FILE] [--exclude S6,S7] [--jsonl] [--split]\n"
                    "  [--tokens [--tokenizer FILE]] < conversation.json\n");
    return 2;
}

static int parse_args(int argc, char **argv, PromptArgs *a) {
    char err[300];
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--jsonl")) { a->jsonl = 1; continue; }
        if (!strcmp(o, "--split")) { a->split = 1; continue; }
        if (!strcmp(o, "--tokens")) { a->tokens = 1; continue; }
        if (!strcmp(o, "--tokenizer") && v) { a->tokenizer = v; i++; continue; }
        if (!strcmp(o, "--model") && v) { a->model = v; i++; continue; }
        if (!strcmp(o, "--format") && v) {
            if (prompt_format_parse(v, &a->format) < 0) {
                fprintf(stderr, "guardctl prompt: --format must be llama-guard-3-1b, llama-guard-3-8b or auto\n");
                return 2;
            }
            a->format_set = 1;
            i++;
            continue;
        }
        if (!v || (strcmp(o, "--role") && strcmp(o, "--categories") && strcmp(o, "--exclude"))) {
            fprintf(stderr, "guardctl prompt: unknown option or missing value: %s\n", o);
            return usage();
        }
        i++;
        if (!strcmp(o, "--role")) {
            if (!strcmp(v, "auto")) a->role = PROMPT_ROLE_AUTO;
            else if (!strcmp(v, "user")) a->role = PROMPT_ROLE_USER;
            else if (!strcmp(v, "agent")) a->role = PROMPT_ROLE_AGENT;
            else { fprintf(stderr, "guardctl prompt: --role must be auto, user or agent\n"); return 2; }
        } else if (!strcmp(o, "--categories")) {
            categories_free(&a->file_cats);
            if (categories_load(v, &a->file_cats, err, sizeof err) < 0) {
                fprintf(stderr, "guardctl prompt: %s\n", err);
                return 1;
            }
        } else if (exclude_parse(v, &a->exclude, &a->n_exclude, err, sizeof err) < 0) {
            fprintf(stderr, "guardctl prompt: --exclude: %s\n", err);
            return 2;
        }
    }
    return 0;
}

/* Renders one conversation object; 0 or -1 with err set. */
static int render_one(const PromptArgs *a, const char *text, size_t len, Prompt *p, char *err, size_t errlen) {
    JsonConv jc;
    if (json_conv_parse(text, len, &jc, err, errlen) < 0) return -1;
    json_conv_apply_defaults(&jc, a->file_cats.n ? &a->file_cats : NULL, a->exclude, a->n_exclude);
    int rc = prompt_render_as(a->format, &jc.conv, jc.categories.n ? &jc.categories : NULL,
                           (const char *const *)jc.exclude, jc.n_exclude, a->role, p, err, errlen);
    json_conv_free(&jc);
    return rc;
}

static int run_jsonl(const PromptArgs *a) {
    char *line = NULL, err[400];
    size_t cap = 0;
    long n;
    int failed = 0;
    while ((n = json_read_line(stdin, &line, &cap, err, sizeof err)) != 0) {
        Prompt p;
        json_t *o;
        if (n < 0 || render_one(a, line, (size_t)n, &p, err, sizeof err) < 0) {
            o = json_pack("{s:s}", "error", err);
            failed = 1;
        } else {
            o = json_pack("{s:s%,s:I,s:s}", "prompt", p.text, p.len, "prefix_len",
                          (json_int_t)p.prefix_len, "role", p.agent ? "agent" : "user");
            prompt_free(&p);
        }
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        printf("%s\n", s ? s : "{\"error\":\"cannot encode output\"}");
        free(s);
        json_decref(o);
    }
    free(line);
    return failed;
}

static int print_tokens(const PromptArgs *a, const Prompt *p) {
    char err[400];
    const char *path = a->tokenizer ? a->tokenizer : getenv("GUARDD_TOKENIZER");
    if (!path) {
        fprintf(stderr, "guardctl prompt: --tokens needs --tokenizer FILE or $GUARDD_TOKENIZER\n");
        return -1;
    }
    Tokenizer *t = tokenizer_load(path, err, sizeof err);
    TokenVec pre = {0}, rest = {0};
    int rc = t ? prompt_tokenize(t, p, &pre, &rest, err, sizeof err) : -1;
    if (rc < 0) fprintf(stderr, "guardctl prompt: %s\n", err);
    for (size_t i = 0; rc == 0 && i < pre.n; i++) printf("%s%d", i ? " " : "", pre.ids[i]);
    for (size_t i = 0; rc == 0 && i < rest.n; i++) printf("%s%d", i ? " " : " | ", rest.ids[i]);
    if (rc == 0) printf("\n");
    tokvec_free(&pre);
    tokvec_free(&rest);
    tokenizer_free(t);
    return rc;
}

static int run_single(const PromptArgs *a) {
    char err[400];
    size_t cap = JSON_CONV_MAX_BYTES + 1;
    char *buf = malloc(cap);
    size_t n = buf ? fread(buf, 1, cap, stdin) : 0;
    if (!buf || n == cap) {
        free(buf);
        fprintf(stderr, "guardctl prompt: input over %u bytes\n", JSON_CONV_MAX_BYTES);
        return 1;
    }
    Prompt p;
    int rc = render_one(a, buf, n, &p, err, sizeof err);
    free(buf);
    if (rc < 0) {
        fprintf(stderr, "guardctl prompt: %s\n", err);
        return 1;
    }
    if (a->tokens) rc = print_tokens(a, &p);
    else fwrite(p.text, 1, p.len, stdout);
    if (a->split) fprintf(stderr, "PREFIX_LEN %zu\n", p.prefix_len);
    prompt_free(&p);
    return rc < 0 ? 1 : 0;
}

/* --format auto: the family of --model's tokenizer_config.json. */
static int resolve_format(PromptArgs *a) {
    if (!a->format_set) a->format = a->model ? PROMPT_FORMAT_AUTO : PROMPT_FORMAT_LG3_1B;
    if (a->format != PROMPT_FORMAT_AUTO) return 0;
    char err[600], note[600];
    if (!a->model) {
        fprintf(stderr, "guardctl prompt: --format auto needs --model DIR\n");
        return 2;
    }
    if (prompt_format_detect(a->model, &a->format, note, sizeof note, err, sizeof err) < 0) {
        fprintf(stderr, "guardctl prompt: %s\n", err);
        return 1;
    }
    fprintf(stderr, "guardctl prompt: %s\n", note);
    return 0;
}

int ctl_prompt(int argc, char **argv) {
    PromptArgs a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc == 0) rc = resolve_format(&a);
    if (rc == 0) rc = a.jsonl ? run_jsonl(&a) : run_single(&a);
    categories_free(&a.file_cats);
    exclude_free(a.exclude, a.n_exclude);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
