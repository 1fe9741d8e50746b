/* ctl_classify.c - guardctl classify: Llama Guard 3 verdicts from the command
 * line, through the same classifier the daemon uses.
 *
 *   guardctl classify --model DIR [--tokenizer FILE] [--threshold X]
 *       [--categories FILE] [--exclude S6,S7] [--role auto|user|agent]
 *       [--json] [--category-scores] [--max-decode N] [--threads N]
 *       [--blis-arch NAME] [--precision auto|bf16|int8|f32] [--batch N] [--cache-bytes N]
 *       [--stats] [--prompt-format auto|llama-guard-3-1b|llama-guard-3-8b] [TEXT]
 *
 * TEXT is one user message. Without TEXT, stdin holds conversation objects
 * (model/json_conv.h), one per line; all of them run as ONE batch (or, with
 * --batch N, as consecutive batches of at most N in one process, the prefix
 * cache staying warm across them as in the daemon; --cache-bytes sets its
 * budget like the daemon's cache.max_bytes, default 1 GiB, 0 = nothing kept
 * between batches) and the output has one
 * line per input line, in order. Everything is validated before the model is
 * loaded, so bad input fails fast.
 *
 * Output line (default):
 *   safe SCORE
 *   unsafe CODES SCORE            CODES = "S1,S10", or "-" when none parsed
 *   ... [parse_error] [scores=S1:P,S2:P,...]
 * SCORE = P(unsafe) with 6 decimals; parse_error marks output that did not
 * parse (always reported unsafe); scores= with --category-scores.
 * --json: one object per line: {"verdict", "categories": [{"code","name"}],
 * "score", "role": "user"|"agent", "raw", "parse_error", "tokens": {"prompt",
 * "cached", "decode"}} (+ "category_scores": {code: P} with --category-scores).
 * --precision: the weights' stored form (weights.h), default auto (bf16).
 * --prompt-format: the prompt family; auto (default) reads it from DIR's
 * tokenizer_config.json as guardd does (prompt_format.h).
 * --stats: one summary line on stderr (precision and kernels, load seconds; run seconds: prompts,
 * tokenizing and inference; tokens prefilled and served from the prefix
 * cache, tokens generated).
 * Errors: one line on stderr, exit 1 (2 for bad usage).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "classifier.h"
#include "ctl.h"
#include "json_conv.h"
#include "prompt.h"
#include "prompt_format.h"

#define MAX_CONVERSATIONS 4096

typedef struct {
    ClassifierOptions opt;
    ForceRole role;
    CategoryList file_cats;
    char **exclude;
    int n_exclude;
    int json, stats;
    int batch;                  /* max conversations per classifier_run; 0 = all */
    const char *text;
} Args;

