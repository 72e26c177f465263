/*
 * log: the server's log, one line per event on stderr:
 *   2026-11-26T21:00:00.123Z info: session 3C81... opened (Vanessa@laptop)
 * The interactive console installs a writer so that log lines are printed
 * above the line being typed instead of through it.
 */
#ifndef HERALD_LOG_H
#define HERALD_LOG_H

#include <stdarg.h>

typedef enum log_level {
  LOG_DEBUG = 0,
  LOG_INFO = 1,
  LOG_WARN = 2,
  LOG_ERROR = 3
} log_level_t;

/* Receives one finished line, without its newline. */
typedef void (*log_writer_fn)(const char *line, void *data);

/* Returns 0 and sets *out for "debug", "info", "warn" or "error"; else -1. */
int log_parse_level(const char *name, log_level_t *out);
void log_set_level(log_level_t level);
/* NULL restores the default writer (stderr). */
void log_set_writer(log_writer_fn fn, void *data);

void log_msg(log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
