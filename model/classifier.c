/* classifier.c - Llama Guard 3 on the tokenizer and the batched transformer
 * (contract: classifier.h).
 *
 * prepare: render (prompt.c) -> token ids: the policy preamble
 *   (instructions + category list, depends on role word + categories only),
 *   then the conversation + closing instructions + the forced first output
 *   token "\n\n".
 * run, for a batch of jobs:
 *   1. reuse (plan_reuse): each job reads the K/V of the longest start of its
 *      prompt found in the prefix cache (prefix_cache.h: blocks keyed by token
 *      content, kept across runs within cache_max_bytes), or, if longer, the
 *      start it shares with an earlier job of the batch, which that job
 *      computes in the same forward pass: a shared uncached prefix is
 *      computed once. The policy preamble is just the most shared prefix;
 *   2. one forward over every job's remaining tokens, logits at the last
 *      position only -> softmax over the full vocabulary ->
 *      score = P("unsafe") (Meta's scoring method, "\n\n" being forced);
 *   3. first decision (verdict.c): greedy argmax or score >= threshold;
 *   4. jobs that are not safe decode greedily, all together, one forward per
 *      step, until <|eot_id|> (or another EOS) or max_decode_tokens; the text
 *      is parsed by verdict_parse (unparseable -> unsafe + parse_error).
 *      Unsafe jobs feed "unsafe" "\n" "S" in one step and keep what greedy
 *      decoding confirms (a fixed draft: the format makes it near certain),
 *      saving two of the ~4 weight-bound decode steps of "unsafe\nS1".
 *   Optional per-category scores read the same draft's distributions; then
 *   the draft rides along in the prompt pass (see first_pass).
 * After a successful run the whole blocks of every prompt go into the prefix
 * cache (within its budget), and each job's preamble blocks are marked most
 * recently used, so the active policy preambles outlive conversation blocks.
 * Everything else a run allocates is freed before it returns.
 */
#include "errmsg.h"
#include "classifier.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kvcache.h"
#include "prefix_cache.h"
#include "prompt.h"
#include "prompt_format.h"
#include "transformer.h"
#include "utf8.h"
#include "verdict.h"

#define CAT_FORCED 3 /* "unsafe" "\n" "S" */

struct Classifier {
    ClassifierOptions opt;
    Model *model;
    Tokenizer *tok;
    Transformer *tf;
    PromptFormat format;
    char format_note[600];
    int vocab;
    int id_safe, id_unsafe, id_nn, id_nl, id_s;
    int stop_ids[MODEL_MAX_EOS + 1];
    int n_stop;
    PrefixCache *pc;     /* K/V of earlier prompts, by token content */
    const atomic_int *abort; /* classifier_set_abort */
};

struct ClassifyJob {
    TokenVec prefix;    /* policy preamble */
    TokenVec own;       /* conversation + tail + "\n\n" */
    TokenVec all;       /* prefix then own: the whole prompt */
    CategoryList active;
    int agent;
    int *cat_tok;       /* per active category: [position (0 after "\n", 1 after "S"), token] */
};

/* ---- tokenizer glue (declared in prompt.h) ------------------------------ */

/* Ids of s[0..n), a run of special tokens written back to back, e.g.
 * "<|eot_id|><|start_header_id|>", and the plain words between them (the
 * 8B's leading space). */
/* First occurrence of the two bytes a b in s[0..n), or NULL. */
static const char *find_pair(const char *s, size_t n, char a, char b) {
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == a && s[i + 1] == b) return s + i;
    return NULL;
}

static int encode_specials(const Tokenizer *t, const char *s, size_t n, TokenVec *out, char *err,
                           size_t errlen) {
    const char *end_all = s + n;
    while (s < end_all) {
        size_t left = (size_t)(end_all - s);
        const char *end = left >= 2 && s[0] == '<' && s[1] == '|' ? find_pair(s, left, '|', '>') : NULL;
        if (end) {
            char piece[64];
            size_t k = (size_t)(end + 2 - s);
            if (k >= sizeof piece) break;
            memcpy(piece, s, k);
            piece[k] = 0;
            int id = tokenizer_token_id(t, piece);
            if (id < 0) {
                errmsg(err, errlen, "tokenizer has no special token %s", piece);
                return -1;
            }
            tokvec_push(out, id);
            s += k;
        } else {
            const char *next = find_pair(s, left, '<', '|');
            size_t k = next && next > s ? (size_t)(next - s) : left;
            if (tokenizer_encode(t, s, k, 0, out, err, errlen) < 0) return -1;
            s += k;
        }
    }
    if (s != end_all) {
        errmsg(err, errlen, "prompt template has a malformed special token");
        return -1;
    }
    return 0;
}

