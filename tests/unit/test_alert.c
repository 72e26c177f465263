/*
 * Unit tests for runtime/alert.c: the layout of the client's message box.
 */
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <cmocka.h>

#include "alert.h"

#define MAX_LINES 64

/* A rendering split into its lines (without "\n"). */
typedef struct box {
  char *buf;
  int n;
  char *line[MAX_LINES];
} box_t;

/* Renders into a buffer sized by a first call, and splits the lines. */
static void render(box_t *b, const char *time, const char *text, int width,
                   int utf8) {
  int len = alert_render(NULL, 0, time, text, width, utf8);
  char *p;
  assert_true(len > 0);
  b->buf = malloc((size_t)len + 1);
  assert_non_null(b->buf);
  assert_int_equal(alert_render(b->buf, (size_t)len + 1, time, text, width,
                                utf8),
                   len);
  assert_int_equal(strlen(b->buf), (size_t)len);
  assert_int_equal(b->buf[len - 1], '\n');
  b->n = 0;
  for (p = b->buf; *p != '\0';) {
    char *nl = strchr(p, '\n');
    assert_non_null(nl);
    assert_true(b->n < MAX_LINES);
    *nl = '\0';
    b->line[b->n++] = p;
    p = nl + 1;
  }
}

/* The display columns of s, as a terminal in a UTF-8 locale draws it. */
static int columns(const char *s) {
  wchar_t w[1024];
  size_t n = mbstowcs(w, s, 1024);
  int cols;
  assert_true(n != (size_t)-1 && n < 1024);
  cols = wcswidth(w, n);
  assert_true(cols >= 0);
  return cols;
}

/* Checks that s is well-formed UTF-8 (no cut sequences). */
static void assert_valid_utf8(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int len = *p < 0x80 ? 1 : *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : 2;
    assert_true(*p < 0x80 || *p >= 0xC2);
    for (int i = 1; i < len; i++) assert_int_equal(p[i] & 0xC0, 0x80);
    p += len;
  }
}

/* Every line of the box is exactly `width` columns wide. */
static void assert_rectangular(const box_t *b, int width) {
  for (int i = 0; i < b->n; i++) assert_int_equal(columns(b->line[i]), width);
}

/*
 * The text between the side borders of body line i (0 = first line under
 * the header rule), trailing padding removed, copied into out.
 */
static const char *body(const box_t *b, int header_lines, int i, char *out,
                        size_t outlen, int utf8) {
  const char *l = b->line[2 + header_lines + i];
  size_t side = utf8 ? 3 : 1, len = strlen(l);
  assert_true(len >= 2 * side + 2);
  assert_true(len - 2 * side - 2 < outlen);
  memcpy(out, l + side + 1, len - 2 * side - 2);
  len -= 2 * side + 2;
  while (len > 0 && out[len - 1] == ' ') len--;
  out[len] = '\0';
  return out;
}

static void test_frame_and_header(void **state) {
  box_t b;
  (void)state;
  render(&b, "21:00:00", "hello", 40, 1);
  assert_int_equal(b.n, 5);
  assert_rectangular(&b, 40);
  assert_memory_equal(b.line[0], "\u2554\u2550", strlen("\u2554\u2550"));
  assert_non_null(strstr(b.line[1], "Message from the server"));
  /* the time sits right-aligned against the right border */
  assert_non_null(strstr(b.line[1], "21:00:00 \u2551"));
  assert_memory_equal(b.line[2], "\u255f\u2500", strlen("\u255f\u2500"));
  assert_non_null(strstr(b.line[3], "\u2551 hello "));
  assert_memory_equal(b.line[4], "\u255a\u2550", strlen("\u255a\u2550"));
  free(b.buf);
}

static void test_wrapping(void **state) {
  box_t b;
  char l[128];
  (void)state;
  /* width 20: 16 columns of text */
  render(&b, "10:11:12", "the quick brown fox jumps over the lazy dog", 20,
         0);
  assert_rectangular(&b, 20);
  /* title and time do not fit in 16 columns: wrapped like the text */
  assert_string_equal(b.line[1], "| Message from the |");
  assert_string_equal(b.line[2], "| server 10:11:12  |");
  assert_string_equal(b.line[3], "+------------------+");
  assert_string_equal(body(&b, 2, 0, l, sizeof(l), 0), "the quick brown");
  assert_string_equal(body(&b, 2, 1, l, sizeof(l), 0), "fox jumps over");
  assert_string_equal(body(&b, 2, 2, l, sizeof(l), 0), "the lazy dog");
  assert_int_equal(b.n, 3 + 2 + 3);
  free(b.buf);
}

