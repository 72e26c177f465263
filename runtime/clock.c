#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t read_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t clock_mono_ns(void) { return read_ns(CLOCK_MONOTONIC); }

int64_t clock_mono_ms(void) { return read_ns(CLOCK_MONOTONIC) / 1000000; }

int64_t clock_wall_ms(void) { return read_ns(CLOCK_REALTIME) / 1000000; }

int64_t clock_cpu_ns(void) { return read_ns(CLOCK_PROCESS_CPUTIME_ID); }

size_t clock_format_iso8601(int64_t ms, char *out, size_t len) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  size_t n;

  gmtime_r(&secs, &tm);
  n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(out + n, len - n, ".%03dZ", (int)(ms % 1000));
  return n;
}

int64_t clock_utc_seconds(int year, int month, int day, int hour, int min,
                          int sec) {
  struct tm tm;
  memset(&tm, 0, sizeof(tm));
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  return (int64_t)timegm(&tm);
}