int prompt_tokenize(const Tokenizer *t, const Prompt *p, TokenVec *prefix_ids,
                    TokenVec *rest_ids, char *err, size_t errlen) {
    if (encode_specials(t, p->text, p->body_start, prefix_ids, err, errlen) < 0) return -1;
    if (tokenizer_encode(t, p->text + p->body_start, p->prefix_len - p->body_start, 0,
                         prefix_ids, err, errlen) < 0)
        return -1;
    if (tokenizer_encode(t, p->text + p->prefix_len, p->tail_start - p->prefix_len, 0,
                         rest_ids, err, errlen) < 0)
        return -1;
    return encode_specials(t, p->text + p->tail_start, p->len - p->tail_start, rest_ids, err, errlen);
}

/* ---- open / close ---------------------------------------------------------- */

/* The id of text when it is exactly one token, else -1. */
static int single_token(const Tokenizer *t, const char *text) {
    TokenVec v = {0};
    char err[64];
    int id = -1;
    if (tokenizer_encode(t, text, strlen(text), 0, &v, err, sizeof err) == 0 && v.n == 1) id = v.ids[0];
    tokvec_free(&v);
    return id;
}

static int lookup_ids(Classifier *c, char *err, size_t errlen) {
    c->id_safe = single_token(c->tok, "safe");
    c->id_unsafe = single_token(c->tok, "unsafe");
    c->id_nn = single_token(c->tok, "\n\n");
    c->id_nl = single_token(c->tok, "\n");
    c->id_s = single_token(c->tok, "S");
    int eot = tokenizer_token_id(c->tok, "<|eot_id|>");
    const int need[] = {c->id_safe, c->id_unsafe, c->id_nn, c->id_nl, c->id_s, eot};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (need[i] < 0 || need[i] >= c->vocab) {
            errmsg(err, errlen, "tokenizer lacks a Llama Guard token (safe/unsafe/\\n\\n/\\n/S/<|eot_id|>) "
                   "or it is outside the model's vocabulary of %d", c->vocab);
            return -1;
        }
    c->stop_ids[c->n_stop++] = eot;
    for (int i = 0; i < c->model->cfg.n_eos && c->n_stop <= MODEL_MAX_EOS; i++)
        c->stop_ids[c->n_stop++] = c->model->cfg.eos_ids[i];
    return 0;
}

/* The configured prompt family, else the one tokenizer_config.json names;
 * decided before the (slow) weight load so a refusal comes at once. */
static int choose_format(Classifier *c, char *err, size_t errlen) {
    PromptFormat f = c->opt.prompt_format;
    if (f == PROMPT_FORMAT_LG3_1B || f == PROMPT_FORMAT_LG3_8B) {
        c->format = f;
        snprintf(c->format_note, sizeof c->format_note, "configured");
        return 0;
    }
    if (f != PROMPT_FORMAT_AUTO) return errmsg(err, errlen, "unknown prompt format %d", (int)f);
    return prompt_format_detect(c->opt.model_dir, &c->format, c->format_note, sizeof c->format_note,
                                err, errlen) < 0 ? -1 : 0;
}

static size_t cache_budget(long long max_bytes) {
    if (max_bytes == 0) return CLASSIFIER_CACHE_DEFAULT_BYTES;
    return max_bytes < 0 ? 0 : (size_t)max_bytes;
}

Classifier *classifier_open(const ClassifierOptions *opt, char *err, size_t errlen) {
    if (!opt || !opt->model_dir) {
        errmsg(err, errlen, "no model directory given");
        return NULL;
    }
    Classifier *c = calloc(1, sizeof *c);
    if (!c) {
        errmsg(err, errlen, "out of memory");
        return NULL;
    }
    c->opt = *opt;
    if (c->opt.max_decode_tokens <= 0) c->opt.max_decode_tokens = 16;
    /* a pass must hold a job's logit rows (1 + the draft) in one piece */
    if (c->opt.step_tokens <= 0) c->opt.step_tokens = CLASSIFIER_STEP_TOKENS;
    if (c->opt.step_tokens < 1 + CAT_FORCED) c->opt.step_tokens = 1 + CAT_FORCED;
    if (c->opt.step_tokens > TRANSFORMER_MAX_BATCH_TOKENS) c->opt.step_tokens = TRANSFORMER_MAX_BATCH_TOKENS;
    char path[4096], sub[512];
    const char *tp = opt->tokenizer_path;
    if (!tp) {
        snprintf(path, sizeof path, "%s/tokenizer.json", opt->model_dir);
        tp = path;
    }
    if (choose_format(c, err, errlen) < 0) goto fail;
    blis_setup(opt->threads, opt->blis_arch);
    if (!(c->model = model_load_precision(opt->model_dir, opt->precision, sub, sizeof sub))) {
        errmsg(err, errlen, "%s", sub);
        goto fail;
    }
    c->vocab = c->model->cfg.vocab_size;
    if (!(c->tok = tokenizer_load(tp, sub, sizeof sub))) {
        errmsg(err, errlen, "%s", sub);
        goto fail;
    }
    if (lookup_ids(c, err, errlen) < 0) goto fail;
    if (!(c->tf = transformer_new(c->model, opt->threads))) {
        errmsg(err, errlen, "cannot set up the transformer (out of memory?)");
        goto fail;
    }
    PrefixCacheOptions po = {.block_tokens = opt->cache_block_tokens > 0 ? opt->cache_block_tokens
                                                                        : CLASSIFIER_CACHE_BLOCK_TOKENS,
                             .max_bytes = cache_budget(opt->cache_max_bytes),
                             .test_collide = opt->cache_test_collide};
    if (!(c->pc = prefix_cache_new(&c->model->cfg, &po))) {
        errmsg(err, errlen, "cannot set up the prefix cache (block of %d tokens)", po.block_tokens);
        goto fail;
    }
    return c;
fail:
    classifier_close(c);
    return NULL;
}

