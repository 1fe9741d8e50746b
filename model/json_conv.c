/* json_conv.c - conversation objects and category lists from JSON (see
 * json_conv.h for the accepted shapes), using jansson.
 *
 * jansson (>= 2.8) keeps object keys in insertion order, so iterating the
 * "categories" object yields the codes in the order the JSON text lists them,
 * which is the order the template renders them. Duplicate keys are refused
 * (JSON_REJECT_DUPLICATES) rather than silently keeping the last one.
 */
#include "errmsg.h"
#include "json_conv.h"
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_categories_obj(json_t *obj, CategoryList *out, char *err, size_t errlen) {
    const char *key;
    json_t *val;
    if (!json_is_object(obj)) {
        errmsg(err, errlen, "\"categories\" must be an object code -> name");
        return -1;
    }
    json_object_foreach(obj, key, val) {
        if (!json_is_string(val)) {
            errmsg(err, errlen, "category %.40s: name must be a string", key);
            return -1;
        }
        categories_add(out, key, json_string_value(val));
    }
    if (out->n == 0) {
        errmsg(err, errlen, "\"categories\" is empty");
        return -1;
    }
    return 0;
}

static int parse_exclude_arr(json_t *arr, JsonConv *out, char *err, size_t errlen) {
    size_t i;
    json_t *v;
    if (!json_is_array(arr)) {
        errmsg(err, errlen, "\"exclude\" must be an array of category codes");
        return -1;
    }
    out->exclude = calloc(json_array_size(arr) + 1, sizeof *out->exclude);
    if (!out->exclude) {
        errmsg(err, errlen, "out of memory");
        return -1;
    }
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)) {
            errmsg(err, errlen, "\"exclude\"[%zu] is not a string", i);
            return -1;
        }
        out->exclude[out->n_exclude++] = strdup(json_string_value(v));
    }
    return 0;
}

static int parse_content(json_t *content, Message *m, int idx, char *err, size_t errlen) {
    size_t i;
    json_t *part;
    if (json_is_string(content)) { /* one text part: never dropped (vLLM #9294) */
        message_add_part(m, json_string_value(content));
        return 0;
    }
    if (!json_is_array(content)) {
        errmsg(err, errlen, "message %d: \"content\" must be a string or an array of parts", idx);
        return -1;
    }
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type)) {
            errmsg(err, errlen, "message %d part %zu: not an object with a \"type\"", idx, i + 1);
            return -1;
        }
        if (strcmp(json_string_value(type), "text") != 0) {
            errmsg(err, errlen, "message %d part %zu: unsupported content type \"%.20s\" (text only)",
                   idx, i + 1, json_string_value(type));
            return -1;
        }
        if (!json_is_string(text)) {
            errmsg(err, errlen, "message %d part %zu: \"text\" must be a string", idx, i + 1);
            return -1;
        }
        message_add_part(m, json_string_value(text));
    }
    return 0;
}

static int parse_messages(json_t *msgs, Conversation *conv, char *err, size_t errlen) {
    size_t i;
    json_t *msg;
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        errmsg(err, errlen, "\"messages\" must be a non-empty array");
        return -1;
    }
    json_array_foreach(msgs, i, msg) {
        json_t *role = json_object_get(msg, "role");
        const char *r = json_string_value(role);
        if (!json_is_object(msg) || !r) {
            errmsg(err, errlen, "message %zu: not an object with a string \"role\"", i + 1);
            return -1;
        }
        MessageRole mr;
        if (!strcmp(r, "user")) mr = ROLE_USER;
        else if (!strcmp(r, "assistant")) mr = ROLE_ASSISTANT;
        else {
            errmsg(err, errlen, "message %zu: role \"%.20s\" is neither \"user\" nor \"assistant\"", i + 1, r);
            return -1;
        }
        json_t *content = json_object_get(msg, "content");
        if (!content) {
            errmsg(err, errlen, "message %zu: no \"content\"", i + 1);
            return -1;
        }
        if (parse_content(content, conversation_add_message(conv, mr), (int)i + 1, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static json_t *load_json(const char *text, size_t len, char *err, size_t errlen) {
    json_error_t je;
    if (len > JSON_CONV_MAX_BYTES) {
        errmsg(err, errlen, "JSON input of %zu bytes is over the %u limit", len, JSON_CONV_MAX_BYTES);
        return NULL;
    }
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) errmsg(err, errlen, "bad JSON at line %d column %d: %s", je.line, je.column, je.text);
    return root;
}

int json_conv_parse(const char *text, size_t len, JsonConv *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    json_t *root = load_json(text, len, err, errlen);
    if (!root) return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        errmsg(err, errlen, "conversation must be a JSON object");
        goto done;
    }
    json_t *cats = json_object_get(root, "categories"), *ex = json_object_get(root, "exclude");
    if (parse_messages(json_object_get(root, "messages"), &out->conv, err, errlen) < 0) goto done;
    if (cats && !json_is_null(cats) && parse_categories_obj(cats, &out->categories, err, errlen) < 0) goto done;
    if (ex && !json_is_null(ex) && parse_exclude_arr(ex, out, err, errlen) < 0) goto done;
    rc = 0;
done:
    json_decref(root);
    if (rc < 0) json_conv_free(out);
    return rc;
}

void json_conv_free(JsonConv *c) {
    if (!c) return;
    conversation_free(&c->conv);
    categories_free(&c->categories);
    exclude_free(c->exclude, c->n_exclude);
    memset(c, 0, sizeof *c);
}

void json_conv_apply_defaults(JsonConv *c, const CategoryList *file_cats,
                              char *const *extra_exclude, int n_extra) {
    if (c->categories.n == 0 && file_cats)
        for (int i = 0; i < file_cats->n; i++)
            categories_add(&c->categories, file_cats->items[i].code, file_cats->items[i].name);
    if (n_extra <= 0) return;
    char **nl = realloc(c->exclude, (size_t)(c->n_exclude + n_extra) * sizeof *nl);
    if (!nl) abort();
    c->exclude = nl;
    for (int i = 0; i < n_extra; i++) c->exclude[c->n_exclude++] = strdup(extra_exclude[i]);
}

/* "CODE: NAME" lines. */
static int parse_category_lines(const char *text, size_t len, CategoryList *out, char *err, size_t errlen) {
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n && line[n - 1] == '\r') n--;
        if (n == 0 || line[0] == '#') continue;
        char *buf = strndup(line, n);
        char *sep = buf ? strstr(buf, ": ") : NULL;
        if (!sep || sep == buf || memchr(buf, 0, n)) {
            free(buf);
            errmsg(err, errlen, "category line %d: expected \"CODE: NAME\"", lineno);
            return -1;
        }
        *sep = 0;
        categories_add(out, buf, sep + 2);
        free(buf);
    }
    if (out->n == 0) {
        errmsg(err, errlen, "category list is empty");
        return -1;
    }
    return 0;
}

