/* transformer.h - the batched Llama 3 decoder forward pass on BLIS.
 *
 * One call runs many sequences of different lengths: all their new tokens are
 * stacked into one [T, dim] activation matrix, so every weight matrix is one
 * GEMM with M = T rows. Attention is per sequence against its own KV cache,
 * which may sit on top of shared, read-only K/V: a prefix cache (kv_new) or
 * view segments (kvcache.h: kv_new_view), e.g. blocks of the prompt prefix
 * cache (prefix_cache.h) or positions another sequence of the same batch
 * computes.
 * Matches Hugging Face LlamaForCausalLM numerics (f32).
 */
#ifndef GUARDD_TRANSFORMER_H
#define GUARDD_TRANSFORMER_H
#include <stdatomic.h>
#include "model.h"

typedef struct KVCache KVCache;

/* A cache for up to `capacity` positions of its own, placed after `prefix`
 * (may be NULL). The prefix must outlive this cache and must not grow while
 * caches use it. Returns NULL if the allocation fails. */
KVCache *kv_new(const ModelConfig *cfg, int capacity, const KVCache *prefix);
void kv_free(KVCache *kv);
int kv_len(const KVCache *kv);          /* prefix positions + own positions */
int kv_own_len(const KVCache *kv);      /* own positions only */
void kv_truncate(KVCache *kv, int own_len); /* forget own positions past own_len */

typedef struct {
    const int *tokens;  /* new tokens, appended after kv's current length */
    int n_tokens;
    KVCache *kv;        /* must have room for n_tokens more */
    int n_logits;       /* logits wanted for the last n_logits new tokens (0 = none) */
    float *logits;      /* out: n_logits * vocab_size floats, caller-owned */
} SeqInput;

typedef struct Transformer Transformer;

/* Most new tokens (rows) one transformer_forward takes: bounds every scratch
 * allocation. Callers with more split their work (classifier.c does). */
#define TRANSFORMER_MAX_BATCH_TOKENS 65536

/* Once per process, before any BLIS call: picks the BLIS kernel set (arch
 * NULL/"auto" = BLIS's detection, upgraded from "generic" to the best set the
 * CPU supports) and the thread count (<= 0: all cores). Called again, or
 * after BLIS has initialised, the kernel set can no longer change: a warning
 * is printed and blis_arch_name() reports the set really in use. */
void blis_setup(int threads, const char *arch);
/* The BLIS kernel set in use ("skx", "zen3", "haswell", "generic", ...). */
const char *blis_arch_name(void);

Transformer *transformer_new(const Model *m, int threads);
void transformer_free(Transformer *t);

/* Runs the batch. Returns 0, or -1 with err set (bad token id, cache full,
 * more than TRANSFORMER_MAX_BATCH_TOKENS new tokens). */
int transformer_forward(Transformer *t, SeqInput *seqs, int n_seqs, char *err, size_t errlen);

/* fn(arg) is called on the calling thread after each layer of every forward
 * (and after the final logits): proof of progress, e.g. for a watchdog. A
 * hung layer never calls it. fn NULL: no calls. */
void transformer_set_progress(Transformer *t, void (*fn)(void *arg), void *arg);

/* Cancellation (a daemon shutting down mid-batch): while *flag is nonzero,
 * transformer_forward stops at its next layer boundary (checked before the
 * first layer and after each one) and returns TRANSFORMER_ABORTED with err
 * set. The caches of that call are left with partly written positions past
 * their length: the caller discards them. flag NULL: never. */
#define TRANSFORMER_ABORTED (-2)
void transformer_set_abort(Transformer *t, const atomic_int *flag);

#endif
