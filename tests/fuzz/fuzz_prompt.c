/* fuzz_prompt.c - libFuzzer harness for the path an event's text takes to the
 * model: event_decode_any() (msgpack or JSON, sniffed), prompt_render()
 * (model/prompt.c: the Llama Guard 3 template, categories, exclusions, role)
 * and tokenization with the genuine Llama 3.2 tokenizer ($GUARDD_TOKENIZER).
 *
 * Properties of a rendered prompt: it is exactly len bytes of valid UTF-8 with
 * no NUL; body_start <= prefix_len <= tail_start <= len; it starts with the
 * template's head and ends with its tail; the text between is tokenized as
 * the classifier does (two halves cut at prefix_len, specials not allowed),
 * which must give the same ids as tokenizing it whole (prompt.h promises the
 * cut is a pre-tokenizer boundary, so the prefix cache changes nothing), and
 * the ids decode back to the text. A refusal must say why.
 */
#include "fuzz_common.h"
#include "event.h"
#include "prompt.h"
#include "tokenizer.h"
#include "utf8.h"
#include <string.h>

static const EventLimits lim = {.max_event_bytes = 65536, .max_messages = 16, .max_message_bytes = 2048};
static Tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    tok = fuzz_load_tokenizer("fuzz_prompt");
    return 0;
}

static void check_tokens(const Prompt *p) {
    char err[256];
    TokenVec a = {0}, whole = {0};
    const char *body = p->text + p->body_start;
    size_t n1 = p->prefix_len - p->body_start, n2 = p->tail_start - p->prefix_len;
    FUZZ_ASSERT(tokenizer_encode(tok, body, n1, 0, &a, err, sizeof err) == 0, "prefix: %s", err);
    FUZZ_ASSERT(tokenizer_encode(tok, p->text + p->prefix_len, n2, 0, &a, err, sizeof err) == 0, "rest: %s", err);
    FUZZ_ASSERT(tokenizer_encode(tok, body, n1 + n2, 0, &whole, err, sizeof err) == 0, "whole: %s", err);
    FUZZ_ASSERT(a.n == whole.n && !memcmp(a.ids, whole.ids, a.n * sizeof *a.ids),
                "tokens of prefix + rest (%zu) differ from tokens of the whole (%zu)", a.n, whole.n);
    size_t len;
    char *back = tokenizer_decode(tok, a.ids, a.n, &len);
    FUZZ_ASSERT(back && len == n1 + n2 && !memcmp(back, body, len), "decode(tokens) != prompt text");
    free(back);
    tokvec_free(&a);
    tokvec_free(&whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ConversationEvent ev;
    const char *reason;
    char msg[256], err[256];
    if (event_decode_any(data, size, NULL, &lim, &ev, &reason, msg, sizeof msg) != 0) return 0;
    Prompt p;
    err[0] = 0;
    if (prompt_render(&ev.conv, ev.categories.n ? &ev.categories : NULL, (const char *const *)ev.exclude,
                      ev.n_exclude, (PromptRole)ev.role, &p, err, sizeof err) == 0) {
        FUZZ_ASSERT(strlen(p.text) == p.len && utf8_valid(p.text, p.len), "render has a NUL or invalid UTF-8");
        FUZZ_ASSERT(p.body_start <= p.prefix_len && p.prefix_len <= p.tail_start && p.tail_start <= p.len,
                    "cut points out of order");
        FUZZ_ASSERT(!strncmp(p.text, PROMPT_HEAD_SPECIAL, p.body_start) && p.body_start == strlen(PROMPT_HEAD_SPECIAL),
                    "render does not start with the template head");
        FUZZ_ASSERT(!strcmp(p.text + p.tail_start, PROMPT_TAIL_SPECIAL), "render does not end with the template tail");
        check_tokens(&p);
        prompt_free(&p);
    } else {
        FUZZ_ASSERT(err[0], "prompt_render failed without a message");
    }
    event_free(&ev);
    return 0;
}