void classifier_close(Classifier *c) {
    if (!c) return;
    prefix_cache_free(c->pc);
    transformer_free(c->tf);
    tokenizer_free(c->tok);
    model_free(c->model);
    free(c);
}

const Model *classifier_model(const Classifier *c) { return c->model; }
const Tokenizer *classifier_tokenizer(const Classifier *c) { return c->tok; }
void classifier_set_threshold(Classifier *c, float threshold) { c->opt.threshold = threshold; }
void classifier_set_category_scores(Classifier *c, int on) { c->opt.category_scores = on != 0; }
PromptFormat classifier_prompt_format(const Classifier *c) { return c->format; }
const char *classifier_prompt_format_note(const Classifier *c) { return c->format_note; }
const CategoryList *classifier_default_categories(const Classifier *c) {
    return prompt_default_categories(c->format);
}
void classifier_set_progress(Classifier *c, void (*fn)(void *arg), void *arg) {
    transformer_set_progress(c->tf, fn, arg);
}

void classifier_set_abort(Classifier *c, const atomic_int *flag) {
    c->abort = flag;
    transformer_set_abort(c->tf, flag);
}

void classifier_set_cache_max_bytes(Classifier *c, long long max_bytes) {
    c->opt.cache_max_bytes = max_bytes;
    prefix_cache_set_max_bytes(c->pc, cache_budget(max_bytes));
}

void classifier_cache_stats(const Classifier *c, ClassifierCacheStats *s) {
    PrefixCacheStats p;
    prefix_cache_stats(c->pc, &p);
    *s = (ClassifierCacheStats){.bytes = p.bytes, .max_bytes = p.max_bytes, .peak_bytes = p.peak_bytes,
                                .blocks = p.blocks, .evictions = p.evictions};
}

/* ---- prepare ----------------------------------------------------------------- */

/* For each active code, where its probability is read in the forced
 * "unsafe\nS" continuation: a code tokenized "S" + N reads token N after "S"
 * (position 1); any other code reads its first token after "\n" (position 0). */
static int category_tokens(const Classifier *c, ClassifyJob *j, char *err, size_t errlen) {
    j->cat_tok = calloc((size_t)j->active.n * 2, sizeof *j->cat_tok);
    if (!j->cat_tok) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < j->active.n; i++) {
        TokenVec v = {0};
        const char *code = j->active.items[i].code;
        if (tokenizer_encode(c->tok, code, strlen(code), 0, &v, err, errlen) < 0 || v.n == 0) {
            tokvec_free(&v);
            free(j->cat_tok);   /* no half-filled table for a later run */
            j->cat_tok = NULL;
            return -1;
        }
        int after_s = v.n >= 2 && v.ids[0] == c->id_s;
        j->cat_tok[2 * i] = after_s;
        j->cat_tok[2 * i + 1] = v.ids[after_s];
        tokvec_free(&v);
    }
    return 0;
}

static int check_length(const Classifier *c, const ClassifyJob *j, char *err, size_t errlen) {
    int total = (int)(j->prefix.n + j->own.n);
    int room = c->opt.max_decode_tokens > CAT_FORCED ? c->opt.max_decode_tokens : CAT_FORCED;
    if (c->opt.max_prompt_tokens > 0 && total > c->opt.max_prompt_tokens) {
        errmsg(err, errlen, "prompt is %d tokens, over the limit of %d", total, c->opt.max_prompt_tokens);
        return -1;
    }
    if (total > CLASSIFIER_MAX_PROMPT_TOKENS) {
        errmsg(err, errlen, "prompt is %d tokens, over the engine's limit of %d", total,
               CLASSIFIER_MAX_PROMPT_TOKENS);
        return -1;
    }
    if ((long)total + room > c->model->cfg.max_pos) {
        errmsg(err, errlen, "prompt is %d tokens; with %d decode tokens it exceeds the model's %d positions",
               total, room, c->model->cfg.max_pos);
        return -1;
    }
    return 0;
}