static void test_spaces_and_paragraphs(void **state) {
  box_t b;
  char l[128];
  (void)state;
  render(&b, "", "  indented  twice\n\nafter a blank line\n", 30, 0);
  assert_rectangular(&b, 30);
  /* without a time the header is just the title */
  assert_string_equal(b.line[1], "| Message from the server    |");
  assert_string_equal(body(&b, 1, 0, l, sizeof(l), 0), "  indented  twice");
  assert_string_equal(body(&b, 1, 1, l, sizeof(l), 0), "");
  assert_string_equal(body(&b, 1, 2, l, sizeof(l), 0), "after a blank line");
  /* the trailing newline adds no line */
  assert_int_equal(b.n, 3 + 3 + 1);
  free(b.buf);
}

static void test_long_word(void **state) {
  box_t b;
  char l[128];
  (void)state;
  /* inner width 10; a 25-character word after a short one */
  render(&b, NULL, "see abcdefghijklmnopqrstuvwxy ok", 14, 0);
  assert_rectangular(&b, 14);
  assert_string_equal(body(&b, 3, 0, l, sizeof(l), 0), "see");
  assert_string_equal(body(&b, 3, 1, l, sizeof(l), 0), "abcdefghij");
  assert_string_equal(body(&b, 3, 2, l, sizeof(l), 0), "klmnopqrst");
  assert_string_equal(body(&b, 3, 3, l, sizeof(l), 0), "uvwxy ok");
  free(b.buf);
}

static void test_utf8_text(void **state) {
  box_t b;
  char l[128];
  (void)state;
  /* 13 two-byte letters and a 4-byte emoji in one word, inner width 6 */
  render(&b, NULL,
         "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
         "\U0001F600\u00e9\u00e9\u00e9\u00e9",
         10, 1);
  assert_valid_utf8(b.buf);
  assert_rectangular(&b, 10);
  assert_string_equal(body(&b, 4, 0, l, sizeof(l), 1),
                      "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9");
  /* the emoji takes two columns */
  assert_string_equal(body(&b, 4, 1, l, sizeof(l), 1),
                      "\u00e9\u00e9\u00e9\U0001F600\u00e9");
  assert_string_equal(body(&b, 4, 2, l, sizeof(l), 1), "\u00e9\u00e9\u00e9");
  free(b.buf);
}

/* Wide characters (CJK, emoji) take two columns, combining marks none:
 * the box stays square in the terminal. */
static void test_wide_and_combining(void **state) {
  box_t b;
  char l[128];
  (void)state;
  render(&b, "21:00",
         "\u670d\u52a1\u5668\u5c06\u5728\u665a\u4e0a\u5341\u70b9"
         "\u91cd\u542f \U0001F6A8 cafe\u0301 \u00e9t\u00e9",
         16, 1);
  assert_valid_utf8(b.buf);
  assert_rectangular(&b, 16);
  /* twelve columns inside: six ideographs per line; the emoji is two
   * columns and the combining accent none, so the rest fits on one */
  assert_int_equal(b.n, 9);
  assert_string_equal(body(&b, 3, 0, l, sizeof(l), 1),
                      "\u670d\u52a1\u5668\u5c06\u5728\u665a");
  assert_string_equal(body(&b, 3, 1, l, sizeof(l), 1),
                      "\u4e0a\u5341\u70b9\u91cd\u542f");
  assert_string_equal(body(&b, 3, 2, l, sizeof(l), 1),
                      "\U0001F6A8 cafe\u0301 \u00e9t\u00e9");
  free(b.buf);
}

