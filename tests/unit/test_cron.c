/*
 * test_cron.c - unit tests for runtime/cron.c: every accepted form, every
 * refusal and its message, and next times in UTC, Europe/Paris and
 * America/New_York, DST changes included.  Expected instants in DST tests
 * are written in UTC, with the local time beside them (checked with
 * `TZ=Europe/Paris date -d @N`).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cron.h"

/* ---- helpers ---------------------------------------------------------- */

static void use_zone(const char *tz)
{
  assert_int_equal(setenv("TZ", tz, 1), 0);
  tzset();
}

/* "YYYY-MM-DD HH:MM" read as UTC. */
static time_t utc(const char *s)
{
  struct tm tm;

  memset(&tm, 0, sizeof tm);
  assert_int_equal(sscanf(s, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon,
                          &tm.tm_mday, &tm.tm_hour, &tm.tm_min), 5);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return timegm(&tm);
}

/* "YYYY-MM-DD HH:MM" read in the current zone; fails the test if that
   wall-clock time does not exist there (mktime would move it). */
static time_t local(const char *s)
{
  struct tm tm, back;
  time_t t;

  memset(&tm, 0, sizeof tm);
  assert_int_equal(sscanf(s, "%d-%d-%d %d:%d", &tm.tm_year, &tm.tm_mon,
                          &tm.tm_mday, &tm.tm_hour, &tm.tm_min), 5);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  tm.tm_isdst = -1;
  back = tm;
  t = mktime(&back);
  assert_int_not_equal(t, (time_t)-1);
  assert_int_equal(back.tm_hour, tm.tm_hour);
  assert_int_equal(back.tm_min, tm.tm_min);
  return t;
}

static cron_t parse_ok(const char *expr)
{
  cron_t c;
  char err[128];
  int rc = cron_parse(&c, expr, err, sizeof err);

  if (rc != 0)
    print_error("parsing \"%s\": %s\n", expr, err);
  assert_int_equal(rc, 0);
  assert_string_equal(err, "");
  return c;
}

/* Checks that expr, starting just after `after`, fires at want[0], then
   want[1], ... (each next time asked after the previous one). */
static void expect_times(const char *expr, time_t after, const time_t *want,
                         size_t n)
{
  cron_t c = parse_ok(expr);
  time_t got;
  size_t i;

  for (i = 0; i < n; i++) {
    got = 0;
    assert_int_equal(cron_next(&c, after, &got), 0);
    if (got != want[i])
      print_error("\"%s\" after %lld: got %lld, want %lld\n", expr,
                  (long long)after, (long long)got, (long long)want[i]);
    assert_int_equal(got, want[i]);
    after = got;
  }
}

static void expect_next(const char *expr, time_t after, time_t want)
{
  expect_times(expr, after, &want, 1);
}

static uint64_t bits(int lo, int hi, int step)
{
  uint64_t b = 0;

  for (; lo <= hi; lo += step)
    b |= (uint64_t)1 << lo;
  return b;
}

/* ---- parsing ---------------------------------------------------------- */

static void test_parse_stars(void **state)
{
  cron_t c = parse_ok(" \t* * * * *\n");

  (void)state;
  assert_true(c.minute == bits(0, 59, 1));
  assert_true(c.hour == bits(0, 23, 1));
  assert_true(c.dom == bits(1, 31, 1));
  assert_true(c.month == bits(1, 12, 1));
  assert_true(c.dow == bits(0, 6, 1));
  assert_true(c.minute_star && c.hour_star && c.dom_star && c.dow_star);
  assert_false(c.reboot);
  assert_int_equal(cron_is_reboot(&c), 0);
}