ClassifyJob *classifier_prepare(Classifier *c, const ClassifyRequest *req, char *err, size_t errlen) {
    if (!c || !req) {
        errmsg(err, errlen, "bad arguments");
        return NULL;
    }
    Prompt p;
    if (prompt_render_as(c->format, req->conv, req->categories, req->exclude, req->n_exclude,
                         (PromptRole)req->role, &p, err, errlen) < 0)
        return NULL;
    ClassifyJob *j = calloc(1, sizeof *j);
    if (!j) {
        prompt_free(&p);
        errmsg(err, errlen, "out of memory");
        return NULL;
    }
    j->agent = p.agent;
    int rc = prompt_tokenize(c->tok, &p, &j->prefix, &j->own, err, errlen);
    j->active = p.active; /* the job takes the category copy over */
    p.active = (CategoryList){0};
    prompt_free(&p);
    if (rc == 0) {
        tokvec_push(&j->own, c->id_nn);
        rc = check_length(c, j, err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < j->prefix.n + j->own.n; i++)
        tokvec_push(&j->all, i < j->prefix.n ? j->prefix.ids[i] : j->own.ids[i - j->prefix.n]);
    if (rc == 0 && c->opt.category_scores) rc = category_tokens(c, j, err, errlen);
    if (rc < 0) {
        classify_job_free(j);
        return NULL;
    }
    return j;
}

int classify_job_new_tokens(const ClassifyJob *j) { return (int)j->own.n; }

int classifier_prefill_estimate(const Classifier *c, const ClassifyJob *j) {
    int n = (int)j->all.n;
    /* the limit plan_reuse gives prefix_cache_match: the last token's logits decide */
    int cached = prefix_cache_peek(c->pc, j->all.ids, n, n - 1);
    int left = n - cached;
    return left < (int)j->own.n ? left : (int)j->own.n;
}

const int *classify_job_tokens(const ClassifyJob *j, int *n) {
    *n = (int)j->all.n;
    return j->all.ids;
}

const CategoryList *classify_job_categories(const ClassifyJob *j) { return &j->active; }

void classify_job_free(ClassifyJob *j) {
    if (!j) return;
    tokvec_free(&j->prefix);
    tokvec_free(&j->all);
    tokvec_free(&j->own);
    categories_free(&j->active);
    free(j->cat_tok);
    free(j);
}

/* ---- run: forward passes of bounded size ------------------------------------ */

/* Runs in[0..n) as transformer_forward would in one pass, but as passes of
 * bounded work: sequences are taken in order and a long one is cut into
 * pieces (its cache grows piece by piece; positions follow from the cache
 * length, so the result is the same). A sequence's last piece holds all its
 * logit rows. Sequences stay in order, so a job reading positions another
 * job of the batch computes (plan_reuse) finds them written: in an earlier
 * pass, or earlier in the same layer of the same pass. Every new token is
 * computed once either way; what is bounded is the scratch memory and the
 * work between two progress calls.
 *
 * Work of a row ~ weights (the same at any position) + attention (grows with
 * its context). On the Llama 3.2 1B shape the two are about equal at a
 * context of 2048 (attention runs well below GEMM speed), so a row at context
 * c counts (STEP_CTX + c) / STEP_CTX rows: a pass takes step_tokens rows at a
 * short context and proportionally fewer deep in a long prompt (about 60 at
 * 65,536), keeping one layer of a pass near a second on 2 cores. */
#define STEP_CTX 2048L
static int forward_steps(Classifier *c, const SeqInput *in, int n, char *err, size_t errlen) {
    int step = c->opt.step_tokens, rc = 0, i = 0, done = 0; /* done: tokens of in[i] fed */
    long budget = step * STEP_CTX;
    SeqInput *part = calloc((size_t)(n ? n : 1), sizeof *part);
    if (!part) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    while (i < n && rc == 0) {
        int m = 0;
        long used = 0;
        while (i < n) {
            int left = in[i].n_tokens - done;
            if (left <= 0) { i++; done = 0; continue; }
            /* cost of a row of this piece, at most: its last position's context */
            long per_row = STEP_CTX + kv_len(in[i].kv) + (left < step ? left : step);
            long fit = (budget - used) / per_row;
            int take = left <= fit ? left : (int)fit;
            if (take < left && left - take < in[i].n_logits) take = left - in[i].n_logits;
            if (take <= 0) {
                if (m > 0) break;               /* next pass */
                take = left;                    /* cannot happen below ~4M positions */
            }
            int last = done + take == in[i].n_tokens;
            part[m++] = (SeqInput){.tokens = in[i].tokens + done, .n_tokens = take, .kv = in[i].kv,
                                   .n_logits = last ? in[i].n_logits : 0, .logits = in[i].logits};
            used += take * per_row;
            done += take;
            if (last) { i++; done = 0; }
            else break;                         /* the pass is full */
        }
        if (m > 0) rc = transformer_forward(c->tf, part, m, err, errlen);
    }
    free(part);
    return rc;
}

/* ---- run: prefix cache ------------------------------------------------------ */

/* Per job state during one run. */
typedef struct {
    ClassifyJob *job;
    ClassifyResult *res;
    const int *seq;     /* the whole prompt (job->all) */
    int n_seq;
    int reuse;          /* positions read, not computed (from the prefix cache
                           or another job of the batch); own K/V starts here */
    PrefixMatch match;  /* prefix cache blocks pinned for this run */
    KVSegment *view;    /* K/V of positions [0, reuse) */
    int n_view;
    KVCache *kv;
    FirstDecision first;
    int *gen;           /* generated tokens (max_decode_tokens) */
    int n_gen, done;
    int draft;          /* still to feed the draft "unsafe" "\n" "S" */
} RunSeq;

/* Segments holding positions [0, len) of r's prompt (len <= n_seq): its
 * view, then its own K/V, cut at len. out has room for n_view + 1. */
static int clip_segments(const RunSeq *r, int len, KVSegment *out) {
    int n = 0, have = 0;
    for (int s = 0; s < r->n_view && have < len; s++) {
        out[n] = r->view[s];
        if (out[n].len > len - have) out[n].len = len - have;
        have += out[n++].len;
    }
    if (have < len) out[n++] = (KVSegment){r->kv->k, r->kv->v, len - have, r->kv->capacity};
    return n;
}

static int common_start(const int *a, const int *b, int n) {
    int k = 0;
    while (k < n && a[k] == b[k]) k++;
    return k;
}

/* Where each job's K/V comes from: the longest cached start of its prompt,
 * or, if longer, the start it shares with an earlier job of the batch, read
 * through that job's segments (its own positions are written in the same
 * forward pass before any attention reads them, kvcache.h). The last prompt
 * token is always computed: its logits decide. */
static int plan_reuse(Classifier *c, RunSeq *rs, int n, int room, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        RunSeq *r = &rs[i];
        int limit = r->n_seq - 1, from = -1;
        if (prefix_cache_match(c->pc, r->seq, r->n_seq, limit, &r->match) < 0)
            return errmsg(err, errlen, "out of memory for a prefix cache lookup");
        r->reuse = r->match.n_tokens;
        for (int j = 0; j < i; j++) {
            int k = common_start(r->seq, rs[j].seq, limit < rs[j].n_seq ? limit : rs[j].n_seq);
            if (k > r->reuse) {
                r->reuse = k;
                from = j;
            }
        }
        int room_segs = from >= 0 ? rs[from].n_view + 1 : r->match.n_segs;
        if (!(r->view = malloc(sizeof *r->view * (size_t)(room_segs > 0 ? room_segs : 1))))
            return errmsg(err, errlen, "out of memory");
        if (from >= 0) {
            r->n_view = clip_segments(&rs[from], r->reuse, r->view);
        } else {
            if (r->match.n_segs) memcpy(r->view, r->match.segs, sizeof *r->view * (size_t)r->match.n_segs);
            r->n_view = r->match.n_segs;
        }
        if (!(r->kv = kv_new_view(&c->model->cfg, r->n_seq - r->reuse + room, r->view, r->n_view)))
            return errmsg(err, errlen, "out of memory for the K/V cache of job %d", i);
    }
    return 0;
}