static void test_ascii_mode_and_controls(void **state) {
  box_t b;
  char l[128];
  (void)state;
  render(&b, NULL, "caf\u00e9 \x1b[31mred\x07\tx\xff", 40, 0);
  assert_rectangular(&b, 40);
  assert_null(strchr(b.buf, '\x1b'));
  assert_null(strchr(b.buf, '\x07'));
  for (const unsigned char *p = (const unsigned char *)b.buf; *p; p++)
    assert_true(*p < 0x80);
  assert_string_equal(body(&b, 1, 0, l, sizeof(l), 0), "caf? ?[31mred? x?");
  free(b.buf);

  render(&b, NULL, "bad \xc3( end \xed\xa0\x80", 40, 1);
  assert_valid_utf8(b.buf);
  assert_rectangular(&b, 40);
  assert_string_equal(body(&b, 1, 0, l, sizeof(l), 1),
                      "bad \ufffd( end \ufffd\ufffd\ufffd");
  free(b.buf);
}

static void test_empty_text(void **state) {
  box_t b;
  char l[128];
  (void)state;
  render(&b, "09:00:00", "", 40, 1);
  assert_int_equal(b.n, 5);
  assert_rectangular(&b, 40);
  assert_string_equal(body(&b, 1, 0, l, sizeof(l), 1), "");
  free(b.buf);

  render(&b, "09:00:00", NULL, 40, 1);
  assert_int_equal(b.n, 5);
  free(b.buf);

  render(&b, "09:00:00", " \n \n", 40, 1);
  assert_int_equal(b.n, 5);
  free(b.buf);
}

static void test_narrow_widths(void **state) {
  box_t b;
  char l[128];
  (void)state;
  for (int w = -3; w <= 12; w++) {
    int eff = w < ALERT_MIN_WIDTH ? ALERT_MIN_WIDTH : w;
    render(&b, "12:34:56", "a bc def", w, w % 2);
    assert_rectangular(&b, eff);
    assert_valid_utf8(b.buf);
    free(b.buf);
  }
  render(&b, NULL, "a bc def", 1, 0);
  /*
   * two columns inside: the title takes 11 lines (Me ss ag e fr om th e se
   * rv er), the text 4: "a", "bc", "de", "f"
   */
  assert_int_equal(b.n, 3 + 11 + 4);
  assert_string_equal(b.line[1], "| Me |");
  assert_string_equal(b.line[11], "| er |");
  assert_string_equal(body(&b, 11, 0, l, sizeof(l), 0), "a");
  assert_string_equal(body(&b, 11, 1, l, sizeof(l), 0), "bc");
  assert_string_equal(body(&b, 11, 2, l, sizeof(l), 0), "de");
  assert_string_equal(body(&b, 11, 3, l, sizeof(l), 0), "f");
  free(b.buf);
}

static void test_truncated_output(void **state) {
  char full[512], small[16];
  int len, rc;
  (void)state;
  len = alert_render(full, sizeof(full), "01:02:03", "hello world", 30, 1);
  assert_true(len > (int)sizeof(small));
  assert_int_equal(strlen(full), (size_t)len);
  memset(small, 'x', sizeof(small));
  rc = alert_render(small, sizeof(small), "01:02:03", "hello world", 30, 1);
  assert_int_equal(rc, len);
  assert_int_equal(small[sizeof(small) - 1], '\0');
  assert_memory_equal(small, full, sizeof(small) - 1);
  /* outlen 0 writes nothing at all */
  small[0] = 'x';
  assert_int_equal(alert_render(small, 0, NULL, "hi", 30, 0),
                   alert_render(NULL, 0, NULL, "hi", 30, 0));
  assert_int_equal(small[0], 'x');
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_frame_and_header),
    cmocka_unit_test(test_wrapping),
    cmocka_unit_test(test_spaces_and_paragraphs),
    cmocka_unit_test(test_long_word),
    cmocka_unit_test(test_utf8_text),
    cmocka_unit_test(test_wide_and_combining),
    cmocka_unit_test(test_ascii_mode_and_controls),
    cmocka_unit_test(test_empty_text),
    cmocka_unit_test(test_narrow_widths),
    cmocka_unit_test(test_truncated_output),
  };
  /* as herald client runs in a UTF-8 terminal (setlocale(LC_CTYPE, "")) */
  if (setlocale(LC_CTYPE, "C.UTF-8") == NULL) {
    fprintf(stderr, "test_alert: no C.UTF-8 locale\n");
    return 1;
  }
  return cmocka_run_group_tests(tests, NULL, NULL);
}
