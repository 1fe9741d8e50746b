/* prompt.c - renders the Llama Guard 3 prompt exactly as the 1B's or the 8B's
 * chat template does (see prompt.h for the layout, the families and the
 * deliberate differences).
 *
 * The template text below is copied piece by piece from the two
 * chat_template.jinja files; tests compare the output byte for byte with the
 * reference renders and with jinja2 running the real templates on hundreds of
 * random conversations.
 * Pure text: prompt_tokenize() lives in classifier.c with the rest of the
 * tokenizer glue, so this file (and guardctl prompt) needs no tokenizer.
 */
#include "errmsg.h"
#include "prompt.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "utf8.h"

/* ---- whitespace (UTF-8 text, utf8.h) ------------------------------------------ */

/* Python's str.isspace() (Unicode White_Space minus nothing, plus the four
 * ASCII information separators \x1c-\x1f that Python counts as whitespace). */
static int py_isspace(unsigned cp) {
    if ((cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20)) return 1;
    switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return 1;
    }
    return cp >= 0x2000 && cp <= 0x200A;
}

/* Start of the code point that ends at s[end-1] (valid UTF-8 assumed). */
static size_t utf8_prev(const unsigned char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80 && end - i < 4) i--;
    return i;
}

size_t prompt_strip(const char *s, size_t len, size_t *start) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned cp;
    size_t a = 0, b = len;
    while (a < b) {
        size_t n = utf8_decode(u + a, b - a, &cp);
        if (!n || !py_isspace(cp)) break;
        a += n;
    }
    while (b > a) {
        size_t p = utf8_prev(u, b);
        if (p < a || utf8_decode(u + p, b - p, &cp) != b - p || !py_isspace(cp)) break;
        b = p;
    }
    *start = a;
    return b - a;
}

/* ---- families ---------------------------------------------------------------- */

static const char *const format_names[] = {"auto", "llama-guard-3-1b", "llama-guard-3-8b"};

const char *prompt_format_name(PromptFormat f) {
    return (unsigned)f < sizeof format_names / sizeof format_names[0] ? format_names[f] : "?";
}

int prompt_format_parse(const char *s, PromptFormat *out) {
    for (unsigned i = 0; s && i < sizeof format_names / sizeof format_names[0]; i++)
        if (!strcmp(s, format_names[i])) {
            *out = (PromptFormat)i;
            return 0;
        }
    return -1;
}

const CategoryList *prompt_default_categories(PromptFormat f) {
    return f == PROMPT_FORMAT_LG3_8B ? categories_default_8b() : categories_default();
}

/* ---- growable output -------------------------------------------------------- */

typedef struct { char *p; size_t n, cap; int overflow; } Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->overflow) return;
    if (b->n + n + 1 > PROMPT_MAX_BYTES) { b->overflow = 1; return; }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->overflow = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }

/* ---- validation ------------------------------------------------------------- */

