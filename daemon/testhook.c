/* testhook.c - reading the test fault file (testhook.h). The file is tiny
 * and read at most a few times a second, only when the variable is set, so
 * it is simply read whole each time.
 */
#include "testhook.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int testhook_enabled(void) {
    const char *path = getenv(TESTHOOK_ENV);
    return path && *path;
}

int testhook_read(char *buf, size_t len) {
    if (len) buf[0] = 0;
    if (!testhook_enabled() || len == 0) return 0;
    FILE *f = fopen(getenv(TESTHOOK_ENV), "r");
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
