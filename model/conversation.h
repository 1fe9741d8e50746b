/* conversation.h - the plain data a classification is about: messages and the
 * category list. Shared by the prompt builder, the classifier, the event codec
 * and guardctl. All strings are NUL-terminated UTF-8 owned by whoever built
 * the struct (conversation_free releases ones built by conversation_* helpers).
 */
#ifndef GUARDD_CONVERSATION_H
#define GUARDD_CONVERSATION_H
#include <stddef.h>

typedef enum { ROLE_USER = 0, ROLE_ASSISTANT = 1 } MessageRole;

typedef struct {
    MessageRole role;
    char **parts;       /* text parts in order (a plain string content = one part) */
    int n_parts;
} Message;

typedef struct {
    Message *msgs;
    int n_msgs;
} Conversation;

typedef struct {
    char *code;         /* "S1" */
    char *name;         /* "Violent Crimes." (rendered after "S1: ") */
} Category;

typedef struct {
    Category *items;    /* in order */
    int n;
} CategoryList;

/* The default Llama Guard 3 lists (static storage, do not free): the 1B's
 * S1..S13 and the 8B's S1..S14 (prompt_default_categories picks by family). */
const CategoryList *categories_default(void);
const CategoryList *categories_default_8b(void);

void conversation_add(Conversation *c, MessageRole role, const char *text); /* one-part message */
/* Multi-part content: a message with no parts yet, then its text parts in
 * order. The returned pointer is valid until the next conversation_add*. */
Message *conversation_add_message(Conversation *c, MessageRole role);
void message_add_part(Message *m, const char *text);
void conversation_free(Conversation *c);
void categories_add(CategoryList *l, const char *code, const char *name);
void categories_free(CategoryList *l);

#endif
