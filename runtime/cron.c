/*
 * cron.c - cron expression parser and next-run computation.
 *
 * Parsing fills one bitset per field.  The search for the next run works on
 * two clocks: "civil" seconds (local wall-clock time counted as if the zone
 * never changed offset, so plain calendar arithmetic applies) and real
 * instants.  Between two changes of the zone's UTC offset, civil = instant +
 * offset, so the search finds the next matching civil minute by stepping
 * whole months, days, hours and minutes, then checks that no offset change
 * lies before it; when one does, the DST rules of cron.h are applied at the
 * change and the search resumes from there.
 */
#include "cron.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DAY 86400

/* One of the five fields: its name for messages, the values it accepts,
   the last value an open range (`*`, `N/S`) reaches, its names, if any,
   for values name_base, name_base + 1, ..., and whether its largest value
   is an alias of 0 (day-of-week 7, Sunday). */
typedef struct field {
  const char *name;
  int min, max, open_max;
  const char *const *names;
  int nnames, name_base;
  bool max_is_zero;
} field_t;

static const char *const month_names[] = {
  "jan", "feb", "mar", "apr", "may", "jun",
  "jul", "aug", "sep", "oct", "nov", "dec"
};
static const char *const day_names[] = {
  "sun", "mon", "tue", "wed", "thu", "fri", "sat"
};

static const field_t fields[5] = {
  { "minute", 0, 59, 59, NULL, 0, 0, false },
  { "hour", 0, 23, 23, NULL, 0, 0, false },
  { "day-of-month", 1, 31, 31, NULL, 0, 0, false },
  { "month", 1, 12, 12, month_names, 12, 1, false },
  { "day-of-week", 0, 7, 6, day_names, 7, 0, true },
};

static const struct { const char *name, *expansion; } macros[] = {
  { "@yearly", "0 0 1 1 *" },
  { "@annually", "0 0 1 1 *" },
  { "@monthly", "0 0 1 * *" },
  { "@weekly", "0 0 * * 0" },
  { "@daily", "0 0 * * *" },
  { "@midnight", "0 0 * * *" },
  { "@hourly", "0 * * * *" },
};

/* ---- parsing ---------------------------------------------------------- */

