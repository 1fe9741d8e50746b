/* check_testhook.c - the test fault file's reading and parsing
 * (daemon/testhook.h): what a "hold" line names, which lines are refused
 * (no partition, a partition beyond int32 or not a number, a topic too long
 * for the buffer: never a different partition or topic than written), that
 * reads are bounded by the caller's buffer, and the exact-line match.
 */
#include "check_main.h"
#include <string.h>
#include "testhook.h"

START_TEST(hold_lines_parsed) {
    char topic[TESTHOOK_MAX_TOPIC];
    int32_t part = -1;
    ck_assert_int_eq(testhook_hold("hold conversations/0", topic, sizeof topic, &part), 1);
    ck_assert_str_eq(topic, "conversations");
    ck_assert_int_eq(part, 0);
    /* up to its newline; blanks around the name */
    ck_assert_int_eq(testhook_hold("hold   in/12 \r\nblock consumer\n", topic, sizeof topic, &part), 1);
    ck_assert_str_eq(topic, "in");
    ck_assert_int_eq(part, 12);
    /* the last '/' splits */
    ck_assert_int_eq(testhook_hold("hold a/b/2147483647", topic, sizeof topic, &part), 1);
    ck_assert_str_eq(topic, "a/b");
    ck_assert_int_eq(part, 2147483647);
    /* Kafka's longest topic name fits */
    char line[400], longest[250];
    memset(longest, 't', 249);
    longest[249] = 0;
    snprintf(line, sizeof line, "hold %s/3", longest);
    ck_assert_int_eq(testhook_hold(line, topic, sizeof topic, &part), 1);
    ck_assert_str_eq(topic, longest);
    ck_assert_int_eq(part, 3);
}
END_TEST

START_TEST(bad_hold_lines_refused) {
    char topic[TESTHOOK_MAX_TOPIC] = "unchanged";
    int32_t part = -7;
    static const char *const bad[] = {
        "hold", "hold ", "hold in", "hold in/", "hold /3", "hold in/-1", "hold in/+1",
        "hold in/3x", "hold in/0x10", "hold in/2147483648", "hold in/99999999999",
        "hold in/18446744073709551617", "hold\tin/0", "block consumer", "# hold in/0", " hold in/0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(!testhook_hold(bad[i], topic, sizeof topic, &part), "accepted '%s'", bad[i]);
    ck_assert_str_eq(topic, "unchanged");
    ck_assert_int_eq(part, -7);
    /* a topic longer than the buffer is refused, not cut to another name */
    char line[400];
    memset(line, 0, sizeof line);
    memcpy(line, "hold ", 5);
    memset(line + 5, 'x', 300);
    memcpy(line + 305, "/1", 2);
    ck_assert_int_eq(testhook_hold(line, topic, sizeof topic, &part), 0);
    ck_assert_int_eq(testhook_hold("hold abcdef/1", topic, 6, &part), 0);
    ck_assert_int_eq(testhook_hold("hold abcde/1", topic, 6, &part), 1);
    ck_assert_str_eq(topic, "abcde");
}
END_TEST

START_TEST(read_bounded_and_lines_matched) {
    char path[64], buf[16];
    snprintf(path, sizeof path, "/tmp/check_testhook-%d", (int)getpid());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("hold in/0\nblock consumer\nand a lot more than sixteen bytes\n", f);
    fclose(f);
    ck_assert_int_eq(testhook_read(path, buf, sizeof buf), 1);
    ck_assert_uint_eq(strlen(buf), sizeof buf - 1);
    ck_assert_str_eq(buf, "hold in/0\nblock");
    char text[256];
    ck_assert_int_eq(testhook_read(path, text, sizeof text), 1);
    ck_assert(testhook_has(text, "block consumer"));  /* not only on the first line */
    ck_assert(testhook_has(text, "hold in/0"));
    ck_assert(!testhook_has(text, "block"));
    ck_assert(!testhook_has(text, "hold in/"));
    unlink(path);
    ck_assert_int_eq(testhook_read(path, text, sizeof text), 0);   /* gone: nothing */
    ck_assert_str_eq(text, "");
    ck_assert_int_eq(testhook_read(NULL, text, sizeof text), 0);   /* off */
    ck_assert_str_eq(text, "");
    ck_assert(testhook_has("block consumer \r\n", "block consumer"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("testhook");
    TCase *tc = check_case(s, "file", 0);
    tcase_add_test(tc, hold_lines_parsed);
    tcase_add_test(tc, bad_hold_lines_refused);
    tcase_add_test(tc, read_bounded_and_lines_matched);
    return check_run(s);
}