static void test_parse_numbers_lists_ranges(void **state)
{
  cron_t c = parse_ok("1,2,5 1-5 7,10-12,31 2 0");

  (void)state;
  assert_true(c.minute == (bits(1, 2, 1) | bits(5, 5, 1)));
  assert_true(c.hour == bits(1, 5, 1));
  assert_true(c.dom == (bits(7, 7, 1) | bits(10, 12, 1) | bits(31, 31, 1)));
  assert_true(c.month == bits(2, 2, 1));
  assert_true(c.dow == bits(0, 0, 1));
  assert_false(c.minute_star || c.hour_star || c.dom_star || c.dow_star);
  c = parse_ok("00 023 01 012 006");
  assert_true(c.minute == 1 && c.hour == bits(23, 23, 1));
  assert_true(c.dom == bits(1, 1, 1) && c.month == bits(12, 12, 1));
  assert_true(c.dow == bits(6, 6, 1));
}

static void test_parse_steps(void **state)
{
  cron_t c = parse_ok("*/15 10-20/5 5/10 */5 */2");

  (void)state;
  assert_true(c.minute == bits(0, 59, 15));
  assert_true(c.hour == bits(10, 20, 5));
  assert_true(c.dom == bits(5, 31, 10));
  assert_true(c.month == bits(1, 12, 5));
  assert_true(c.dow == bits(0, 6, 2));
  assert_true(c.minute_star && !c.hour_star && !c.dom_star && c.dow_star);
  c = parse_ok("10-50/5 5/10 1-31/31 12/1 1/2");
  assert_true(c.minute == bits(10, 50, 5));
  assert_true(c.hour == bits(5, 23, 10));
  assert_true(c.dom == bits(1, 1, 1));
  assert_true(c.month == bits(12, 12, 1));
  assert_true(c.dow == bits(1, 6, 2)); /* N/S stops at Saturday */
  c = parse_ok("59/59 */23 * * */7");
  assert_true(c.minute == bits(59, 59, 1));
  assert_true(c.hour == (bits(0, 0, 1) | bits(23, 23, 1)));
  assert_true(c.dow == bits(0, 0, 1));
}

static void test_parse_names(void **state)
{
  cron_t c = parse_ok("0 0 * jan,Mar-MAY,dec mon-fri");

  (void)state;
  assert_true(c.month == (bits(1, 1, 1) | bits(3, 5, 1) | bits(12, 12, 1)));
  assert_true(c.dow == bits(1, 5, 1));
  c = parse_ok("0 0 * FEB-jun/2 sun,SAT");
  assert_true(c.month == bits(2, 6, 2));
  assert_true(c.dow == (bits(0, 0, 1) | bits(6, 6, 1)));
  c = parse_ok("0 0 * * tue/2");
  assert_true(c.dow == bits(2, 6, 2));
}

static void test_parse_sunday_seven(void **state)
{
  cron_t c = parse_ok("0 0 * * 7");

  (void)state;
  assert_true(c.dow == bits(0, 0, 1));
  c = parse_ok("0 0 * * 5-7");
  assert_true(c.dow == (bits(0, 0, 1) | bits(5, 6, 1)));
  c = parse_ok("0 0 * * 0-7");
  assert_true(c.dow == bits(0, 6, 1));
  c = parse_ok("0 0 * * fri-7");
  assert_true(c.dow == (bits(0, 0, 1) | bits(5, 6, 1)));
}

static void test_parse_macros(void **state)
{
  static const struct { const char *macro, *same_as; } cases[] = {
    { "@yearly", "0 0 1 1 *" },   { "@annually", "0 0 1 1 *" },
    { "@monthly", "0 0 1 * *" },  { "@weekly", "0 0 * * 0" },
    { "@daily", "0 0 * * *" },    { "@midnight", "0 0 * * *" },
    { "@hourly", "0 * * * *" },   { "  @DAILY\t", "0 0 * * *" },
  };
  cron_t a, b;
  size_t i;

  (void)state;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    a = parse_ok(cases[i].macro);
    b = parse_ok(cases[i].same_as);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(cron_is_reboot(&a), 0);
  }
}

