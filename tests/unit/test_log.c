/*
 * Unit tests for runtime/log.c: what reaches the log of a text a remote
 * user chose (a user name, a machine name). Control characters, C0 and C1,
 * become '?' so that a name can neither forge a log line nor drive the
 * administrator's terminal; every other character is kept.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

static char last[4096];
static int lines;

/* The writer: keeps the last line. */
static void keep(const char *line, void *data) {
  (void)data;
  snprintf(last, sizeof(last), "%s", line);
  lines++;
}

/* Logs "name: <text>" and returns what the log shows after "name: ". */
static const char *logged(const char *text) {
  const char *at;
  lines = 0;
  log_msg(LOG_INFO, "name: %s", text);
  assert_int_equal(lines, 1);
  at = strstr(last, " info: name: ");
  assert_non_null(at);
  return at + strlen(" info: name: ");
}

static int setup(void **state) {
  (void)state;
  log_set_level(LOG_INFO);
  log_set_writer(keep, NULL);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  log_set_writer(NULL, NULL);
  return 0;
}

static void test_plain_text_is_kept(void **state) {
  (void)state;
  assert_string_equal(logged("Vanessa\tlaptop ~!"), "Vanessa\tlaptop ~!");
}

static void test_c0_and_del_become_question_marks(void **state) {
  (void)state;
  assert_string_equal(logged("evil\nFORGED error: x\r\x1b[2J\x7f\x01"),
                      "evil?FORGED error: x??[2J??");
}

static void test_c1_becomes_one_question_mark(void **state) {
  (void)state;
  /* U+009B (CSI) is 0xC2 0x9B: one '?' for the two bytes. */
  assert_string_equal(logged("a\xc2\x9b" "31mred"), "a?31mred");
  /* The whole range, U+0080..U+009F, and nothing around it. */
  assert_string_equal(logged("\xc2\x80|\xc2\x85|\xc2\x9f|\xc2\x9b\xc2\x9b"),
                      "?|?|?|??");
  assert_null(strchr(logged("x\xc2\x9by"), '\xc2'));
  assert_null(strchr(logged("x\xc2\x9by"), '\x9b'));
}

static void test_other_characters_are_kept(void **state) {
  (void)state;
  /* U+00A0 and U+00E9 (0xC2/0xC3 leads past the C1 range), a three-byte
   * and a four-byte character, and continuation bytes 0x80..0x9F inside
   * them: none is a control. */
  const char *text = "\xc2\xa0" "caf\xc3\xa9 \xe2\x80\x9c" "quoted"
                     "\xe2\x80\x9d \xe2\x82\xac \xf0\x9f\x98\x80 "
                     "\xe4\xb8\x9b";
  assert_string_equal(logged(text), text);
}

static void test_bytes_outside_utf8_become_question_marks(void **state) {
  (void)state;
  /* A lone 0x9B is CSI to a terminal in an 8-bit mode; an overlong C1
   * (0xC1 0x9B would be U+005B) or a cut sequence is no character. */
  assert_string_equal(logged("a\x9b" "31m"), "a?31m");
  assert_string_equal(logged("\xc1\x9b|\xff|\xe2\x82|\xed\xa0\x80"),
                      "??|?|??|???");
  /* A lead byte at the very end, with nothing after it. */
  assert_string_equal(logged("end\xc2"), "end?");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_plain_text_is_kept),
    cmocka_unit_test(test_c0_and_del_become_question_marks),
    cmocka_unit_test(test_c1_becomes_one_question_mark),
    cmocka_unit_test(test_other_characters_are_kept),
    cmocka_unit_test(test_bytes_outside_utf8_become_question_marks),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
