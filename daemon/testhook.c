/* testhook.c - reading the test fault file (testhook.h). The file is tiny
 * and read at most a few times a second, only when the variable is set, so
 * it is simply read whole each time.
 */
#include "testhook.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *testhook_path(void) {
    const char *path = getenv(TESTHOOK_ENV);
    return path && *path ? path : NULL;
}

int testhook_read(const char *path, char *buf, size_t len) {
    if (len) buf[0] = 0;
    if (!path || len == 0) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = 0;
    fclose(f);
    return 1;
}

int testhook_has(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *s = text; s && *s;) {
        const char *end = strchr(s, '\n');
        size_t k = end ? (size_t)(end - s) : strlen(s);
        while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\r')) k--;
        if (k == n && !memcmp(s, line, n)) return 1;
        s = end ? end + 1 : NULL;
    }
    return 0;
}

int testhook_hold(const char *line, char *topic, size_t len, int32_t *partition) {
    if (strncmp(line, "hold ", 5)) return 0;
    const char *s = line + 5;
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strcspn(s, " \t\r\n");
    const char *slash = NULL;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/') slash = s + i;
    if (!slash || slash == s || (size_t)(slash - s) >= len) return 0;
    const char *d = slash + 1, *end = s + n;
    if (d == end || end - d > 10) return 0;
    long long v = 0;
    for (; d < end; d++) {
        if (*d < '0' || *d > '9') return 0;
        v = v * 10 + (*d - '0');
    }
    if (v > INT32_MAX) return 0;
    memcpy(topic, s, (size_t)(slash - s));
    topic[slash - s] = 0;
    *partition = (int32_t)v;
    return 1;
}