static void test_parse_reboot(void **state)
{
  cron_t c = parse_ok("@reboot");
  time_t next = 42;

  (void)state;
  assert_int_equal(cron_is_reboot(&c), 1);
  assert_true(c.minute == 0 && c.hour == 0 && c.dom == 0);
  assert_int_equal(cron_next(&c, utc("2026-01-01 00:00"), &next),
                   CRON_EREBOOT);
  assert_int_equal(next, 42);
}

static void test_parse_refusals(void **state)
{
  static const struct { const char *expr, *message; } cases[] = {
    { "", "empty cron expression" },
    { " \t ", "empty cron expression" },
    { "* * * *", "expected 5 fields, got 4" },
    { "* * * * * *", "expected 5 fields, got 6" },
    { "0 0 * * * echo hi", "expected 5 fields, got 7" },
    { "61 * * * *", "minute field: 61 is out of range 0-59" },
    { "99999999999 * * * *",
      "minute field: 99999999999 is out of range 0-59" },
    { "* 24 * * *", "hour field: 24 is out of range 0-23" },
    { "* * 0 * *", "day-of-month field: 0 is out of range 1-31" },
    { "* * 1-32 * *", "day-of-month field: 32 is out of range 1-31" },
    { "* * * 13 *", "month field: 13 is out of range 1-12" },
    { "* * * 0 *", "month field: 0 is out of range 1-12" },
    { "* * * * 8", "day-of-week field: 8 is out of range 0-7" },
    { "* * * * fry", "day-of-week field: unknown name \"fry\"" },
    { "* * * * monday", "day-of-week field: unknown name \"monday\"" },
    { "* * * jam *", "month field: unknown name \"jam\"" },
    { "* * * * jan", "day-of-week field: unknown name \"jan\"" },
    { "abc * * * *", "minute field: expected a number, got \"abc\"" },
    { "* * mon * *", "day-of-month field: expected a number, got \"mon\"" },
    { "*/0 * * * *", "minute field: step 0 is not allowed" },
    { "* 1-5/0 * * *", "hour field: step 0 is not allowed" },
    { "*/60 * * * *", "minute field: step 60 is out of range 1-59" },
    { "* * * * */8", "day-of-week field: step 8 is out of range 1-7" },
    { "5-1 * * * *", "minute field: range \"5-1\" is reversed" },
    { "* * * * fri-mon",
      "day-of-week field: range \"fri-mon\" is reversed" },
    { "* * * dec-jan/2 *", "month field: range \"dec-jan\" is reversed" },
    { "1,,2 * * * *", "minute field: empty list item" },
    { ",1 * * * *", "minute field: empty list item" },
    { "* 1, * * *", "hour field: empty list item" },
    { "5x * * * *", "minute field: unexpected character 'x' in \"5x\"" },
    { "-5 * * * *", "minute field: unexpected character '-' in \"-5\"" },
    { "1.5 * * * *", "minute field: unexpected character '.' in \"1.5\"" },
    { "*-5 * * * *", "minute field: unexpected character '-' in \"*-5\"" },
    { "*/x * * * *", "minute field: unexpected character 'x' in \"*/x\"" },
    { "1-2-3 * * * *",
      "minute field: unexpected character '-' in \"1-2-3\"" },
    { "1/2/3 * * * *",
      "minute field: unexpected character '/' in \"1/2/3\"" },
    { "1- * * * *", "minute field: \"1-\" is incomplete" },
    { "*/ * * * *", "minute field: \"*/\" is incomplete" },
    { "@daily 5", "macro \"@daily\" must be the whole expression" },
    { "@fortnightly", "unknown macro \"@fortnightly\"" },
    { "@", "unknown macro \"@\"" },
  };
  cron_t c;
  char err[128];
  size_t i;

  (void)state;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memset(&c, 0xff, sizeof c);
    strcpy(err, "untouched");
    assert_int_equal(cron_parse(&c, cases[i].expr, err, sizeof err),
                     CRON_EPARSE);
    if (strcmp(err, cases[i].message) != 0)
      print_error("\"%s\": got \"%s\"\n", cases[i].expr, err);
    assert_string_equal(err, cases[i].message);
    assert_true(c.minute == 0 && c.dow == 0 && !c.reboot && !c.dom_star);
  }
}

