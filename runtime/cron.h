/*
 * cron.h - cron expressions: parse one, and compute when it next fires.
 *
 * Used by the scheduler for API.md's `schedule = { { cron = "...", ... } }`.
 *
 * Syntax (Vixie cron's five fields, "minute hour day-of-month month
 * day-of-week", separated by spaces or tabs):
 *   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC,
 *   day-of-week 0-7 or SUN-SAT (0 and 7 are both Sunday).  Names are
 *   three letters, any case, and may end ranges ("mon-fri").
 *   Each field is a comma list of items; an item is `*`, `N` or `A-B`,
 *   optionally followed by a step `/S`: `*` with a step counts from the
 *   field's first value (every 15 minutes is star, slash, 15), `A-B/S`
 *   counts from A to B, `N/S` from N to the field's last value (6,
 *   Saturday, for day-of-week).  S is 1 up to the field's largest value.
 *   Ranges may not be reversed (`5-1`).  `*` alone in day-of-week is 0-6.
 *   Macros stand alone: @yearly and @annually ("0 0 1 1 *"), @monthly
 *   ("0 0 1 * *"), @weekly ("0 0 * * 0"), @daily and @midnight
 *   ("0 0 * * *"), @hourly ("0 * * * *"), and @reboot (run once at start,
 *   never by the clock).
 *
 * Day matching is Vixie cron's: a field "is `*`" when its text starts with
 * `*` (a stepped `*` counts); if day-of-month or day-of-week is `*`, a day must
 * match both fields, otherwise a day matching either one matches
 * ("0 0 1,15 * mon" fires on the 1st, the 15th and every Monday).
 *
 * Time is local wall-clock time of the process's zone (TZ), read through
 * localtime_r.  Around a change of the zone's UTC offset (DST or any other),
 * cron_next follows cronie/Vixie cron:
 *   - A job is "wildcard" when its minute or hour field starts with `*`
 *     ("0 * * * *", every 15 minutes), else "fixed-time" ("30 2 * * *").
 *   - Clock jumps forward (e.g. 02:00 -> 03:00): a fixed-time job matching
 *     any skipped wall-clock minute runs once, at the first valid minute
 *     after the jump (03:00), however many skipped minutes it matched.
 *     Wildcard jobs simply miss the skipped minutes.
 *   - Clock falls back (e.g. 03:00 -> 02:00, 02:00-02:59 happens twice): a
 *     fixed-time job runs only at the first occurrence; a wildcard job runs
 *     at every matching minute of both passes ("0 * * * *" fires at 02:00
 *     before and after the change, once each, following the real clock).
 * Assumed of the zone, since the search probes its offset once a day: no
 * two offset changes within 24 hours, and no change larger than a day.
 */
#ifndef HERALD_CRON_H
#define HERALD_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum {
  CRON_EPARSE = -1,   /* cron_parse: malformed expression, see err */
  CRON_ENONEXT = -2,  /* cron_next: no matching time within 8 years */
  CRON_EREBOOT = -3,  /* cron_next: @reboot has no time on the clock */
  CRON_ERANGE = -4    /* cron_next: time out of the range localtime_r maps */
};

/* How far ahead cron_next looks: 8 years covers 29 February across a
   century year that is not a leap year (2096 -> 2104). */
#define CRON_HORIZON_DAYS (8 * 366)

/* A parsed expression.  Bit N of a set means value N matches.  Plain data:
   copy it, embed it, compare it. */
typedef struct cron {
  uint64_t minute;   /* bits 0-59 */
  uint32_t hour;     /* bits 0-23 */
  uint32_t dom;      /* bits 1-31 */
  uint16_t month;    /* bits 1-12 */
  uint8_t dow;       /* bits 0-6, Sunday is 0 (7 is folded into 0) */
  bool minute_star;  /* field text started with `*` (wildcard job rule) */
  bool hour_star;
  bool dom_star;     /* field text started with `*` (day matching rule) */
  bool dow_star;
  bool reboot;       /* @reboot: every set is empty */
} cron_t;

/* Parses expr into *c.  Returns 0, or CRON_EPARSE with a lower-case message
   in err (e.g. "minute field: 61 is out of range 0-59", "expected 5 fields,
   got 4"); *c is zeroed on error.  err may be NULL when errlen is 0. */
int cron_parse(cron_t *c, const char *expr, char *err, size_t errlen);

/* True (1) when c is @reboot, which runs once at start and has no next
   time; else 0. */
int cron_is_reboot(const cron_t *c);

/* Stores in *next the first instant strictly after `after` at which c fires
   (second 0 of a local minute), following the rules at the top of this
   file in the current TZ (tzset is called).  Returns 0, CRON_ENONEXT when
   nothing matches within CRON_HORIZON_DAYS (e.g. "0 0 30 2 *"),
   CRON_EREBOOT for @reboot, or CRON_ERANGE when the search would leave the
   range of time_t or localtime_r.  *next is untouched on error.  Costs at
   most a few thousand steps of day/hour/minute arithmetic and one
   localtime_r per day searched. */
int cron_next(const cron_t *c, time_t after, time_t *next);

#endif
