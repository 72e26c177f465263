/*
 * console: the line-editing front end of both consoles (serve's own prompt
 * and `herald console`), on libedit's callback interface, so that the loop
 * that owns stdin never blocks on it. Line editing and history (kept in
 * ~/.herald_history), Ctrl-R search, Tab completion through the back end,
 * a continuation prompt for unfinished statements, and output (print,
 * results, the server's log lines) written above the line being typed.
 *
 * One console per process: libedit's state is global.
 */
#ifndef HERALD_CONSOLE_H
#define HERALD_CONSOLE_H

#include <stddef.h>

typedef struct console_backend {
  /* Evaluate a line; answer with console_output* and then console_done. */
  void (*eval)(void *ctx, const char *line);
  /* Ctrl-C while a line runs. */
  void (*interrupt)(void *ctx);
  /* Completions of text, the word before the cursor (cut at spaces,
   * operators and opening brackets only): a NULL-terminated array of
   * malloc'ed strings, each text followed by what Tab may add, or NULL.
   * Items that do not start with text are dropped. */
  char **(*complete)(void *ctx, const char *text);
  /* Ctrl-D or \q. Returns 1 when the console ends, 0 to stay: the back
   * end has printed why (console_output), and the prompt shows again. */
  int (*quit)(void *ctx);
  /* Whether stdin should be watched (0 while a line runs). */
  void (*want_input)(void *ctx, int on);
  void *ctx;
} console_backend_t;

/* Starts editing on the terminal: banner, history, first prompt. name
 * shows in the prompt ("herald> "). Returns 0 or -1. */
int console_open(const console_backend_t *be, const char *name);
/* stdin is readable: feed libedit one character. */
void console_input_ready(void);
/* Text for the person (without a trailing newline), above the prompt. */
void console_output(const char *text, size_t len);
/* The line is done: show the prompt again (the continuation prompt when
 * more is 1). */
void console_done(int more);
/* SIGINT: interrupt the running line, or abandon the line being typed. */
void console_interrupt(void);
/* Restores the terminal and saves the history. */
void console_close(void);

#endif