/* Formats a message into err (when there is room) and returns CRON_EPARSE,
   so that every refusal is one `return fail(...)`. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
  va_list ap;

  if (errlen > 0) {
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return CRON_EPARSE;
}

/* Like fail, with the "<field> field: " prefix every field message has. */
static int field_fail(const field_t *f, char *err, size_t errlen,
                      const char *fmt, ...)
{
  va_list ap;
  int n;

  if (errlen == 0)
    return CRON_EPARSE;
  n = snprintf(err, errlen, "%s field: ", f->name);
  if (n >= 0 && (size_t)n < errlen) {
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return CRON_EPARSE;
}

/* Refuses the character at p inside item [s, e): either the item stops
   where a value was due, or p holds something no grammar rule allows. */
static int unexpected(const field_t *f, const char *s, const char *e,
                      const char *p, char *err, size_t errlen)
{
  if (p == e)
    return field_fail(f, err, errlen, "\"%.*s\" is incomplete",
                      (int)(e - s), s);
  return field_fail(f, err, errlen, "unexpected character '%c' in \"%.*s\"",
                    *p, (int)(e - s), s);
}

/* Reads the digits at *p (before end) into *out, saturating far above any
   field's range so that huge numbers are refused as out of range rather
   than overflowing.  Returns how many digits were read. */
static size_t read_digits(const char **p, const char *end, int *out)
{
  const char *s = *p;
  int v = 0;

  while (*p < end && isdigit((unsigned char)**p)) {
    if (v < 100000)
      v = v * 10 + (**p - '0');
    (*p)++;
  }
  *out = v;
  return (size_t)(*p - s);
}

/* Looks up the name [s, s + len) among f's names, case-insensitively.
   Returns its value, or -1. */
static int lookup_name(const field_t *f, const char *s, size_t len)
{
  int i;

  for (i = 0; i < f->nnames; i++)
    if (strlen(f->names[i]) == len && strncasecmp(f->names[i], s, len) == 0)
      return f->name_base + i;
  return -1;
}

/* Reads one value (a number, or a name where f has names) at *p inside
   item [s, e), advancing *p past it, and checks it against f's range. */
static int parse_value(const field_t *f, const char *s, const char *e,
                       const char **p, int *out, char *err, size_t errlen)
{
  const char *v = *p;

  if (read_digits(p, e, out) > 0) {
    if (*out < f->min || *out > f->max)
      return field_fail(f, err, errlen, "%.*s is out of range %d-%d",
                        (int)(*p - v), v, f->min, f->max);
    return 0;
  }
  while (*p < e && isalpha((unsigned char)**p))
    (*p)++;
  if (*p == v)
    return unexpected(f, s, e, *p, err, errlen);
  if (f->nnames == 0)
    return field_fail(f, err, errlen, "expected a number, got \"%.*s\"",
                      (int)(*p - v), v);
  *out = lookup_name(f, v, (size_t)(*p - v));
  if (*out < 0)
    return field_fail(f, err, errlen, "unknown name \"%.*s\"",
                      (int)(*p - v), v);
  return 0;
}

/* Reads the step after a `/` at *p inside item [s, e): digits only, from 1
   to the field's largest value. */
static int parse_step(const field_t *f, const char *s, const char *e,
                      const char **p, int *out, char *err, size_t errlen)
{
  const char *v = *p;

  if (read_digits(p, e, out) == 0)
    return unexpected(f, s, e, *p, err, errlen);
  if (*out == 0)
    return field_fail(f, err, errlen, "step 0 is not allowed");
  if (*out > f->max)
    return field_fail(f, err, errlen, "step %.*s is out of range 1-%d",
                      (int)(*p - v), v, f->max);
  return 0;
}

/* Parses one list item [s, e) (`*`, `N`, `A-B`, each with an optional
   `/S`) and adds its values to *bits. */
static int parse_item(const field_t *f, const char *s, const char *e,
                      uint64_t *bits, char *err, size_t errlen)
{
  const char *p = s;
  int lo, hi, step = 1, v, rc;
  int single = 0;

  if (p == e)
    return field_fail(f, err, errlen, "empty list item");
  if (*p == '*') {
    lo = f->min;
    hi = f->open_max;
    p++;
  } else {
    if ((rc = parse_value(f, s, e, &p, &lo, err, errlen)) != 0)
      return rc;
    hi = lo;
    single = 1;
    if (p < e && *p == '-') {
      p++;
      if ((rc = parse_value(f, s, e, &p, &hi, err, errlen)) != 0)
        return rc;
      if (hi < lo)
        return field_fail(f, err, errlen, "range \"%.*s\" is reversed",
                          (int)(p - s), s);
      single = 0;
    }
  }
  if (p < e && *p == '/') {
    p++;
    if ((rc = parse_step(f, s, e, &p, &step, err, errlen)) != 0)
      return rc;
    if (single)
      hi = f->open_max > lo ? f->open_max : lo;
  }
  if (p != e)
    return unexpected(f, s, e, p, err, errlen);
  for (v = lo; v <= hi; v += step)
    *bits |= (uint64_t)1 << (v == f->max && f->max_is_zero ? 0 : v);
  return 0;
}

/* Parses the comma list [s, s + len) of field f into *bits. */
static int parse_field(const field_t *f, const char *s, size_t len,
                       uint64_t *bits, char *err, size_t errlen)
{
  const char *end = s + len, *item = s, *comma;
  int rc;

  *bits = 0;
  for (;;) {
    comma = memchr(item, ',', (size_t)(end - item));
    if ((rc = parse_item(f, item, comma ? comma : end, bits, err, errlen)))
      return rc;
    if (comma == NULL)
      return 0;
    item = comma + 1;
  }
}

/* Splits s at whitespace, storing the first max words in start/len.
   Returns the number of words, which may exceed max. */
static size_t split_words(const char *s, const char **start, size_t *len,
                          size_t max)
{
  size_t n = 0;
  const char *w;

  for (;;) {
    while (isspace((unsigned char)*s))
      s++;
    if (*s == '\0')
      return n;
    w = s;
    while (*s != '\0' && !isspace((unsigned char)*s))
      s++;
    if (n < max) {
      start[n] = w;
      len[n] = (size_t)(s - w);
    }
    n++;
  }
}

/* Parses a macro word [s, s + len) that made up the whole expression of
   nwords words. */
static int parse_macro(cron_t *c, const char *s, size_t len, size_t nwords,
                       char *err, size_t errlen)
{
  size_t i;

  if (nwords != 1)
    return fail(err, errlen, "macro \"%.*s\" must be the whole expression",
                (int)len, s);
  if (len == 7 && strncasecmp(s, "@reboot", len) == 0) {
    c->reboot = true;
    return 0;
  }
  for (i = 0; i < sizeof macros / sizeof macros[0]; i++)
    if (strlen(macros[i].name) == len
        && strncasecmp(macros[i].name, s, len) == 0)
      return cron_parse(c, macros[i].expansion, err, errlen);
  return fail(err, errlen, "unknown macro \"%.*s\"", (int)len, s);
}

/* Parses five fields and stores them, with Vixie cron's star flags: a
   field counts as `*` when its text starts with `*`. */
static int parse_fields(cron_t *c, const char *const *start,
                        const size_t *len, char *err, size_t errlen)
{
  uint64_t bits[5];
  int i, rc;

  for (i = 0; i < 5; i++)
    if ((rc = parse_field(&fields[i], start[i], len[i], &bits[i], err,
                          errlen)) != 0)
      return rc;
  c->minute = bits[0];
  c->hour = (uint32_t)bits[1];
  c->dom = (uint32_t)bits[2];
  c->month = (uint16_t)bits[3];
  c->dow = (uint8_t)bits[4];
  c->minute_star = start[0][0] == '*';
  c->hour_star = start[1][0] == '*';
  c->dom_star = start[2][0] == '*';
  c->dow_star = start[4][0] == '*';
  return 0;
}

/* See cron.h.  The words are located first so that a wrong count is
   reported as such rather than as a fault inside some field. */
int cron_parse(cron_t *c, const char *expr, char *err, size_t errlen)
{
  const char *start[5];
  size_t len[5], n;
  int rc;

  memset(c, 0, sizeof *c);
  if (errlen > 0)
    err[0] = '\0';
  n = split_words(expr ? expr : "", start, len, 5);
  if (n == 0)
    rc = fail(err, errlen, "empty cron expression");
  else if (start[0][0] == '@')
    rc = parse_macro(c, start[0], len[0], n, err, errlen);
  else if (n != 5)
    rc = fail(err, errlen, "expected 5 fields, got %zu", n);
  else
    rc = parse_fields(c, start, len, err, errlen);
  if (rc != 0)
    memset(c, 0, sizeof *c);
  return rc;
}

int cron_is_reboot(const cron_t *c)
{
  return c->reboot ? 1 : 0;
}

/* ---- calendar arithmetic (no time zone) ------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
  return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
   days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
  int64_t era, yoe, doy;

  y -= m <= 2;
  era = floor_div(y, 400);
  yoe = y - era * 400;
  doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  return era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
  int64_t era, doe, yoe, doy, mp;

  z += 719468;
  era = floor_div(z, 146097);
  doe = z - era * 146097;
  yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

/* The smallest i in [from, last] whose bit is set in set, or -1. */
static int next_bit(uint64_t set, int from, int last)
{
  for (; from <= last; from++)
    if (set >> from & 1)
      return from;
  return -1;
}

/* Whether day `days` (since 1970-01-01, day of month mday) matches, under
   Vixie cron's rule: both day fields must match when either is `*`, else
   either may. */
static bool day_matches(const cron_t *c, int64_t days, int mday)
{
  int wday = (int)(days + 4 - floor_div(days + 4, 7) * 7); /* 0 Sunday */
  bool dom = c->dom >> mday & 1, dow = c->dow >> wday & 1;

  if (c->dom_star || c->dow_star)
    return dom && dow;
  return dom || dow;
}

/* Finds in *out the first civil minute at or after civil second `from`
   that c matches, stepping by whole months, days and hours past values
   that cannot match.  Returns 0, or CRON_ENONEXT when none is below
   limit. */
static int civil_next(const cron_t *c, int64_t from, int64_t limit,
                      int64_t *out)
{
  int64_t day = floor_div(from, DAY), y;
  int minute = (int)((from - day * DAY + 59) / 60);
  int hour = minute / 60, mon, mday, h, m;

  minute %= 60;
  while (day * DAY < limit) {
    civil_from_days(day, &y, &mon, &mday);
    if (hour > 23 || !(c->month >> mon & 1) || !day_matches(c, day, mday)) {
      day = c->month >> mon & 1 ? day + 1
            : days_from_civil(y + mon / 12, mon % 12 + 1, 1);
      hour = minute = 0;
      continue;
    }
    if ((h = next_bit(c->hour, hour, 23)) != hour) {
      hour = h < 0 ? 24 : h;
      minute = 0;
      continue;
    }
    if ((m = next_bit(c->minute, minute, 59)) < 0) {
      hour++;
      minute = 0;
      continue;
    }
    *out = day * DAY + hour * 3600 + m * 60;
    return *out < limit ? 0 : CRON_ENONEXT;
  }
  return CRON_ENONEXT;
}

/* ---- the zone --------------------------------------------------------- */

/* Whether instant t fits time_t and localtime_r can convert it. */
static bool zone_covers(int64_t t)
{
  time_t tt = (time_t)t;
  struct tm tm;

  return (int64_t)tt == t && localtime_r(&tt, &tm) != NULL;
}

/* The zone's UTC offset at instant t, in seconds (civil = t + offset).
   Computed from localtime_r's fields rather than tm_gmtoff or tm_isdst so
   that any offset change counts, DST or not.  cron_next checks with
   zone_covers that every t it asks about converts. */
static int64_t zone_offset(int64_t t)
{
  time_t tt = (time_t)t;
  struct tm tm;

  if (localtime_r(&tt, &tm) == NULL)
    return 0;
  return days_from_civil(tm.tm_year + 1900LL, tm.tm_mon + 1, tm.tm_mday)
         * DAY + tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec - t;
}

/* Given offsets that differ at instants lo < hi, at most one change apart,
   returns the first instant in (lo, hi] with the offset of hi. */
static int64_t bisect_change(int64_t lo, int64_t hi)
{
  int64_t off = zone_offset(lo), mid;

  while (hi - lo > 1) {
    mid = lo + (hi - lo) / 2;
    if (zone_offset(mid) == off)
      lo = mid;
    else
      hi = mid;
  }
  return hi;
}

/* Finds in *change the first instant in (t, x] where the offset stops
   being off, the offset at t, probing one day at a time (the zone changes
   at most once a day).  Returns whether there is one. */
static bool first_change(int64_t t, int64_t x, int64_t off, int64_t *change)
{
  int64_t hi;

  while (t < x) {
    hi = x - t > DAY ? t + DAY : x;
    if (zone_offset(hi) != off) {
      *change = bisect_change(t, hi);
      return true;
    }
    t = hi;
  }
  return false;
}

/* The civil second before which wall-clock minutes have already been seen
   at instant t: the end of a fall-back's repeated stretch when t lies
   inside its second pass (or just after it), else INT64_MIN. */
static int64_t seen_until(int64_t t)
{
  int64_t before = zone_offset(t - DAY);

  if (before <= zone_offset(t))
    return INT64_MIN;
  return bisect_change(t - DAY, t) + before;
}

/* See cron.h.  Each turn of the loop finds the next matching civil minute
   w as if the offset at t held, and x, the instant that makes it; then
   either x is the answer, or an offset change before x is handled and the
   search resumes at the change.  Fixed-time jobs skip minutes below
   `seen`, already lived through before a fall-back. */
int cron_next(const cron_t *c, time_t after, time_t *next)
{
  int64_t horizon = (int64_t)CRON_HORIZON_DAYS * DAY;
  int64_t t, end, off, off2, w, x, change, seen;
  bool fixed = !c->minute_star && !c->hour_star;
  int rc;

  if (c->reboot)
    return CRON_EREBOOT;
  if ((int64_t)after < INT64_MIN + 2 * DAY
      || (int64_t)after > INT64_MAX - horizon - 2 * DAY)
    return CRON_ERANGE;
  tzset();
  t = (int64_t)after + 1;
  end = t + horizon;
  if (!zone_covers(t - DAY) || !zone_covers(end + DAY))
    return CRON_ERANGE;
  seen = fixed ? seen_until(t) : INT64_MIN;
  while (t < end) {
    off = zone_offset(t);
    if ((rc = civil_next(c, t + off, end + off, &w)) != 0)
      return rc;
    x = w - off;
    if (!first_change(t, x, off, &change)) {
      if (w < seen) {
        t = x + 1;
        continue;
      }
      *next = (time_t)x;
      return 0;
    }
    off2 = zone_offset(change);
    if (off2 > off && fixed && w < change + off2) {
      /* w was skipped by the jump: run at the first whole minute after. */
      *next = (time_t)(change + floor_div(change + off2 + 59, 60) * 60
                       - (change + off2));
      return 0;
    }
    if (off2 < off && fixed)
      seen = change + off;
    t = change;
  }
  return CRON_ENONEXT;
}