/* After a successful run: every prompt's whole blocks into the cache, pins
 * released, then each job's policy preamble marked most recently used. */
static void cache_prompts(Classifier *c, RunSeq *rs, int n) {
    for (int i = 0; i < n; i++) {
        KVSegment *segs = malloc(sizeof *segs * (size_t)(rs[i].n_view + 1));
        if (!segs) break;   /* only a missed optimisation */
        int ns = clip_segments(&rs[i], rs[i].n_seq, segs);
        prefix_cache_insert(c->pc, rs[i].seq, rs[i].n_seq, segs, ns);
        free(segs);
    }
    for (int i = 0; i < n; i++) prefix_cache_release(c->pc, &rs[i].match);
    for (int i = 0; i < n; i++) prefix_cache_touch(c->pc, rs[i].seq, (int)rs[i].job->prefix.n);
}

/* ---- run: first position ------------------------------------------------------ */

static int check_finite(const float *row, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++)
        if (!isfinite(row[i])) {
            errmsg(err, errlen, "the model produced a non-finite logit (id %d)", i);
            return -1;
        }
    return 0;
}

static int is_stop(const Classifier *c, int id) {
    for (int i = 0; i < c->n_stop; i++)
        if (c->stop_ids[i] == id) return 1;
    return 0;
}