int categories_parse(const char *text, size_t len, CategoryList *out, char *err, size_t errlen) {
    size_t i = 0;
    int rc;
    memset(out, 0, sizeof *out);
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
    if (i < len && text[i] == '{') {
        json_t *root = load_json(text, len, err, errlen);
        if (!root) return -1;
        rc = parse_categories_obj(root, out, err, errlen);
        json_decref(root);
    } else {
        rc = parse_category_lines(text, len, out, err, errlen);
    }
    if (rc < 0) categories_free(out);
    return rc;
}

int categories_load(const char *path, CategoryList *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        errmsg(err, errlen, "cannot open category file %s: %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(JSON_CONV_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, JSON_CONV_MAX_BYTES + 1, f) : 0;
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad || n > JSON_CONV_MAX_BYTES) {
        free(buf);
        errmsg(err, errlen, "cannot read category file %s (%s)", path, bad ? "read error" : "too large");
        return -1;
    }
    char sub[200];
    int rc = categories_parse(buf, n, out, sub, sizeof sub);
    free(buf);
    if (rc < 0) errmsg(err, errlen, "category file %s: %s", path, sub);
    return rc;
}

long json_read_line(FILE *f, char **buf, size_t *cap, char *err, size_t errlen) {
    size_t n = 0;
    int c;
    while ((c = getc(f)) != EOF) {
        if (n + 2 > *cap) {
            size_t nc = *cap ? *cap * 2 : 4096;
            if (nc > JSON_CONV_MAX_BYTES + 2) nc = JSON_CONV_MAX_BYTES + 2;
            char *nb = n + 2 > nc ? NULL : realloc(*buf, nc);
            if (!nb) {
                while (c != '\n' && (c = getc(f)) != EOF) {} /* skip the rest */
                errmsg(err, errlen, "input line longer than %u bytes", JSON_CONV_MAX_BYTES);
                return -1;
            }
            *buf = nb;
            *cap = nc;
        }
        (*buf)[n++] = (char)c;
        if (c == '\n') break;
    }
    if (ferror(f)) {
        errmsg(err, errlen, "read error");
        return -1;
    }
    if (*buf) (*buf)[n] = 0;
    return (long)n;
}

int exclude_parse(const char *csv, char ***list, int *n, char *err, size_t errlen) {
    const char *p = csv;
    while (1) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        while (len && *p == ' ') p++, len--;
        while (len && p[len - 1] == ' ') len--;
        if (len == 0) {
            errmsg(err, errlen, "empty code in exclude list \"%.60s\"", csv);
            return -1;
        }
        char **nl = realloc(*list, (size_t)(*n + 1) * sizeof **list);
        if (!nl) {
            errmsg(err, errlen, "out of memory");
            return -1;
        }
        *list = nl;
        (*list)[(*n)++] = strndup(p, len);
        if (!c) return 0;
        p = c + 1;
    }
}

void exclude_free(char **list, int n) {
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
}
