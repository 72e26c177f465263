#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static log_level_t min_level = LOG_INFO;
static log_writer_fn writer;
static void *writer_data;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *name, log_level_t *out) {
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, level_names[i]) == 0) {
      *out = (log_level_t)i;
      return 0;
    }
  }
  return -1;
}

void log_set_level(log_level_t level) { min_level = level; }

void log_set_writer(log_writer_fn fn, void *data) {
  writer = fn;
  writer_data = data;
}

void log_msg(log_level_t level, const char *fmt, ...) {
  char line[2048];
  size_t n;
  va_list ap;

  if (level < min_level)
    return;
  n = clock_format_iso8601(clock_wall_ms(), line, sizeof(line));
  n += (size_t)snprintf(line + n, sizeof(line) - n, " %s: ",
                        level_names[level]);
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof(line) - n, fmt, ap);
  va_end(ap);
  /* Names come from remote users: a control character in one must not
   * start a forged log line or drive the terminal. */
  for (char *p = line + n; *p != '\0'; p++)
    if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
      *p = '?';
  if (writer != NULL) {
    writer(line, writer_data);
  } else {
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
  }
}
