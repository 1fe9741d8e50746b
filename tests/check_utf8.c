/* check_utf8.c - unit tests of utf8.c: the edges of every rule of
 * well-formed UTF-8 (the Unicode standard's table 3-7), each on both sides,
 * with the code points written out by hand; truncated sequences; and
 * utf8_valid over whole texts.
 */
#include "check_main.h"
#include <string.h>
#include "utf8.h"

static const struct { const char *bytes; size_t len; unsigned cp; } table[] = {
    {"\x00", 1, 0x00}, {"\x7f", 1, 0x7f},
    {"\x80", 0, 0}, {"\xbf", 0, 0},                           /* a continuation byte first */
    {"\xc0\x80", 0, 0}, {"\xc1\xbf", 0, 0},                   /* overlong 2-byte */
    {"\xc2\x80", 2, 0x80}, {"\xdf\xbf", 2, 0x7ff},
    {"\xc2\x7f", 0, 0}, {"\xc2\xc0", 0, 0},                   /* not a continuation */
    {"\xe0\x9f\xbf", 0, 0}, {"\xe0\xa0\x80", 3, 0x800},       /* overlong 3-byte below */
    {"\xe2\x82\xac", 3, 0x20ac},
    {"\xed\x9f\xbf", 3, 0xd7ff}, {"\xed\xa0\x80", 0, 0},       /* surrogates from U+D800 */
    {"\xed\xbf\xbf", 0, 0}, {"\xee\x80\x80", 3, 0xe000}, {"\xef\xbf\xbf", 3, 0xffff},
    {"\xf0\x8f\xbf\xbf", 0, 0}, {"\xf0\x90\x80\x80", 4, 0x10000}, /* overlong 4-byte below */
    {"\xf4\x8f\xbf\xbf", 4, 0x10ffff}, {"\xf4\x90\x80\x80", 0, 0}, /* past U+10FFFF */
    {"\xf5\x80\x80\x80", 0, 0}, {"\xff", 0, 0},
};

START_TEST(decode_edges) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const unsigned char *s = (const unsigned char *)table[i].bytes;
        size_t n = table[i].bytes[0] ? strlen(table[i].bytes) : 1;
        unsigned cp = 0xdeadbeef;
        size_t got = utf8_decode(s, n, &cp);
        ck_assert_msg(got == table[i].len, "case %zu: length %zu, want %zu", i, got, table[i].len);
        if (got) ck_assert_msg(cp == table[i].cp, "case %zu: U+%04X, want U+%04X", i, cp, table[i].cp);
        /* one byte short of a whole sequence is not one */
        if (got > 1) ck_assert_uint_eq(utf8_decode(s, got - 1, &cp), 0);
    }
}
END_TEST

START_TEST(valid_texts) {
    ck_assert_int_eq(utf8_valid("", 0), 1);
    ck_assert_int_eq(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8d\x9e", 14), 1);
    ck_assert_int_eq(utf8_valid("caf\xc3\xa9", 4), 0);          /* cut inside the é */
    ck_assert_int_eq(utf8_valid("a\xed\xa0\x80z", 5), 0);       /* a surrogate inside */
    ck_assert_int_eq(utf8_valid("a\0b", 3), 1);                 /* NUL is a character */
}
END_TEST

int main(void) {
    Suite *s = suite_create("utf8");
    TCase *tc = check_case(s, "utf8", 0);
    tcase_add_test(tc, decode_edges);
    tcase_add_test(tc, valid_texts);
    return check_run(s);
}