static void test_parse_err_buffer_edges(void **state)
{
  cron_t c;
  char small[12];

  (void)state;
  assert_int_equal(cron_parse(&c, NULL, small, sizeof small), CRON_EPARSE);
  assert_string_equal(small, "empty cron ");
  assert_int_equal(cron_parse(&c, "61 * * * *", small, sizeof small),
                   CRON_EPARSE);
  assert_string_equal(small, "minute fiel");
  assert_int_equal(cron_parse(&c, "61 * * * *", NULL, 0), CRON_EPARSE);
  assert_int_equal(cron_parse(&c, "0 * * * *", NULL, 0), 0);
}

/* ---- next time, no DST ------------------------------------------------ */

static void test_next_strictly_after(void **state)
{
  (void)state;
  use_zone("UTC");
  expect_next("30 12 * * *", utc("2026-01-10 12:29"),
              utc("2026-01-10 12:30"));
  expect_next("30 12 * * *", utc("2026-01-10 12:30"),
              utc("2026-01-11 12:30"));
  expect_next("30 12 * * *", utc("2026-01-10 12:29") + 59,
              utc("2026-01-10 12:30"));
  expect_next("* * * * *", utc("2026-01-10 12:29") + 1,
              utc("2026-01-10 12:30"));
  expect_next("59 23 31 12 *", utc("2026-12-31 23:59"),
              utc("2027-12-31 23:59"));
}

static void test_next_month_ends(void **state)
{
  const time_t want[] = {
    utc("2026-03-31 00:00"), utc("2026-05-31 00:00"),
    utc("2026-07-31 00:00"), utc("2026-08-31 00:00"),
    utc("2026-10-31 00:00"), utc("2026-12-31 00:00"),
    utc("2027-01-31 00:00"),
  };

  (void)state;
  use_zone("UTC");
  expect_times("0 0 31 * *", utc("2026-01-31 00:00"), want, 7);
  expect_next("0 0 30 * *", utc("2026-01-30 00:00"),
              utc("2026-03-30 00:00"));
  expect_next("0 0 29 * *", utc("2026-01-29 00:00"),
              utc("2026-03-29 00:00"));
}

static void test_next_leap_day(void **state)
{
  const time_t want[] = { utc("2028-02-29 00:00"), utc("2032-02-29 00:00") };

  (void)state;
  use_zone("UTC");
  expect_times("0 0 29 2 *", utc("2025-03-01 00:00"), want, 2);
  /* 2100 is not a leap year: eight years to the next 29 February. */
  expect_next("0 0 29 2 *", utc("2096-03-01 00:00"),
              utc("2104-02-29 00:00"));
}

static void test_next_dom_dow_rule(void **state)
{
  /* 1st, 15th, or any Monday: both restricted, either matches. */
  const time_t either[] = {
    utc("2026-02-02 00:00"), utc("2026-02-09 00:00"),
    utc("2026-02-15 00:00"), utc("2026-02-16 00:00"),
    utc("2026-02-23 00:00"), utc("2026-03-01 00:00"),
    utc("2026-03-02 00:00"),
  };

  (void)state;
  use_zone("UTC");
  expect_times("0 0 1,15 * 1", utc("2026-02-01 00:00"), either, 7);
  /* A stepped `*` counts as `*`: odd days that are also Mondays (the
     2nd is a Monday but even). */
  expect_next("0 0 */2 * 1", utc("2026-02-01 00:00"),
              utc("2026-02-09 00:00"));
  expect_next("0 0 */2 * 1", utc("2026-02-09 00:00"),
              utc("2026-02-23 00:00"));
  /* Day-of-week `*`: only the day of month counts. */
  expect_next("0 0 13 * *", utc("2026-02-14 00:00"),
              utc("2026-03-13 00:00"));
  /* Day-of-month `*`: only the weekday counts (2026-02-06 is a Friday). */
  expect_next("0 0 * * fri", utc("2026-02-01 00:00"),
              utc("2026-02-06 00:00"));
}

