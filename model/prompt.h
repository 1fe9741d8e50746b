/* prompt.h - the Llama Guard 3 prompt, byte for byte as the model's chat
 * template renders it. Two prompt families (PromptFormat):
 *
 *   llama-guard-3-1b  reference/llama-guard-3-1b/chat_template.jinja, with two
 *       deliberate differences: a plain-string content is rendered as one text
 *       part (the template silently drops it, vLLM #9294), and the role word
 *       can be forced to User or Agent instead of following the message-count
 *       parity.
 *   llama-guard-3-8b  reference/llama-guard-3-8b/chat_template.jinja: the text
 *       starts with a space before <|begin_of_text|>, S1..S14 are the default
 *       list, there is no space before the closing <|eot_id|>. The template
 *       itself only takes string content and has no category variables; guardd
 *       extends it the 1B way: text parts are rendered as the 1B template
 *       renders them (one "Role: part.strip()" block per part, a message
 *       without parts renders nothing), a custom or reduced category list is
 *       written in the same "CODE: name" block, and the role word can be forced.
 *
 * The render is cut in three places so it can be tokenized safely and cached:
 *   [0, body_start)        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>"
 *                          (8B: the same after a space)
 *   [body_start, prefix_len) instructions + category list + "<BEGIN CONVERSATION>\n\n"
 *   [prefix_len, tail_start) the conversation lines + the closing instructions
 *   [tail_start, len)      "<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
 * Everything before prefix_len depends only on (role word, active category
 * list), so its K/V can be shared by every conversation with the same pair.
 * The cut at prefix_len is also a pre-tokenizer boundary (the prefix ends in
 * ">\n\n", the rest starts with the letter of "User:"), so tokenizing the two
 * halves separately yields exactly the ids of the whole (tested).
 */
#ifndef GUARDD_PROMPT_H
#define GUARDD_PROMPT_H
#include <stddef.h>
#include "conversation.h"
#include "tokenizer.h"

#define PROMPT_HEAD_SPECIAL "<|begin_of_text|><|start_header_id|>user<|end_header_id|>"
#define PROMPT_TAIL_SPECIAL "<|eot_id|><|start_header_id|>assistant<|end_header_id|>"

/* AUTO is for callers that pick the family from the model directory
 * (prompt_format_detect); the renderer itself needs a real family. */
typedef enum {
    PROMPT_FORMAT_AUTO = 0,
    PROMPT_FORMAT_LG3_1B = 1,
    PROMPT_FORMAT_LG3_8B = 2,
} PromptFormat;

/* "auto", "llama-guard-3-1b", "llama-guard-3-8b". */
const char *prompt_format_name(PromptFormat f);
/* Name -> format; -1 if s is not one of the names above. */
int prompt_format_parse(const char *s, PromptFormat *out);
/* The family's default category list: S1..S13 (1B) or S1..S14 (8B), names as
 * its template spells them (static storage). AUTO gives the 1B's. */
const CategoryList *prompt_default_categories(PromptFormat f);

/* Same values as ForceRole in classifier.h. */
typedef enum { PROMPT_ROLE_AUTO = 0, PROMPT_ROLE_USER = 1, PROMPT_ROLE_AGENT = 2 } PromptRole;

/* Limits on what a prompt may hold (a bound on every input-sized allocation
 * before the tokenizer sees it). */
#define PROMPT_MAX_MESSAGES   1024
#define PROMPT_MAX_PARTS      256      /* per message */
#define PROMPT_MAX_CATEGORIES 64
#define PROMPT_MAX_CODE_LEN   32
#define PROMPT_MAX_BYTES      (4u << 20) /* whole render */

typedef struct {
    char *text;          /* NUL-terminated render */
    size_t len;
    size_t body_start, prefix_len, tail_start; /* see above */
    PromptFormat format; /* the family rendered */
    int agent;           /* role word is Agent */
    CategoryList active; /* own copy of the categories rendered, in order */
} Prompt;

/* Renders conv in family fmt (AUTO is refused) with categories (NULL: the
 * family's default list) minus exclude.
 * Errors (-1, err set, *out zeroed): no messages, roles not alternating
 * user/assistant starting with user, invalid UTF-8, a category code that is
 * empty / too long / not [A-Za-z0-9_.-] / duplicated, an excluded code that
 * is not in the list (strict: a typo must not silently leave a category on),
 * every category excluded, or a render over PROMPT_MAX_BYTES. */
int prompt_render_as(PromptFormat fmt, const Conversation *conv, const CategoryList *categories,
                     const char *const *exclude, int n_exclude, PromptRole role,
                     Prompt *out, char *err, size_t errlen);
/* prompt_render_as(PROMPT_FORMAT_LG3_1B, ...). */
int prompt_render(const Conversation *conv, const CategoryList *categories,
                  const char *const *exclude, int n_exclude, PromptRole role,
                  Prompt *out, char *err, size_t errlen);
void prompt_free(Prompt *p);

/* Token ids of the render, split at prefix_len: the template's own special
 * tokens ([0, body_start) and [tail_start, len)) as special ids, the 8B's
 * leading space as the plain token " " (220), every other byte (instructions, category names,
 * conversation text) with allow_special = 0, so a message containing
 * "<|eot_id|>" stays plain text. BOS comes from the template (no extra one).
 * Appends to prefix_ids and rest_ids; returns 0 or -1 with err set.
 * (Defined in classifier.c, with the other tokenizer glue.) */
int prompt_tokenize(const Tokenizer *t, const Prompt *p, TokenVec *prefix_ids,
                    TokenVec *rest_ids, char *err, size_t errlen);

/* Python str.strip(): the [*start, *start + return) span of s[0..len) without
 * leading/trailing whitespace as str.isspace() defines it (ASCII \t\n\v\f\r,
 * \x1c-\x1f, space, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000; not U+200B nor U+FEFF). s must be valid UTF-8. */
size_t prompt_strip(const char *s, size_t len, size_t *start);

#endif