/* Per-category scores, an extension (not an official Llama Guard output):
 * rows[0] is the distribution right after the forced "unsafe" "\n", rows[1]
 * right after "unsafe" "\n" "S". A code that tokenizes as "S" + N scores the
 * probability of N in rows[1] (S1 -> "1", S10 -> "10": distinct tokens, so
 * S1 and S10 do not mix); any other code the probability of its first token
 * in rows[0]. It approximates P(first listed category = code | unsafe): the
 * model lists codes in order, so categories it would list second or later are
 * underestimated, and codes of four or more digits only see their first
 * three-digit token. */
static int category_scores(const Classifier *c, RunSeq *r, const float *rows, char *err, size_t errlen) {
    const ClassifyJob *j = r->job;
    size_t V = (size_t)c->vocab;
    double lse[2] = {logits_logsumexp(rows, c->vocab), logits_logsumexp(rows + V, c->vocab)};
    float *sc = calloc((size_t)j->active.n, sizeof *sc);
    if (!sc) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    for (int k = 0; k < j->active.n; k++) {
        int pos = j->cat_tok[2 * k];
        sc[k] = logits_prob(rows + (size_t)pos * V, c->vocab, lse[pos], j->cat_tok[2 * k + 1]);
    }
    r->res->category_scores = sc;
    r->res->n_category_scores = j->active.n;
    return 0;
}

/* The draft "unsafe" "\n" "S" was fed after the job's tokens; rows[k] holds
 * the logits after draft[k]. Keeps what greedy decoding would have produced
 * (verdict.c: draft_accept) and rewinds the cache past the rest. */
static void take_draft(const Classifier *c, RunSeq *r, const float *rows) {
    const int draft[CAT_FORCED] = {c->id_unsafe, c->id_nl, c->id_s};
    int pred[CAT_FORCED], base = kv_own_len(r->kv) - CAT_FORCED;
    for (int k = 0; k < CAT_FORCED; k++) pred[k] = logits_argmax(rows + (size_t)k * c->vocab, c->vocab);
    int acc = draft_accept(draft, pred, CAT_FORCED), next = pred[acc - 1];
    if (acc > c->opt.max_decode_tokens) acc = c->opt.max_decode_tokens;
    memcpy(r->gen, draft, (size_t)acc * sizeof *draft);
    r->n_gen = acc;
    kv_truncate(r->kv, base + acc);
    if (is_stop(c, next) || r->n_gen >= c->opt.max_decode_tokens) r->done = 1;
    else r->gen[r->n_gen++] = next;
}

/* Decision from the row after "\n\n": score, greedy/threshold verdict and
 * the first generated token of jobs that will decode. */
static int decide(const Classifier *c, RunSeq *r, const float *row, char *err, size_t errlen) {
    if (check_finite(row, c->vocab, err, errlen) < 0) return -1;
    double lse = logits_logsumexp(row, c->vocab);
    int top = logits_argmax(row, c->vocab);
    r->res->score = logits_prob(row, c->vocab, lse, c->id_unsafe);
    r->first = verdict_decide(r->res->score, c->opt.threshold, top, c->id_safe, c->id_unsafe);
    r->done = r->first == FIRST_SAFE || (r->first == FIRST_OTHER && is_stop(c, top));
    r->draft = r->first == FIRST_UNSAFE;
    if (r->first == FIRST_OTHER && !r->done) {
        r->gen[0] = top;
        r->n_gen = 1;
    }
    return 0;
}

/* The prompt pass: every job's own tokens in one forward, logits at the last
 * position. With category scores on, the draft "unsafe" "\n" "S" is appended
 * to every job in the same pass (4 logit rows): the scores need it anyway,
 * and unsafe jobs then start decoding three tokens in. */