static int code_ok(const char *code) {
    size_t n = strlen(code);
    if (n == 0 || n > PROMPT_MAX_CODE_LEN) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = code[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int check_conversation(const Conversation *conv, char *err, size_t errlen) {
    if (!conv || conv->n_msgs <= 0) {
        errmsg(err, errlen, "conversation has no messages");
        return -1;
    }
    if (conv->n_msgs > PROMPT_MAX_MESSAGES) {
        errmsg(err, errlen, "conversation has %d messages (max %d)", conv->n_msgs, PROMPT_MAX_MESSAGES);
        return -1;
    }
    for (int i = 0; i < conv->n_msgs; i++) {
        const Message *m = &conv->msgs[i];
        MessageRole want = (i % 2 == 0) ? ROLE_USER : ROLE_ASSISTANT;
        if (m->role != want) {
            errmsg(err, errlen, "message %d is from the %s: roles must alternate "
                   "user/assistant/user/... starting with user", i + 1,
                   m->role == ROLE_USER ? "user" : "assistant");
            return -1;
        }
        if (m->n_parts < 0 || m->n_parts > PROMPT_MAX_PARTS) {
            errmsg(err, errlen, "message %d has %d content parts (max %d)", i + 1, m->n_parts, PROMPT_MAX_PARTS);
            return -1;
        }
        for (int j = 0; j < m->n_parts; j++) {
            const char *t = m->parts[j] ? m->parts[j] : "";
            if (!utf8_valid(t, strlen(t))) {
                errmsg(err, errlen, "message %d part %d is not valid UTF-8", i + 1, j + 1);
                return -1;
            }
        }
    }
    return 0;
}

static int excluded(const char *code, const char *const *exclude, int n_exclude) {
    for (int i = 0; i < n_exclude; i++)
        if (exclude[i] && !strcmp(exclude[i], code)) return 1;
    return 0;
}

/* Copies the categories that stay after exclusion into out, checking codes,
 * names and the excluded codes on the way. */
static int active_categories(const CategoryList *cats, const char *const *exclude, int n_exclude,
                             CategoryList *out, char *err, size_t errlen) {
    if (cats->n <= 0 || cats->n > PROMPT_MAX_CATEGORIES) {
        errmsg(err, errlen, "category list has %d entries (need 1..%d)", cats->n, PROMPT_MAX_CATEGORIES);
        return -1;
    }
    for (int i = 0; i < cats->n; i++) {
        const Category *c = &cats->items[i];
        if (!c->code || !code_ok(c->code)) {
            errmsg(err, errlen, "category %d: code '%.40s' must be 1..%d characters of A-Z a-z 0-9 _ . -",
                   i + 1, c->code ? c->code : "", PROMPT_MAX_CODE_LEN);
            return -1;
        }
        if (!c->name || !utf8_valid(c->name, strlen(c->name))) {
            errmsg(err, errlen, "category %s: name missing or not valid UTF-8", c->code);
            return -1;
        }
        for (int k = 0; k < i; k++)
            if (!strcmp(cats->items[k].code, c->code)) {
                errmsg(err, errlen, "category code %s appears twice", c->code);
                return -1;
            }
    }
    for (int e = 0; e < n_exclude; e++) {
        int found = 0;
        for (int i = 0; exclude[e] && i < cats->n && !found; i++)
            found = !strcmp(cats->items[i].code, exclude[e]);
        if (!found) {
            errmsg(err, errlen, "excluded category '%.40s' is not in the category list",
                   exclude[e] ? exclude[e] : "(null)");
            return -1;
        }
    }
    for (int i = 0; i < cats->n; i++)
        if (!excluded(cats->items[i].code, exclude, n_exclude))
            categories_add(out, cats->items[i].code, cats->items[i].name);
    if (out->n == 0) {
        errmsg(err, errlen, "every category is excluded");
        return -1;
    }
    return 0;
}

/* ---- render ----------------------------------------------------------------- */

static void render_conversation(Buf *b, const Conversation *conv) {
    for (int i = 0; i < conv->n_msgs; i++) {
        const Message *m = &conv->msgs[i];
        const char *word = m->role == ROLE_USER ? "User: " : "Agent: ";
        for (int j = 0; j < m->n_parts; j++) {
            const char *t = m->parts[j] ? m->parts[j] : "";
            size_t start, n = prompt_strip(t, strlen(t), &start);
            buf_str(b, word);
            buf_put(b, t + start, n);
            buf_str(b, "\n\n");
        }
    }
}

int prompt_render_as(PromptFormat fmt, const Conversation *conv, const CategoryList *categories,
                     const char *const *exclude, int n_exclude, PromptRole role,
                     Prompt *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (fmt != PROMPT_FORMAT_LG3_1B && fmt != PROMPT_FORMAT_LG3_8B) {
        errmsg(err, errlen, "no prompt format chosen (%s)", prompt_format_name(fmt));
        return -1;
    }
    int is_8b = fmt == PROMPT_FORMAT_LG3_8B;
    if (n_exclude < 0 || (n_exclude > 0 && !exclude)) {
        errmsg(err, errlen, "bad exclude list");
        return -1;
    }
    if (check_conversation(conv, err, errlen) < 0) return -1;
    if (active_categories(categories ? categories : prompt_default_categories(fmt), exclude, n_exclude,
                          &out->active, err, errlen) < 0) {
        categories_free(&out->active);
        return -1;
    }
    out->format = fmt;
    out->agent = role == PROMPT_ROLE_AGENT ||
                 (role == PROMPT_ROLE_AUTO && conv->n_msgs % 2 == 0);
    const char *word = out->agent ? "Agent" : "User";

    Buf b = {0};
    if (is_8b) buf_str(&b, " ");
    buf_str(&b, PROMPT_HEAD_SPECIAL);
    out->body_start = b.n;
    buf_str(&b, "\n\nTask: Check if there is unsafe content in '");
    buf_str(&b, word);
    buf_str(&b, "' messages in conversations according our safety policy with the below categories.\n\n");
    buf_str(&b, "<BEGIN UNSAFE CONTENT CATEGORIES>\n");
    for (int i = 0; i < out->active.n; i++) {
        buf_str(&b, out->active.items[i].code);
        buf_str(&b, ": ");
        buf_str(&b, out->active.items[i].name);
        buf_str(&b, "\n");
    }
    buf_str(&b, "<END UNSAFE CONTENT CATEGORIES>\n\n");
    buf_str(&b, "<BEGIN CONVERSATION>\n\n");
    out->prefix_len = b.n;
    render_conversation(&b, conv);
    buf_str(&b, "<END CONVERSATION>\n\n");
    buf_str(&b, "Provide your safety assessment for ONLY THE LAST ");
    buf_str(&b, word);
    buf_str(&b, " message in the above conversation:\n");
    buf_str(&b, " - First line must read 'safe' or 'unsafe'.\n");
    buf_str(&b, " - If unsafe, a second line must include a comma-separated list of violated categories.");
    if (!is_8b) buf_str(&b, " ");
    out->tail_start = b.n;
    buf_str(&b, PROMPT_TAIL_SPECIAL);
    if (b.overflow) {
        free(b.p);
        categories_free(&out->active);
        memset(out, 0, sizeof *out);
        errmsg(err, errlen, "prompt would exceed %u bytes", PROMPT_MAX_BYTES);
        return -1;
    }
    out->text = b.p;
    out->len = b.n;
    return 0;
}

int prompt_render(const Conversation *conv, const CategoryList *categories,
                  const char *const *exclude, int n_exclude, PromptRole role,
                  Prompt *out, char *err, size_t errlen) {
    return prompt_render_as(PROMPT_FORMAT_LG3_1B, conv, categories, exclude, n_exclude, role, out,
                            err, errlen);
}

void prompt_free(Prompt *p) {
    if (!p) return;
    free(p->text);
    categories_free(&p->active);
    memset(p, 0, sizeof *p);
}
