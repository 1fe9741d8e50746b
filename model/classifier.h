/* classifier.h - Llama Guard 3 on top of the tokenizer and the transformer.
 *
 * Two steps so the daemon can size micro-batches before running them:
 * classifier_prepare() renders the exact Llama Guard prompt, tokenizes it (the
 * template's own special tokens as special, conversation text never) and
 * appends the forced first output token "\n\n" (271); classifier_run() runs
 * many prepared jobs as one batched forward pass. K/V of computed prompts is
 * kept in a prefix cache keyed by token content (prefix_cache.h, bounded by
 * cache_max_bytes): a job prefills only what no earlier prompt computed, e.g.
 * its policy preamble (role word + category list) is shared with every job
 * with the same pair, and the next turn of a conversation reuses the history. P(unsafe) is the softmax over the full
 * vocabulary at token "unsafe" (39257); safe verdicts need no decoding, unsafe
 * ones decode their category list greedily, batched.
 *
 * prepare() may be called from any thread concurrently with run(); run() calls
 * must not overlap each other.
 */
#ifndef GUARDD_CLASSIFIER_H
#define GUARDD_CLASSIFIER_H
#include <stdatomic.h>
#include "conversation.h"
#include "model.h"
#include "prompt.h"
#include "tokenizer.h"

/* The engine's limits. A prompt (whole: shared prefix, conversation, forced
 * "\n\n") longer than CLASSIFIER_MAX_PROMPT_TOKENS is refused by prepare(),
 * whatever max_prompt_tokens says; CLASSIFIER_MAX_BATCH_TOKENS is the most new
 * tokens a caller should put in one run (guardd's batch.max_tokens is capped
 * to it: the K/V memory of a run grows with it). Within a run, forward passes
 * take at most step_tokens rows (default CLASSIFIER_STEP_TOKENS), fewer at a
 * long context, where attention makes each row dearer (classifier.c): longer
 * batches and prompts are computed as several passes, which bounds the
 * scratch memory and the time between two progress calls whatever the batch. */
#define CLASSIFIER_MAX_PROMPT_TOKENS 65536
#define CLASSIFIER_MAX_BATCH_TOKENS 65536
#define CLASSIFIER_STEP_TOKENS 2048

typedef struct {
    const char *model_dir;      /* config.json + safetensors (+ tokenizer.json) */
    const char *tokenizer_path; /* NULL: model_dir/tokenizer.json */
    int threads;                /* BLIS threads, <= 0: all cores */
    const char *blis_arch;      /* NULL/"auto" */
    Precision precision;        /* stored form of the weights; 0 = PREC_AUTO (bf16) */
    float threshold;            /* < 0: greedy verdict; else unsafe iff score >= threshold */
    int max_decode_tokens;      /* limit for the category list (default 16) */
    int category_scores;        /* also report per-category probabilities */
    int max_prompt_tokens;      /* prepare() refuses longer prompts; <= 0: only
                                   CLASSIFIER_MAX_PROMPT_TOKENS and the model's
                                   max_position_embeddings limit */
    PromptFormat prompt_format; /* AUTO: from model_dir/tokenizer_config.json
                                   (prompt_format_detect; an unknown template
                                   makes classifier_open fail) */
    long long cache_max_bytes;  /* prefix cache budget kept between runs: 0: the
                                   default (CLASSIFIER_CACHE_DEFAULT_BYTES); < 0:
                                   nothing kept (a run still computes a prefix its
                                   jobs share once) */
    int cache_block_tokens;     /* positions per cache block; <= 0: 16 */
    int cache_test_collide;     /* tests only: every cache block hashes alike */
    int keep_logits;            /* fill ClassifyResult.logits */
    int step_tokens;            /* rows per forward pass at a short context;
                                   <= 0: CLASSIFIER_STEP_TOKENS */
} ClassifierOptions;

#define CLASSIFIER_CACHE_DEFAULT_BYTES ((size_t)1 << 30)
#define CLASSIFIER_CACHE_BLOCK_TOKENS 16

typedef enum { FORCE_ROLE_AUTO = 0, FORCE_ROLE_USER, FORCE_ROLE_AGENT } ForceRole;

typedef struct {
    const Conversation *conv;
    const CategoryList *categories; /* NULL: the prompt family's default list */
    const char *const *exclude;     /* codes to leave out, without renumbering */
    int n_exclude;
    ForceRole role;                 /* AUTO: by message-count parity, as the template */
} ClassifyRequest;