static int first_pass(Classifier *c, RunSeq *rs, int n, char *err, size_t errlen) {
    size_t V = (size_t)c->vocab;
    int fold = c->opt.category_scores, rows = fold ? 1 + CAT_FORCED : 1, rc = -1;
    const int draft[CAT_FORCED] = {c->id_unsafe, c->id_nl, c->id_s};
    float *logits = malloc((size_t)n * rows * V * sizeof *logits);
    SeqInput *in = calloc((size_t)n, sizeof *in);
    int **toks = calloc((size_t)n, sizeof *toks);
    if (!logits || !in || !toks) {
        errmsg(err, errlen, "out of memory for %d x %d logit rows", n, rows);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        size_t own = (size_t)(rs[i].n_seq - rs[i].reuse);
        if (!(toks[i] = malloc((own + CAT_FORCED) * sizeof **toks))) {
            errmsg(err, errlen, "out of memory");
            goto done;
        }
        memcpy(toks[i], rs[i].seq + rs[i].reuse, own * sizeof **toks);
        memcpy(toks[i] + own, draft, sizeof draft);
        in[i] = (SeqInput){.tokens = toks[i], .n_tokens = (int)own + (fold ? CAT_FORCED : 0),
                           .kv = rs[i].kv, .n_logits = rows, .logits = logits + (size_t)i * rows * V};
    }
    if (forward_steps(c, in, n, err, errlen) < 0) goto done;
    for (int i = 0; i < n; i++) {
        const float *r0 = logits + (size_t)i * rows * V;
        if (decide(c, &rs[i], r0, err, errlen) < 0) goto done;
        if (c->opt.keep_logits) {
            if (!(rs[i].res->logits = malloc(V * sizeof *logits))) {
                errmsg(err, errlen, "out of memory");
                goto done;
            }
            memcpy(rs[i].res->logits, r0, V * sizeof *logits);
        }
        if (!fold) continue;
        if (category_scores(c, &rs[i], r0 + 2 * V, err, errlen) < 0) goto done;
        if (rs[i].draft) take_draft(c, &rs[i], r0 + V);
        else kv_truncate(rs[i].kv, rs[i].n_seq - rs[i].reuse);
        rs[i].draft = 0;
    }
    rc = 0;
done:
    for (int i = 0; toks && i < n; i++) free(toks[i]);
    free(toks);
    free(logits);
    free(in);
    return rc;
}

/* ---- run: decode ------------------------------------------------------------- */

/* Greedy decoding of every job that is not done, all together, one forward
 * per step. A job still owing its draft feeds "unsafe" "\n" "S" at once (3
 * logit rows); the others feed their last generated token. Invariant: a job's
 * cache holds its tokens and gen[0..n_gen-1); gen[n_gen-1] is fed next. */
static int decode(Classifier *c, RunSeq *rs, int n, char *err, size_t errlen) {
    size_t V = (size_t)c->vocab;
    int max = c->opt.max_decode_tokens, rc = -1;
    const int draft[CAT_FORCED] = {c->id_unsafe, c->id_nl, c->id_s};
    size_t rows = 0; /* the first step needs the most: drafts only happen there */
    for (int i = 0; i < n; i++) rows += rs[i].done ? 0 : rs[i].draft ? CAT_FORCED : 1;
    if (rows == 0) return 0;
    float *logits = malloc(rows * V * sizeof *logits);
    SeqInput *in = calloc((size_t)n, sizeof *in);
    int *who = calloc((size_t)n, sizeof *who);
    if (!logits || !in || !who) {
        errmsg(err, errlen, "out of memory for decoding");
        goto done;
    }
    for (;;) {
        int m = 0;
        float *next_rows = logits;
        for (int i = 0; i < n; i++) {
            if (rs[i].done) continue;
            int d = rs[i].draft;
            in[m] = (SeqInput){.tokens = d ? draft : &rs[i].gen[rs[i].n_gen - 1], .n_tokens = d ? CAT_FORCED : 1,
                               .kv = rs[i].kv, .n_logits = d ? CAT_FORCED : 1, .logits = next_rows};
            next_rows += (size_t)in[m].n_logits * V;
            who[m++] = i;
        }
        if (m == 0) break;
        if (forward_steps(c, in, m, err, errlen) < 0) goto done;
        for (int k = 0; k < m; k++) {
            RunSeq *r = &rs[who[k]];
            if (r->draft) {
                take_draft(c, r, in[k].logits);
                r->draft = 0;
                continue;
            }
            int next = logits_argmax(in[k].logits, c->vocab);
            if (is_stop(c, next) || r->n_gen >= max) r->done = 1;
            else r->gen[r->n_gen++] = next;
        }
    }
    rc = 0;
done:
    free(logits);
    free(in);
    free(who);
    return rc;
}

/* ---- run: results -------------------------------------------------------------- */

/* Generated tokens may end inside a multi-byte character, and a random or
 * broken model can emit any byte sequence: invalid UTF-8 becomes U+FFFD (as
 * Hugging Face's decode does), so raw is always valid UTF-8 for JSON/msgpack. */
