/*
 * clock: the two clocks herald uses. Monotonic milliseconds for timeouts and
 * durations; wall-clock milliseconds for what users see (creationDateTime,
 * sentAt, log lines).
 */
#ifndef HERALD_CLOCK_H
#define HERALD_CLOCK_H

#include <stddef.h>
#include <stdint.h>

int64_t clock_mono_ms(void);
int64_t clock_mono_ns(void);
int64_t clock_wall_ms(void);
/* CPU time of the whole process, in nanoseconds. */
int64_t clock_cpu_ns(void);

/*
 * Writes ms (milliseconds since the epoch) as ISO 8601 UTC with milliseconds,
 * "2026-11-26T21:00:00.000Z", NUL-terminated; returns its length (24).
 * len must be at least 25.
 */
size_t clock_format_iso8601(int64_t ms, char *out, size_t len);
/* The seconds since the epoch of a UTC date and time (year, month 1-12,
 * day, hour, minute, second), fields as read, not checked. */
int64_t clock_utc_seconds(int year, int month, int day, int hour, int min,
                          int sec);

#endif