static void test_next_macros(void **state)
{
  (void)state;
  use_zone("Europe/Paris");
  expect_next("@hourly", local("2026-02-04 10:15"), local("2026-02-04 11:00"));
  expect_next("@daily", local("2026-02-04 10:15"), local("2026-02-05 00:00"));
  expect_next("@midnight", local("2026-02-04 00:00"),
              local("2026-02-05 00:00"));
  /* 2026-02-04 is a Wednesday; the next Sunday is the 8th. */
  expect_next("@weekly", local("2026-02-04 10:15"), local("2026-02-08 00:00"));
  expect_next("@monthly", local("2026-02-15 10:15"),
              local("2026-03-01 00:00"));
  expect_next("@yearly", local("2026-06-01 10:15"), local("2027-01-01 00:00"));
  expect_next("@annually", local("2026-01-01 00:00"),
              local("2027-01-01 00:00"));
}

static void test_next_steps(void **state)
{
  const time_t quarter[] = {
    utc("2026-02-04 10:30"), utc("2026-02-04 10:45"),
    utc("2026-02-04 11:00"),
  };
  const time_t from_five[] = {
    utc("2026-02-04 10:55"), utc("2026-02-04 11:05"),
  };

  (void)state;
  use_zone("UTC");
  expect_times("*/15 * * * *", utc("2026-02-04 10:16"), quarter, 3);
  expect_next("10-50/20 * * * *", utc("2026-02-04 10:51"),
              utc("2026-02-04 11:10"));
  expect_times("5/10 * * * *", utc("2026-02-04 10:46"), from_five, 2);
  expect_next("0 */6 * * *", utc("2026-02-04 13:00"),
              utc("2026-02-04 18:00"));
  expect_next("0 0 1 */4 *", utc("2026-02-04 13:00"),
              utc("2026-05-01 00:00"));
  expect_next("0 0 1 jan,jul *", utc("2026-02-04 13:00"),
              utc("2026-07-01 00:00"));
}

static void test_next_sunday_seven(void **state)
{
  (void)state;
  use_zone("UTC");
  /* 2026-02-02 is a Monday. */
  expect_next("0 9 * * 7", utc("2026-02-02 00:00"), utc("2026-02-08 09:00"));
  expect_next("0 9 * * 0", utc("2026-02-02 00:00"), utc("2026-02-08 09:00"));
  expect_next("0 9 * * sat-7", utc("2026-02-02 00:00"),
              utc("2026-02-07 09:00"));
}

static void test_next_weekdays_in_paris(void **state)
{
  time_t want[2];

  (void)state;
  use_zone("Europe/Paris");
  want[0] = local("2026-02-09 21:45");
  want[1] = local("2026-02-10 21:45");
  /* API.md's example, asked on a Friday evening after it ran. */
  expect_times("45 21 * * 1-5", local("2026-02-06 22:00"), want, 2);
  assert_int_equal(want[0], utc("2026-02-09 20:45"));
}

static void test_next_none(void **state)
{
  static const char *const never[] = {
    "0 0 30 2 *", "0 0 31 4 *", "0 0 31 jun,sep,nov *",
  };
  cron_t c;
  time_t next = 42;
  size_t i;

  (void)state;
  use_zone("UTC");
  for (i = 0; i < sizeof never / sizeof never[0]; i++) {
    c = parse_ok(never[i]);
    assert_int_equal(cron_next(&c, utc("2026-01-01 00:00"), &next),
                     CRON_ENONEXT);
    assert_int_equal(next, 42);
  }
  /* 29 February on a Sunday: 2032 is the next after 2024-02-23, exactly
     CRON_HORIZON_DAYS later; one minute more is out of reach. */
  expect_next("0 0 29 2 */7", utc("2024-02-23 00:00"),
              utc("2032-02-29 00:00"));
  assert_int_equal(utc("2032-02-29 00:00") - utc("2024-02-23 00:00"),
                   (time_t)CRON_HORIZON_DAYS * 86400);
  c = parse_ok("1 0 29 2 */7");
  assert_int_equal(cron_next(&c, utc("2024-02-23 00:00"), &next),
                   CRON_ENONEXT);
  assert_int_equal(next, 42);
}

