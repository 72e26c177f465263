/*
 * alert: the framed box in which `herald client` shows a message from the
 * server. Pure text layout, no terminal I/O, so it can be unit-tested.
 */
#ifndef HERALD_ALERT_H
#define HERALD_ALERT_H

#include <stddef.h>

/* Widest box the client draws, in columns, whatever the terminal width. */
#define ALERT_MAX_WIDTH 76
/* Narrower widths are raised to this (two columns of text inside). */
#define ALERT_MIN_WIDTH 6

/*
 * Renders the alert box for `text` into out, like snprintf: writes at most
 * outlen - 1 bytes plus a terminating NUL (nothing when outlen is 0, so
 * out may then be NULL) and returns the length of the whole rendering, so
 * a caller can size a buffer with a first call. Returns -1 when memory
 * runs out or the rendering would not fit in an int.
 *
 * The box is `width` columns wide (clamped to ALERT_MIN_WIDTH..), every
 * line ends with "\n". The header holds "Message from the server" and
 * `time` (may be NULL or empty) right-aligned; below it, `text` (NULL means
 * empty) word-wrapped at spaces, its "\n" kept as line breaks, words
 * longer than a line cut between characters. Columns are counted as code
 * points. With utf8 non-zero the frame uses box-drawing characters and the
 * text stays UTF-8 (invalid bytes become U+FFFD); otherwise the frame is
 * +-| and every non-ASCII character becomes '?'. Control characters
 * (including ESC and C1) are replaced, so a message cannot drive the
 * terminal; a tab counts as one space.
 */
int alert_render(char *out, size_t outlen, const char *time,
                 const char *text, int width, int utf8);

#endif
