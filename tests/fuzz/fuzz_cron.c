/*
 * fuzz_cron.c: libFuzzer target for the cron parser and the next-time
 * search (runtime/cron.c).
 *
 * Each input is an expression (up to its first NUL byte, as a C string
 * would end there). One that parses is followed from two fixed instants
 * in a fixed zone, Europe/Paris, each two hours before a change of its
 * UTC offset, so the DST rules of cron.h get exercised: three successive
 * times from each. Besides what ASan and UBSan catch, it aborts when the
 * search contradicts cron.h: a time not after the one asked from, not on
 * a whole minute, or on a minute the expression does not match (allowed
 * only for a fixed-time job run late after its minute was skipped by a
 * jump of the clock); or when a refused expression left a non-zero cron_t
 * or no message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"

/* 2026-03-29 00:00 and 2026-10-25 00:00 UTC: Paris jumps to summer time
 * at 01:00 UTC on the first and back at 01:00 UTC on the second. */
static const time_t starts[] = {1774742400, 1792886400};

static void fail(const char *what, const char *expr, time_t after) {
  fprintf(stderr, "fuzz_cron: %s for \"%s\" after %lld\n", what, expr,
          (long long)after);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  if (setenv("TZ", "Europe/Paris", 1) != 0) {
    perror("fuzz_cron: setenv");
    abort();
  }
  tzset();
  return 0;
}

static int bit(uint64_t set, int n) { return (int)((set >> n) & 1); }

/* Whether c matches the local minute tm, by the rules of cron.h. */
static int matches(const cron_t *c, const struct tm *tm) {
  int dom = bit(c->dom, tm->tm_mday), dow = bit(c->dow, tm->tm_wday);
  int day = c->dom_star || c->dow_star ? dom && dow : dom || dow;
  return day && bit(c->minute, tm->tm_min) && bit(c->hour, tm->tm_hour) &&
         bit(c->month, tm->tm_mon + 1);
}

static long offset_at(time_t t) {
  struct tm tm;
  return localtime_r(&t, &tm) != NULL ? tm.tm_gmtoff : 0;
}

/* Follows c from after for three times, checking each. */
static void follow(const cron_t *c, const char *expr, time_t after) {
  int fixed = !c->minute_star && !c->hour_star;
  struct tm tm;
  time_t next;

  for (int i = 0; i < 3; i++) {
    int rc = cron_next(c, after, &next);
    if (rc == CRON_ENONEXT || rc == CRON_ERANGE)
      return;
    if (rc != 0)
      fail("cron_next returned an undocumented code", expr, after);
    if (next <= after)
      fail("cron_next went back in time", expr, after);
    if (localtime_r(&next, &tm) == NULL)
      fail("cron_next returned an instant localtime_r refuses", expr, after);
    if (tm.tm_sec != 0)
      fail("cron_next returned an instant off the minute", expr, after);
    if (!matches(c, &tm) &&
        !(fixed && offset_at(next) != offset_at(next - 86400)))
      fail("cron_next returned a minute the expression does not match",
           expr, after);
    after = next;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *expr = malloc(size + 1), err[256] = "";
  cron_t c;
  time_t next;

  if (expr == NULL)
    return 0;
  memcpy(expr, data, size);
  expr[size] = '\0';
  if (cron_parse(&c, expr, err, sizeof(err)) != 0) {
    if (c.minute || c.hour || c.dom || c.month || c.dow || c.minute_star ||
        c.hour_star || c.dom_star || c.dow_star || c.reboot)
      fail("a refused expression left a non-zero cron_t", expr, 0);
    if (err[0] == '\0')
      fail("a refused expression has no message", expr, 0);
  } else if (cron_is_reboot(&c)) {
    if (cron_next(&c, starts[0], &next) != CRON_EREBOOT)
      fail("@reboot has a next time", expr, starts[0]);
  } else {
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++)
      follow(&c, expr, starts[i]);
  }
  free(expr);
  return 0;
}