static void test_next_out_of_range(void **state)
{
  cron_t c = parse_ok("* * * * *");
  time_t next = 42;
  time_t far = (time_t)(sizeof(time_t) >= 8 ? INT64_MAX - 10 : INT32_MAX);

  (void)state;
  use_zone("UTC");
  assert_int_equal(cron_next(&c, far, &next), CRON_ERANGE);
  assert_int_equal(next, 42);
}

/* ---- next time across DST changes ------------------------------------- */

static void test_dst_paris_spring_forward(void **state)
{
  /* 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST. */
  const time_t daily_0230[] = {
    utc("2026-03-29 01:00"), /* 03:00 CEST, right after the jump */
    utc("2026-03-30 00:30"), /* 02:30 CEST */
  };
  const time_t quarter[] = {
    utc("2026-03-29 00:45"), /* 01:45 CET */
    utc("2026-03-29 01:00"), /* 03:00 CEST */
    utc("2026-03-29 01:15"), /* 03:15 CEST */
  };

  (void)state;
  use_zone("Europe/Paris");
  expect_times("30 2 * * *", utc("2026-03-29 00:00"), daily_0230, 2);
  /* Several skipped times still run once. */
  expect_next("0,30 2 * * *", utc("2026-03-29 00:00"),
              utc("2026-03-29 01:00"));
  expect_next("0,30 2 * * *", utc("2026-03-29 01:00"),
              utc("2026-03-30 00:00"));
  /* A skipped time and the first real one coincide: once. */
  expect_next("0 2,3 * * *", utc("2026-03-29 01:00"),
              utc("2026-03-30 00:00"));
  /* Untouched fixed times, before and after the jump. */
  expect_next("30 1 * * *", utc("2026-03-29 00:00"),
              utc("2026-03-29 00:30"));
  expect_next("30 3 * * *", utc("2026-03-29 00:00"),
              utc("2026-03-29 01:30"));
  /* Wildcard jobs miss the skipped minutes. */
  expect_times("*/15 * * * *", utc("2026-03-29 00:30"), quarter, 3);
  expect_next("0 * * * *", utc("2026-03-29 00:00"), utc("2026-03-29 01:00"));
  expect_next("*/20 2 * * *", utc("2026-03-29 00:00"),
              utc("2026-03-30 00:00"));
}