static int usage(const char *msg, const char *arg) {
    fprintf(stderr, "guardctl classify: %s%s%s (usage: guardctl classify --model DIR [--tokenizer FILE] "
            "[--threshold X] [--categories FILE] [--exclude S6,S7] [--role auto|user|agent] [--json] "
            "[--category-scores] [--max-decode N] [--threads N] [--blis-arch NAME] [--precision auto|bf16|int8|f32] "
            "[--batch N] [--cache-bytes N] [--stats] [--prompt-format auto|llama-guard-3-1b|llama-guard-3-8b] [TEXT])\n",
            msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

static int parse_number(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* Options taking a value. Returns 0, or an exit code. */
static int parse_valued(Args *a, const char *o, const char *v) {
    char err[300];
    double x;
    if (!strcmp(o, "--model")) a->opt.model_dir = v;
    else if (!strcmp(o, "--tokenizer")) a->opt.tokenizer_path = v;
    else if (!strcmp(o, "--blis-arch")) a->opt.blis_arch = v;
    else if (!strcmp(o, "--precision")) {
        if (precision_parse(v, &a->opt.precision) < 0) return usage("--precision must be auto, bf16, int8 or f32", v);
    }
    else if (!strcmp(o, "--prompt-format")) {
        if (prompt_format_parse(v, &a->opt.prompt_format) < 0)
            return usage("--prompt-format must be auto, llama-guard-3-1b or llama-guard-3-8b", v);
    }
    else if (!strcmp(o, "--threshold")) {
        if (parse_number(v, 0, 1, &x) < 0) return usage("--threshold must be a number in [0, 1]", v);
        a->opt.threshold = (float)x;
    } else if (!strcmp(o, "--max-decode")) {
        if (parse_number(v, 1, 256, &x) < 0 || x != (int)x) return usage("--max-decode must be 1..256", v);
        a->opt.max_decode_tokens = (int)x;
    } else if (!strcmp(o, "--batch")) {
        if (parse_number(v, 1, MAX_CONVERSATIONS, &x) < 0 || x != (int)x)
            return usage("--batch must be 1..4096", v);
        a->batch = (int)x;
    } else if (!strcmp(o, "--cache-bytes")) {
        if (parse_number(v, 0, 1125899906842624.0, &x) < 0 || x != (long long)x)
            return usage("--cache-bytes must be a whole number of bytes, 0..2^50", v);
        a->opt.cache_max_bytes = x > 0 ? (long long)x : -1;
    } else if (!strcmp(o, "--threads")) {
        if (parse_number(v, 0, 1024, &x) < 0 || x != (int)x) return usage("--threads must be 0..1024", v);
        a->opt.threads = (int)x;
    } else if (!strcmp(o, "--role")) {
        if (!strcmp(v, "auto")) a->role = FORCE_ROLE_AUTO;
        else if (!strcmp(v, "user")) a->role = FORCE_ROLE_USER;
        else if (!strcmp(v, "agent")) a->role = FORCE_ROLE_AGENT;
        else return usage("--role must be auto, user or agent", v);
    } else if (!strcmp(o, "--categories")) {
        categories_free(&a->file_cats);
        if (categories_load(v, &a->file_cats, err, sizeof err) < 0) {
            fprintf(stderr, "guardctl classify: %s\n", err);
            return 1;
        }
    } else if (!strcmp(o, "--exclude")) {
        if (exclude_parse(v, &a->exclude, &a->n_exclude, err, sizeof err) < 0) return usage("--exclude", err);
    } else return usage("unknown option", o);
    return 0;
}

static int parse_args(int argc, char **argv, Args *a) {
    a->opt.threshold = -1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--json")) a->json = 1;
        else if (!strcmp(o, "--stats")) a->stats = 1;
        else if (!strcmp(o, "--category-scores")) a->opt.category_scores = 1;
        else if (o[0] == '-' && o[1] == '-') {
            if (i + 1 >= argc) return usage("missing value for", o);
            int rc = parse_valued(a, o, argv[++i]);
            if (rc) return rc;
        } else if (!a->text) a->text = o;
        else return usage("more than one TEXT argument", o);
    }
    if (!a->opt.model_dir) return usage("--model DIR is required", NULL);
    return 0;
}

/* ---- input ---------------------------------------------------------------- */

typedef struct { JsonConv *v; int n; } Inputs;

static int add_text(const Args *a, Inputs *in) {
    in->v = calloc(1, sizeof *in->v);
    if (!in->v) return -1;
    conversation_add(&in->v[0].conv, ROLE_USER, a->text);
    in->n = 1;
    return 0;
}

/* Reads stdin conversation lines; checks each renders (cheap) so errors
 * surface before the model loads. Returns 0 or 1 after printing the error. */
static int read_inputs(const Args *a, Inputs *in) {
    char *line = NULL, err[400];
    size_t cap = 0;
    long len;
    int lineno = 0, rc = 0;
    while (rc == 0 && (len = json_read_line(stdin, &line, &cap, err, sizeof err)) != 0) {
        lineno++;
        if (len < 0) {
            fprintf(stderr, "guardctl classify: stdin line %d: %s\n", lineno, err);
            rc = 1;
            break;
        }
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        if (in->n == MAX_CONVERSATIONS) {
            fprintf(stderr, "guardctl classify: more than %d conversations on stdin\n", MAX_CONVERSATIONS);
            rc = 1;
            break;
        }
        JsonConv *nv = realloc(in->v, (size_t)(in->n + 1) * sizeof *nv);
        if (!nv) { rc = 1; break; }
        in->v = nv;
        if (json_conv_parse(line, (size_t)len, &in->v[in->n], err, sizeof err) < 0) {
            fprintf(stderr, "guardctl classify: stdin line %d: %s\n", lineno, err);
            rc = 1;
            break;
        }
        json_conv_apply_defaults(&in->v[in->n++], a->file_cats.n ? &a->file_cats : NULL, a->exclude, a->n_exclude);
        Prompt p;
        JsonConv *jc = &in->v[in->n - 1];
        if (prompt_render_as(a->opt.prompt_format, &jc->conv, jc->categories.n ? &jc->categories : NULL,
                             (const char *const *)jc->exclude, jc->n_exclude, (PromptRole)a->role, &p, err,
                             sizeof err) < 0) {
            fprintf(stderr, "guardctl classify: stdin line %d: %s\n", lineno, err);
            rc = 1;
        }
        prompt_free(&p);
    }
    free(line);
    if (rc == 0 && in->n == 0) {
        fprintf(stderr, "guardctl classify: no conversation on stdin (give TEXT or JSON lines)\n");
        rc = 1;
    }
    return rc;
}

static void free_inputs(Inputs *in) {
    for (int i = 0; i < in->n; i++) json_conv_free(&in->v[i]);
    free(in->v);
}

/* ---- output --------------------------------------------------------------- */

static void print_text(const ClassifyResult *r, const CategoryList *cats) {
    if (!r->unsafe) printf("safe");
    else {
        printf("unsafe ");
        for (int i = 0; i < r->n_categories; i++) printf("%s%s", i ? "," : "", r->codes[i]);
        if (r->n_categories == 0) printf("-");
    }
    printf(" %.6f", r->score);
    if (r->parse_error) printf(" parse_error");
    for (int i = 0; i < r->n_category_scores; i++)
        printf("%s%s:%.6f", i ? "," : " scores=", cats->items[i].code, r->category_scores[i]);
    printf("\n");
}

static void print_json(const ClassifyResult *r, const CategoryList *cats) {
    json_t *o = json_object(), *list = json_array();
    for (int i = 0; i < r->n_categories; i++)
        json_array_append_new(list, json_pack("{s:s,s:o}", "code", r->codes[i], "name",
                                              r->names[i] ? json_string(r->names[i]) : json_null()));
    json_object_set_new(o, "verdict", json_string(r->unsafe ? "unsafe" : "safe"));
    json_object_set_new(o, "categories", list);
    json_object_set_new(o, "score", json_real(r->score));
    json_object_set_new(o, "role", json_string(r->agent ? "agent" : "user"));
    json_object_set_new(o, "raw", r->raw ? json_string(r->raw) : json_null());
    json_object_set_new(o, "parse_error", json_boolean(r->parse_error));
    json_object_set_new(o, "tokens", json_pack("{s:i,s:i,s:i}", "prompt", r->prompt_tokens, "cached",
                                               r->cached_tokens, "decode", r->decode_tokens));
    if (r->category_scores) {
        json_t *cs = json_object();
        for (int i = 0; i < r->n_category_scores; i++)
            json_object_set_new(cs, cats->items[i].code, json_real(r->category_scores[i]));
        json_object_set_new(o, "category_scores", cs);
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(7));
    printf("%s\n", s ? s : "{\"error\":\"cannot encode\"}");
    free(s);
    json_decref(o);
}

/* ---- run ------------------------------------------------------------------ */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void print_stats(const Model *m, const ClassifyResult *res, int n, double load_s, double run_s) {
    long prompt = 0, cached = 0, decode = 0;
    int unsafe = 0;
    for (int i = 0; i < n; i++) {
        prompt += res[i].prompt_tokens;
        cached += res[i].cached_tokens;
        decode += res[i].decode_tokens;
        unsafe += res[i].unsafe;
    }
    fprintf(stderr, "stats: %d conversations (%d unsafe), load %.2f s, run %.3f s, prompt tokens %ld "
            "(prefilled %ld, from prefix cache %ld), generated tokens %ld, %.1f prompt tokens/s, "
            "precision %s (%s), peak RSS after load %ld kB\n",
            n, unsafe, load_s, run_s, prompt, prompt - cached, cached, decode,
            run_s > 0 ? (double)prompt / run_s : 0.0, precision_name(m->precision), m->kernels,
            m->peak_rss_kb);
}

static int classify_all(const Args *a, Inputs *in) {
    char err[512];
    double t0 = now();
    Classifier *c = classifier_open(&a->opt, err, sizeof err);
    double t1 = now();
    if (!c) {
        fprintf(stderr, "guardctl classify: %s\n", err);
        return 1;
    }
    ClassifyJob **jobs = calloc((size_t)in->n, sizeof *jobs);
    ClassifyResult *res = calloc((size_t)in->n, sizeof *res);
    int rc = jobs && res ? 0 : 1;
    for (int i = 0; rc == 0 && i < in->n; i++) {
        JsonConv *jc = &in->v[i];
        ClassifyRequest req = {.conv = &jc->conv, .categories = jc->categories.n ? &jc->categories : NULL,
                               .exclude = (const char *const *)jc->exclude, .n_exclude = jc->n_exclude,
                               .role = a->role};
        if (!(jobs[i] = classifier_prepare(c, &req, err, sizeof err))) {
            fprintf(stderr, "guardctl classify: conversation %d: %s\n", i + 1, err);
            rc = 1;
        }
    }
    int step = a->batch > 0 ? a->batch : in->n;
    for (int i = 0; rc == 0 && i < in->n; i += step) {
        int m = in->n - i < step ? in->n - i : step;
        if (classifier_run(c, jobs + i, m, res + i, err, sizeof err) < 0) {
            fprintf(stderr, "guardctl classify: %s\n", err);
            rc = 1;
        }
    }
    if (rc == 0 && a->stats) print_stats(classifier_model(c), res, in->n, t1 - t0, now() - t1);
    for (int i = 0; i < in->n; i++) {
        if (rc == 0) (a->json ? print_json : print_text)(&res[i], classify_job_categories(jobs[i]));
        if (res) classify_result_free(&res[i]);
        if (jobs) classify_job_free(jobs[i]);
    }
    free(jobs);
    free(res);
    classifier_close(c);
    return rc;
}

/* --prompt-format auto: decided from the model directory now, so input is
 * validated with the right family before the model loads. */
static int resolve_format(Args *a) {
    char err[600];
    if (a->opt.prompt_format != PROMPT_FORMAT_AUTO) return 0;
    if (prompt_format_detect(a->opt.model_dir, &a->opt.prompt_format, NULL, 0, err, sizeof err) < 0) {
        fprintf(stderr, "guardctl classify: %s\n", err);
        return 1;
    }
    return 0;
}

int ctl_classify(int argc, char **argv) {
    Args a = {0};
    Inputs in = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc == 0) rc = resolve_format(&a);
    if (rc == 0) rc = a.text ? (add_text(&a, &in) < 0) : read_inputs(&a, &in);
    if (rc == 0 && a.text) { /* TEXT gets the command-line categories too */
        json_conv_apply_defaults(&in.v[0], a.file_cats.n ? &a.file_cats : NULL, a.exclude, a.n_exclude);
    }
    if (rc == 0) rc = classify_all(&a, &in);
    free_inputs(&in);
    categories_free(&a.file_cats);
    exclude_free(a.exclude, a.n_exclude);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
