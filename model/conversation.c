/* conversation.c - the plain conversation / category-list data (conversation.h).
 *
 * Holds the default Llama Guard 3 category lists exactly as the models' chat
 * templates spell them (the 1B's S1..S13 are the 8B's S1..S14 without S14,
 * short names ending in '.'), and small builders
 * that copy their strings so callers may free their own buffers right away.
 * Allocation failure aborts: these are tiny and a half-built conversation is
 * worse than a clear crash report.
 */
#include "conversation.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Category default_items[] = {
    {"S1", "Violent Crimes."},
    {"S2", "Non-Violent Crimes."},
    {"S3", "Sex Crimes."},
    {"S4", "Child Exploitation."},
    {"S5", "Defamation."},
    {"S6", "Specialized Advice."},
    {"S7", "Privacy."},
    {"S8", "Intellectual Property."},
    {"S9", "Indiscriminate Weapons."},
    {"S10", "Hate."},
    {"S11", "Self-Harm."},
    {"S12", "Sexual Content."},
    {"S13", "Elections."},
    {"S14", "Code Interpreter Abuse."},
};

static const CategoryList default_list = {default_items, 13};
static const CategoryList default_list_8b = {
    default_items, (int)(sizeof default_items / sizeof default_items[0])};

const CategoryList *categories_default(void) { return &default_list; }
const CategoryList *categories_default_8b(void) { return &default_list_8b; }

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "conversation: out of memory\n");
        abort();
    }
    return q;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xrealloc(NULL, n), s, n);
}

Message *conversation_add_message(Conversation *c, MessageRole role) {
    c->msgs = xrealloc(c->msgs, (size_t)(c->n_msgs + 1) * sizeof *c->msgs);
    Message *m = &c->msgs[c->n_msgs++];
    m->role = role;
    m->parts = NULL;
    m->n_parts = 0;
    return m;
}

void message_add_part(Message *m, const char *text) {
    m->parts = xrealloc(m->parts, (size_t)(m->n_parts + 1) * sizeof *m->parts);
    m->parts[m->n_parts++] = xstrdup(text ? text : "");
}

void conversation_add(Conversation *c, MessageRole role, const char *text) {
    message_add_part(conversation_add_message(c, role), text);
}

void conversation_free(Conversation *c) {
    if (!c) return;
    for (int i = 0; i < c->n_msgs; i++) {
        for (int j = 0; j < c->msgs[i].n_parts; j++) free(c->msgs[i].parts[j]);
        free(c->msgs[i].parts);
    }
    free(c->msgs);
    c->msgs = NULL;
    c->n_msgs = 0;
}

void categories_add(CategoryList *l, const char *code, const char *name) {
    l->items = xrealloc(l->items, (size_t)(l->n + 1) * sizeof *l->items);
    l->items[l->n].code = xstrdup(code ? code : "");
    l->items[l->n].name = xstrdup(name ? name : "");
    l->n++;
}

void categories_free(CategoryList *l) {
    if (!l || l == &default_list || l == &default_list_8b) return;
    for (int i = 0; i < l->n; i++) {
        free(l->items[i].code);
        free(l->items[i].name);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}
