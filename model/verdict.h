/* verdict.h - turning Llama Guard 3 output into a verdict.
 *
 * The model answers "\n\n" (forced, see classifier.h) then either "safe" or
 * "unsafe\nS1,S10" and <|eot_id|>. verdict_parse() reads the text after the
 * "\n\n"; verdict_decide() makes the first decision from the first-position
 * distribution. The rule everywhere: nothing that fails to parse is ever
 * reported safe.
 */
#ifndef GUARDD_VERDICT_H
#define GUARDD_VERDICT_H
#include "conversation.h"

#define VERDICT_MAX_CODES 64

typedef struct {
    int unsafe;       /* 1 unsafe, 0 safe */
    int parse_error;  /* text did not parse (reported unsafe) */
    int n_codes;
    char **codes;     /* as generated, deduplicated, in order */
    char **names;     /* name in the active list, NULL for an unknown code */
} Verdict;

/* Parses generated text (after "\n\n", without <|eot_id|>):
 *   - leading/trailing ASCII whitespace (space, \t, \r, \n) is ignored;
 *   - exactly "safe" -> safe;
 *   - "unsafe", whitespace with at least one line break, then one line of
 *     comma-separated codes (spaces around codes allowed) -> unsafe with those
 *     codes; every code must be in `active` (else parse_error, name NULL);
 *   - "unsafe" with no code line, an empty code, a second line, more than
 *     VERDICT_MAX_CODES codes, or anything else at all (empty text, "Safe",
 *     "safe\nS1", "unsafely") -> unsafe with parse_error = 1.
 * Never fails; free with verdict_free. active may be NULL (no code known). */
void verdict_parse(const char *text, const CategoryList *active, Verdict *v);
void verdict_free(Verdict *v);

/* First decision, from the distribution after the forced "\n\n". */
typedef enum {
    FIRST_SAFE = 0,      /* safe: no decoding needed */
    FIRST_UNSAFE,        /* unsafe: feed the "unsafe" token, decode the codes */
    FIRST_OTHER          /* greedy token is neither: decode it for the raw
                            text, report unsafe with parse_error */
} FirstDecision;

/* threshold >= 0: unsafe iff score >= threshold (FIRST_UNSAFE even when the
 * greedy token is something else: the score decided). threshold < 0: greedy,
 * by argmax_id against the safe / unsafe ids. */
FirstDecision verdict_decide(float score, float threshold, int argmax_id, int safe_id, int unsafe_id);

/* Greedy decoding with a fixed draft (the output format makes "unsafe" "\n"
 * "S" near certain, so they are fed in one pass instead of three). draft[0]
 * is already decided; draft[1..n) are guesses. pred[k] is the argmax after
 * draft[k] was fed. Returns acc >= 1: draft[0..acc) is exactly what greedy
 * decoding would have generated, and pred[acc-1] is its next token. */
int draft_accept(const int *draft, const int *pred, int n);

/* Numerically safe softmax pieces over a full logit row. */
int logits_argmax(const float *logits, int n);
/* log of sum(exp(logits - max)) + max, in double. */
double logits_logsumexp(const float *logits, int n);
/* p(id) = exp(logits[id] - logsumexp); 0 for an id out of range. */
float logits_prob(const float *logits, int n, double lse, int id);

#endif
