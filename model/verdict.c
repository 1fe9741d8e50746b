/* verdict.c - parsing Llama Guard 3 output and the first-token decision
 * (see verdict.h for the accepted grammar). Deliberately small and strict:
 * the output format is fixed by fine-tuning, and anything off-format is a
 * signal (a broken model, a prompt injection that made it talk) that must
 * surface as unsafe + parse_error, not be guessed at.
 */
#include "verdict.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static void add_code(Verdict *v, const char *s, size_t n, const CategoryList *active) {
    for (int i = 0; i < v->n_codes; i++)
        if (strlen(v->codes[i]) == n && !memcmp(v->codes[i], s, n)) return; /* duplicate */
    if (v->n_codes == VERDICT_MAX_CODES) {
        v->parse_error = 1;
        return;
    }
    if (!v->codes) {
        v->codes = calloc(VERDICT_MAX_CODES, sizeof *v->codes);
        v->names = calloc(VERDICT_MAX_CODES, sizeof *v->names);
        if (!v->codes || !v->names) abort();
    }
    char *code = strndup(s, n);
    if (!code) abort();
    const char *name = NULL;
    for (int i = 0; active && i < active->n && !name; i++)
        if (!strcmp(active->items[i].code, code)) name = active->items[i].name;
    if (!name) v->parse_error = 1;
    v->codes[v->n_codes] = code;
    v->names[v->n_codes] = name ? strdup(name) : NULL;
    v->n_codes++;
}

/* One line "S1,S10" (spaces around codes allowed); s[0..n) has no '\n'. */
static void parse_code_line(Verdict *v, const char *s, size_t n, const CategoryList *active) {
    size_t pos = 0;
    while (pos <= n) {
        const char *comma = memchr(s + pos, ',', n - pos);
        size_t end = comma ? (size_t)(comma - s) : n, a = pos, b = end;
        while (a < b && (s[a] == ' ' || s[a] == '\t')) a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) b--;
        if (a == b) v->parse_error = 1; /* empty code: "S1,,S2" or "S1," */
        else add_code(v, s + a, b - a, active);
        if (!comma) break;
        pos = end + 1;
    }
}

void verdict_parse(const char *text, const CategoryList *active, Verdict *v) {
    memset(v, 0, sizeof *v);
    v->unsafe = 1;
    size_t a = 0, b = text ? strlen(text) : 0;
    while (a < b && is_ws(text[a])) a++;
    while (b > a && is_ws(text[b - 1])) b--;
    const char *s = text ? text + a : "";
    size_t n = b - a;
    if (n == 4 && !memcmp(s, "safe", 4)) {
        v->unsafe = 0;
        return;
    }
    if (n < 6 || memcmp(s, "unsafe", 6) != 0) {
        v->parse_error = 1;
        return;
    }
    size_t p = 6;
    int newline = 0;
    while (p < n && is_ws(s[p])) newline |= s[p++] == '\n';
    if (p == n || !newline) { /* "unsafe" alone, or "unsafely" / "unsafe S1" */
        v->parse_error = 1;
        return;
    }
    const char *nl = memchr(s + p, '\n', n - p);
    size_t line_end = nl ? (size_t)(nl - s) : n;
    parse_code_line(v, s + p, line_end - p, active);
    if (nl) v->parse_error = 1; /* a second line: off-format */
}

void verdict_free(Verdict *v) {
    if (!v) return;
    for (int i = 0; i < v->n_codes; i++) {
        free(v->codes[i]);
        free(v->names[i]);
    }
    free(v->codes);
    free(v->names);
    memset(v, 0, sizeof *v);
}

FirstDecision verdict_decide(float score, float threshold, int argmax_id, int safe_id, int unsafe_id) {
    if (threshold >= 0) return score >= threshold ? FIRST_UNSAFE : FIRST_SAFE;
    if (argmax_id == safe_id) return FIRST_SAFE;
    if (argmax_id == unsafe_id) return FIRST_UNSAFE;
    return FIRST_OTHER;
}

int draft_accept(const int *draft, const int *pred, int n) {
    int acc = 1;
    while (acc < n && pred[acc - 1] == draft[acc]) acc++;
    return acc;
}

int logits_argmax(const float *logits, int n) {
    int best = 0;
    while (best < n - 1 && isnan(logits[best])) best++; /* NaN never wins */
    for (int i = best + 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

double logits_logsumexp(const float *logits, int n) {
    double m = logits[logits_argmax(logits, n)], sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - m);
    return m + log(sum);
}

float logits_prob(const float *logits, int n, double lse, int id) {
    if (id < 0 || id >= n) return 0.0f;
    return (float)exp((double)logits[id] - lse);
}