static void test_dst_paris_fall_back(void **state)
{
  /* 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET, so 02:00-02:59
     happens at 00:00-00:59 UTC and again at 01:00-01:59 UTC. */
  const time_t hourly[] = {
    utc("2026-10-25 00:00"), /* 02:00 CEST */
    utc("2026-10-25 01:00"), /* 02:00 CET */
    utc("2026-10-25 02:00"), /* 03:00 CET */
  };
  const time_t daily_0230[] = {
    utc("2026-10-25 00:30"), /* 02:30 CEST, first pass only */
    utc("2026-10-26 01:30"), /* 02:30 CET */
  };
  const time_t twenty_past_two[] = {
    utc("2026-10-25 00:40"), /* 02:40 CEST */
    utc("2026-10-25 01:00"), /* 02:00 CET */
    utc("2026-10-25 01:20"), /* 02:20 CET */
  };

  (void)state;
  use_zone("Europe/Paris");
  expect_times("0 * * * *", utc("2026-10-24 23:00"), hourly, 3);
  expect_times("30 2 * * *", utc("2026-10-24 23:00"), daily_0230, 2);
  /* Asked during the second pass: the first pass already ran it. */
  expect_next("30 2 * * *", utc("2026-10-25 01:10"),
              utc("2026-10-26 01:30"));
  expect_next("0 2 * * *", utc("2026-10-25 00:00"),
              utc("2026-10-26 01:00"));
  expect_next("0 3 * * *", utc("2026-10-25 00:00"),
              utc("2026-10-25 02:00"));
  /* Wildcard minutes in a fixed hour follow the real clock. */
  expect_times("*/20 2 * * *", utc("2026-10-25 00:30"), twenty_past_two, 3);
  expect_next("*/15 * * * *", utc("2026-10-25 00:50"),
              utc("2026-10-25 01:00"));
  /* The next 02:00 by the calendar, 2027-10-25, is also CEST: the second
     pass of tonight must not be jumped over. */
  expect_next("*/30 2 25 10 *", utc("2026-10-25 00:40"),
              utc("2026-10-25 01:00"));
}

static void test_dst_new_york(void **state)
{
  /* 2026-03-08 07:00 UTC: 02:00 EST becomes 03:00 EDT.
     2026-11-01 06:00 UTC: 02:00 EDT becomes 01:00 EST. */
  const time_t half_hours[] = {
    utc("2026-11-01 05:30"), /* 01:30 EDT */
    utc("2026-11-01 06:00"), /* 01:00 EST */
    utc("2026-11-01 06:30"), /* 01:30 EST */
    utc("2026-11-01 07:00"), /* 02:00 EST */
  };

  (void)state;
  use_zone("America/New_York");
  expect_next("30 2 * * *", utc("2026-03-08 06:00"),
              utc("2026-03-08 07:00"));
  expect_next("30 2 * * *", utc("2026-03-08 07:00"),
              utc("2026-03-09 06:30"));
  expect_next("30 1 * * *", utc("2026-11-01 04:00"),
              utc("2026-11-01 05:30"));
  expect_next("30 1 * * *", utc("2026-11-01 05:30"),
              utc("2026-11-02 06:30"));
  expect_times("*/30 * * * *", utc("2026-11-01 05:00"), half_hours, 4);
}

/* ---- against a minute-by-minute oracle -------------------------------- */

/* Local wall-clock time at t, as seconds of a zone-less calendar. */
static int64_t civil_of(time_t t)
{
  struct tm tm;

  assert_non_null(localtime_r(&t, &tm));
  return (int64_t)timegm(&tm);
}

/* Whether c matches wall-clock time `civil`, straight from the fields. */
static bool civil_matches(const cron_t *c, int64_t civil)
{
  time_t x = (time_t)civil;
  struct tm tm;
  bool dom, dow, day;

  assert_non_null(gmtime_r(&x, &tm));
  dom = c->dom >> tm.tm_mday & 1;
  dow = c->dow >> tm.tm_wday & 1;
  day = c->dom_star || c->dow_star ? dom && dow : dom || dow;
  return (c->minute >> tm.tm_min & 1) && (c->hour >> tm.tm_hour & 1)
         && (c->month >> (tm.tm_mon + 1) & 1) && day;
}

/* cron.h's rules, read minute by minute: whether c fires at the instant
   whose wall-clock time is w, the previous minute's being prev, when every
   wall-clock time up to max_seen has already been lived. */
static bool oracle_fires(const cron_t *c, int64_t w, int64_t prev,
                         int64_t max_seen)
{
  bool fixed = !c->minute_star && !c->hour_star;
  int64_t s;

  if (civil_matches(c, w) && (!fixed || w > max_seen))
    return true;
  for (s = prev + 60; fixed && s < w; s += 60)
    if (civil_matches(c, s))
      return true;
  return false;
}

