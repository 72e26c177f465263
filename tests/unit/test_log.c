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
static char all[8][4096];
static int lines;

/* The writer: keeps the last line, and the first 8 in all. */
static void keep(const char *line, void *data) {
  (void)data;
  snprintf(last, sizeof(last), "%s", line);
  if (lines < 8)
    snprintf(all[lines], sizeof(all[lines]), "%s", line);
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
  assert_string_equal(logged("evil\rFORGED error: x\r\x1b[2J\x7f\x01"),
                      "evil?FORGED error: x??[2J??");
  assert_string_equal(logged("\x0b\x0c\x08\x1f\x00"), "????");
}

/* The prefix of line i of the last message: time and level. */
static size_t prefix_len(int i) {
  const char *colon = strstr(all[i], ": ");
  assert_non_null(colon);
  return (size_t)(colon - all[i]) + 2;
}

static void test_each_line_of_a_message_is_a_log_line(void **state) {
  (void)state;
  lines = 0;
  log_msg(LOG_ERROR, "job %s failed: %s", "fail.lua",
          "fail.lua:2: disk full\nstack traceback:\n\t[C]: in function "
          "'error'\n\tfail.lua:2: in main chunk\n");
  assert_int_equal(lines, 4); /* no empty line for the last newline */
  assert_non_null(strstr(all[0], " error: job fail.lua failed: "
                                 "fail.lua:2: disk full"));
  assert_string_equal(all[1] + prefix_len(0), "  stack traceback:");
  assert_string_equal(all[2] + prefix_len(0), "  \t[C]: in function 'error'");
  assert_string_equal(all[3] + prefix_len(0),
                      "  \tfail.lua:2: in main chunk");
  for (int i = 1; i < 4; i++) /* the same time and level */
    assert_memory_equal(all[i], all[0], prefix_len(0));
  /* Every other control character is still defused on each line. */
  lines = 0;
  log_msg(LOG_INFO, "a\x1b[2J\nb\r\xc2\x9b" "c\n\nd");
  assert_int_equal(lines, 4);
  assert_string_equal(all[0] + prefix_len(0), "a?[2J");
  assert_string_equal(all[1] + prefix_len(0), "  b??c");
  assert_string_equal(all[2] + prefix_len(0), "  ");
  assert_string_equal(all[3] + prefix_len(0), "  d");
}

/* A newline in a name a remote user chose cannot start a record: what
 * follows it is an indented continuation of the server's line. */
static void test_a_newline_cannot_forge_a_record(void **state) {
  (void)state;
  lines = 0;
  log_msg(LOG_INFO, "session %s opened", "evil\nFORGED error: x");
  assert_int_equal(lines, 2);
  assert_non_null(strstr(all[0], " info: session evil"));
  assert_memory_equal(all[1], all[0], prefix_len(0));
  assert_string_equal(all[1] + prefix_len(0), "  FORGED error: x opened");
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
    cmocka_unit_test(test_each_line_of_a_message_is_a_log_line),
    cmocka_unit_test(test_a_newline_cannot_forge_a_record),
    cmocka_unit_test(test_c1_becomes_one_question_mark),
    cmocka_unit_test(test_other_characters_are_kept),
    cmocka_unit_test(test_bytes_outside_utf8_become_question_marks),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