typedef struct {
    int unsafe;             /* 1 unsafe, 0 safe */
    float score;            /* P(unsafe) */
    int parse_error;        /* output did not parse: reported unsafe with raw */
    int agent;              /* role word was Agent */
    int n_categories;
    char **codes;           /* violated codes, as generated ("S1") */
    char **names;           /* their names in the active list (NULL if unknown code) */
    float *category_scores; /* when asked: per active category, in list order:
                               P(code | "unsafe\n" forced), see classifier.c */
    int n_category_scores;
    char *raw;              /* generated text after "\n\n", e.g. "unsafe\nS1,S10" */
    int prompt_tokens;      /* whole prompt incl. preamble and forced 271 */
    int cached_tokens;      /* prompt positions whose K/V was reused, not computed:
                               from the prefix cache, or computed once for another
                               job of the same run that starts the same way */
    float *logits;          /* with keep_logits: the vocab_size logits after "\n\n" */
    int decode_tokens;      /* tokens generated after "\n\n", <|eot_id|> excluded (0 for safe) */
} ClassifyResult;

typedef struct Classifier Classifier;
typedef struct ClassifyJob ClassifyJob;

Classifier *classifier_open(const ClassifierOptions *opt, char *err, size_t errlen);
void classifier_close(Classifier *c);
const Model *classifier_model(const Classifier *c);
const Tokenizer *classifier_tokenizer(const Classifier *c);
void classifier_set_threshold(Classifier *c, float threshold); /* for reloads between runs */
/* Per-category scores on or off from the next run on (reloads), also for jobs
 * prepared before the change. */
void classifier_set_category_scores(Classifier *c, int on);
/* The prompt family in use, how it was chosen (one line for the log), and
 * its default category list (S1..S13 or S1..S14). */
PromptFormat classifier_prompt_format(const Classifier *c);
const char *classifier_prompt_format_note(const Classifier *c);
const CategoryList *classifier_default_categories(const Classifier *c);
/* New prefix cache budget (ClassifierOptions.cache_max_bytes semantics),
 * applied at once (evicts down to it); between runs, like the threshold. */
void classifier_set_cache_max_bytes(Classifier *c, long long max_bytes);

typedef struct {
    size_t bytes, max_bytes, peak_bytes; /* K/V blocks held, budget, highest held
                                            since the budget was last set */
    long blocks;
    unsigned long long evictions;        /* blocks evicted since open */
} ClassifierCacheStats;
void classifier_cache_stats(const Classifier *c, ClassifierCacheStats *s);
/* fn(arg) is called from classifier_run's thread after every transformer
 * layer of every pass (transformer_set_progress), so a watchdog fed from it
 * sees a long run advancing and a hung one stop. fn NULL: no calls. */
void classifier_set_progress(Classifier *c, void (*fn)(void *arg), void *arg);
/* Cancellation: while *flag is nonzero, a classifier_run stops at its next
 * layer boundary (transformer_set_abort) and returns CLASSIFIER_ABORTED: no
 * result is valid and nothing of the run enters the prefix cache, so the
 * classifier stays usable. flag NULL: never. */
#define CLASSIFIER_ABORTED (-2)
void classifier_set_abort(Classifier *c, const atomic_int *flag);

/* Renders and tokenizes. NULL with err set for an invalid conversation
 * (empty, roles not alternating from user, unknown excluded code, too long). */
ClassifyJob *classifier_prepare(Classifier *c, const ClassifyRequest *req, char *err, size_t errlen);
int classify_job_new_tokens(const ClassifyJob *j);  /* prompt tokens after the policy preamble: at most
                                                       what a run prefills for it once the preamble is cached */
/* The tokens a run started now would prefill for j: its prompt minus the
 * longest start the prefix cache holds (the last token is always computed),
 * and never more than classify_job_new_tokens (a batch computes a preamble
 * its jobs share once, cached or not). What a caller sizes batches with:
 * another job of the same batch may still save more (a shared uncached
 * prefix), never less, unless the cache changes first (a run, a new budget).
 * Reads the cache without pinning or touching it; the cache is not
 * thread-safe, so call it from the thread that calls classifier_run, between
 * runs. */
int classifier_prefill_estimate(const Classifier *c, const ClassifyJob *j);
/* The job's whole prompt as token ids (preamble, conversation, closing
 * instructions, the forced "\n\n"): *n ids, valid until classify_job_free. */
const int *classify_job_tokens(const ClassifyJob *j, int *n);
/* The categories the job's prompt lists (after exclusion), in order: the
 * codes of ClassifyResult.category_scores. Valid until classify_job_free. */
const CategoryList *classify_job_categories(const ClassifyJob *j);
void classify_job_free(ClassifyJob *j);

/* Runs jobs as one batch; results[i] belongs to jobs[i]. Returns 0, or -1 with
 * err set if the engine failed, or CLASSIFIER_ABORTED if cancelled (then no
 * result is valid). */
int classifier_run(Classifier *c, ClassifyJob **jobs, int n, ClassifyResult *results,
                   char *err, size_t errlen);
void classify_result_free(ClassifyResult *r);

#endif
