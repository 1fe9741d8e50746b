/* utf8.h - UTF-8 well-formedness, one rule set for every module that takes
 * text from outside: event strings and keys made valid for JSON, metric
 * label values, prompts and category names, generated tokens. A sequence
 * is well formed as the Unicode standard defines it (its table 3-7): a lead
 * byte 0x00-0x7F, 0xC2-0xF4 followed by as many continuation bytes as it
 * says, no overlong form, no UTF-16 surrogate (U+D800-U+DFFF), nothing past
 * U+10FFFF. (The tokenizer keeps a check of its own that says which rule a
 * text breaks, for its error message.)
 */
#ifndef GUARDD_UTF8_H
#define GUARDD_UTF8_H
#include <stddef.h>

/* The sequence at s[0..n) (n >= 1): its length (1..4) with its code point in
 * *cp, or 0 when the bytes there do not start a well-formed sequence. */
size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp);

/* 1 when s[0..len) is well-formed UTF-8 throughout, else 0. */
int utf8_valid(const char *s, size_t len);

#endif