static char *decode_text(const Classifier *c, const int *ids, int n) {
    size_t len = 0;
    char *t = tokenizer_decode(c->tok, ids, (size_t)n, &len);
    if (!t || utf8_valid(t, len)) return t;
    char *o = malloc(len * 3 + 1); /* each bad byte -> 3 bytes */
    size_t w = 0;
    for (size_t i = 0; o && i < len;) {
        size_t k = 1;
        while (k <= 4 && i + k <= len && !utf8_valid(t + i, k)) k++;
        if (k <= 4 && i + k <= len) {
            memcpy(o + w, t + i, k);
            w += k;
            i += k;
        } else {
            memcpy(o + w, "\xef\xbf\xbd", 3);
            w += 3;
            i++;
        }
    }
    if (o) o[w] = 0;
    free(t);
    return o;
}

static void fill_result(Classifier *c, RunSeq *r) {
    ClassifyResult *res = r->res;
    res->agent = r->job->agent;
    res->prompt_tokens = r->n_seq;
    res->cached_tokens = r->reuse;
    if (r->first == FIRST_SAFE) {
        res->unsafe = 0;
        res->raw = strdup("safe");
        return;
    }
    res->raw = decode_text(c, r->gen, r->n_gen);
    res->decode_tokens = r->n_gen;
    Verdict v;
    verdict_parse(res->raw ? res->raw : "", &r->job->active, &v);
    res->unsafe = 1;
    /* FIRST_OTHER: the verdict token itself was off-format. A forced
     * "unsafe" whose text still reads "safe" cannot happen; be strict anyway. */
    res->parse_error = v.parse_error || !v.unsafe || r->first == FIRST_OTHER;
    res->n_categories = v.n_codes;
    res->codes = v.codes;
    res->names = v.names;
    v.codes = v.names = NULL;
    v.n_codes = 0;
    verdict_free(&v);
}

void classify_result_free(ClassifyResult *r) {
    if (!r) return;
    for (int i = 0; i < r->n_categories; i++) {
        if (r->codes) free(r->codes[i]);
        if (r->names) free(r->names[i]);
    }
    free(r->codes);
    free(r->names);
    free(r->category_scores);
    free(r->logits);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

static int setup_seqs(Classifier *c, RunSeq *rs, ClassifyJob **jobs, int n, ClassifyResult *results,
                      char *err, size_t errlen) {
    int room = c->opt.max_decode_tokens > CAT_FORCED ? c->opt.max_decode_tokens : CAT_FORCED;
    for (int i = 0; i < n; i++) {
        if (!jobs[i]) {
            errmsg(err, errlen, "job %d is NULL", i);
            return -1;
        }
        rs[i].job = jobs[i];
        rs[i].res = &results[i];
        /* scores switched on after the job was prepared */
        if (c->opt.category_scores && !jobs[i]->cat_tok && category_tokens(c, jobs[i], err, errlen) < 0)
            return -1;
        rs[i].seq = jobs[i]->all.ids;
        rs[i].n_seq = (int)jobs[i]->all.n;
        rs[i].gen = calloc((size_t)c->opt.max_decode_tokens, sizeof *rs[i].gen);
        if (!rs[i].gen) {
            errmsg(err, errlen, "out of memory");
            return -1;
        }
    }
    return plan_reuse(c, rs, n, room, err, errlen);
}

int classifier_run(Classifier *c, ClassifyJob **jobs, int n, ClassifyResult *results,
                   char *err, size_t errlen) {
    if (!c || n < 0 || (n > 0 && (!jobs || !results))) {
        errmsg(err, errlen, "bad arguments");
        return -1;
    }
    if (n == 0) return 0;
    memset(results, 0, (size_t)n * sizeof *results);
    RunSeq *rs = calloc((size_t)n, sizeof *rs);
    int rc = -1;
    if (!rs) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    if (setup_seqs(c, rs, jobs, n, results, err, errlen) == 0 &&
        first_pass(c, rs, n, err, errlen) == 0 && decode(c, rs, n, err, errlen) == 0) {
        for (int i = 0; i < n; i++) fill_result(c, &rs[i]);
        cache_prompts(c, rs, n);
        rc = 0;
    } else if (c->abort && atomic_load(c->abort)) {
        rc = CLASSIFIER_ABORTED;    /* the K/V of this run is dropped below */
    }
    for (int i = 0; i < n; i++) {
        prefix_cache_release(c->pc, &rs[i].match);
        kv_free(rs[i].kv);
        free(rs[i].view);
        free(rs[i].gen);
        if (rc < 0) classify_result_free(&results[i]);
    }
    free(rs);
    return rc;
}
