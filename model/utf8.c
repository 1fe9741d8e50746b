/* utf8.c - UTF-8 well-formedness (utf8.h): a sequence is decoded, then
 * refused when its code point needed fewer bytes (overlong), is a UTF-16
 * surrogate or lies past U+10FFFF, which covers the standard's per-lead-byte
 * ranges for the second byte without a table. */
#include "utf8.h"

size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; *cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; *cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; *cp = c & 0x07; }
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        *cp = (*cp << 6) | (s[k] & 0x3F);
    }
    if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
    return len;
}

int utf8_valid(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned cp;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_decode(u + i, len - i, &cp);
        if (!n) return 0;
        i += n;
    }
    return 1;
}
