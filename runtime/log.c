#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "utf8.h"

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

/*
 * Replaces, in place, each control character by one '?': C0 but the tab
 * and the newline (log_msg makes the lines of a message lines of the log),
 * DEL, and C1 (U+0080..U+009F, two bytes in UTF-8), which some terminals
 * obey as they would ESC and a letter (U+009B is CSI, ESC [). A byte that
 * belongs to no well-formed UTF-8 sequence becomes '?' too: a lone 0x9B is
 * CSI to a terminal in an 8-bit mode. Other characters stay as they are.
 */
static void defuse(char *text) {
  unsigned char *in = (unsigned char *)text, *out = in;

  while (*in != '\0') {
    size_t n = utf8_length(in);
    if (n == 0 ||
        (n == 1 && ((*in < 0x20 && *in != '\t' && *in != '\n') ||
                    *in == 0x7f)) ||
        (n == 2 && in[0] == 0xC2 && in[1] < 0xA0)) {
      *out++ = '?';
      in += n > 0 ? n : 1;
    } else {
      memmove(out, in, n);
      out += n;
      in += n;
    }
  }
  *out = '\0';
}

static void write_line(const char *line) {
  if (writer != NULL) {
    writer(line, writer_data);
  } else {
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
  }
}

/*
 * One log line per line of the message: a traceback stays readable. The
 * lines after the first have the same time and level, and two spaces more,
 * so that none can pass for a record of its own: a newline in a name a
 * remote user chose starts such a continuation line, never a new record.
 */
void log_msg(log_level_t level, const char *fmt, ...) {
  char msg[8192], line[8192 + 64];
  size_t n;
  const char *at, *nl;
  va_list ap;

  if (level < min_level)
    return;
  n = clock_format_iso8601(clock_wall_ms(), line, sizeof(line));
  n += (size_t)snprintf(line + n, sizeof(line) - n, " %s: ",
                        level_names[level]);
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  /* Names come from remote users: a control character in one must not
   * start a forged log line or drive the terminal. */
  defuse(msg);
  for (at = msg;; at = nl + 1) {
    size_t len;
    nl = strchr(at, '\n');
    len = nl != NULL ? (size_t)(nl - at) : strlen(at);
    if (at != msg && nl == NULL && len == 0)
      break; /* a message that ends with a newline: no empty last line */
    snprintf(line + n, sizeof(line) - n, "%s%.*s", at == msg ? "" : "  ",
             (int)len, at);
    write_line(line);
    if (nl == NULL)
      break;
  }
}