/* Walks every minute of `days` days from `from` (UTC) in zone, checking
   that each expression's chain of cron_next gives exactly the oracle's
   firings. */
static void check_window(const char *zone, const char *from, int days)
{
  static const char *const exprs[] = {
    "30 2 * * *", "0,30 2 * * *", "0 2,3 * * *", "15 1 * * *",
    "0-59/7 0-3 * * *", "*/15 * * * *", "0 * * * *", "*/20 2 * * *",
    "* 2 * * *", "45 21 * * 1-5", "0 0 1,15 * 1", "0 12 */3 * 1",
    "30 4 1-7 * 0", "0 0 13 * fri", "5 4 * jan,mar,oct,nov sun",
  };
  enum { N = sizeof exprs / sizeof exprs[0] };
  cron_t c[N];
  time_t prev[N], t, t0, t1, got;
  int64_t w, wprev, max_seen;
  size_t i, fired = 0;

  use_zone(zone);
  t0 = utc(from);
  t1 = t0 + (time_t)days * 86400;
  for (i = 0; i < N; i++) {
    c[i] = parse_ok(exprs[i]);
    prev[i] = t0;
  }
  wprev = max_seen = civil_of(t0);
  for (t = t0 + 60; t <= t1; t += 60) {
    w = civil_of(t);
    for (i = 0; i < N; i++) {
      if (!oracle_fires(&c[i], w, wprev, max_seen))
        continue;
      assert_int_equal(cron_next(&c[i], prev[i], &got), 0);
      if (got != t)
        print_error("%s, \"%s\" after %lld: got %lld, want %lld\n", zone,
                    exprs[i], (long long)prev[i], (long long)got,
                    (long long)t);
      assert_int_equal(got, t);
      prev[i] = t;
      fired++;
    }
    max_seen = w > max_seen ? w : max_seen;
    wprev = w;
  }
  for (i = 0; i < N; i++) {
    assert_int_equal(cron_next(&c[i], prev[i], &got), 0);
    assert_true(got > t1);
  }
  assert_true(fired > 0);
}

static void test_oracle_plain_months(void **state)
{
  (void)state;
  check_window("UTC", "2026-01-01 00:00", 59);
  check_window("Europe/Paris", "2026-01-01 00:00", 59);
  check_window("America/New_York", "2026-01-01 00:00", 59);
}

static void test_oracle_dst_days(void **state)
{
  (void)state;
  check_window("Europe/Paris", "2026-03-27 00:00", 4);
  check_window("Europe/Paris", "2026-10-23 00:00", 4);
  check_window("America/New_York", "2026-03-06 00:00", 4);
  check_window("America/New_York", "2026-10-30 00:00", 4);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_stars),
    cmocka_unit_test(test_parse_numbers_lists_ranges),
    cmocka_unit_test(test_parse_steps),
    cmocka_unit_test(test_parse_names),
    cmocka_unit_test(test_parse_sunday_seven),
    cmocka_unit_test(test_parse_macros),
    cmocka_unit_test(test_parse_reboot),
    cmocka_unit_test(test_parse_refusals),
    cmocka_unit_test(test_parse_err_buffer_edges),
    cmocka_unit_test(test_next_strictly_after),
    cmocka_unit_test(test_next_month_ends),
    cmocka_unit_test(test_next_leap_day),
    cmocka_unit_test(test_next_dom_dow_rule),
    cmocka_unit_test(test_next_macros),
    cmocka_unit_test(test_next_steps),
    cmocka_unit_test(test_next_sunday_seven),
    cmocka_unit_test(test_next_weekdays_in_paris),
    cmocka_unit_test(test_next_none),
    cmocka_unit_test(test_next_out_of_range),
    cmocka_unit_test(test_dst_paris_spring_forward),
    cmocka_unit_test(test_dst_paris_fall_back),
    cmocka_unit_test(test_dst_new_york),
    cmocka_unit_test(test_oracle_plain_months),
    cmocka_unit_test(test_oracle_dst_days),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
