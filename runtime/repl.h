/*
 * repl: one console's evaluation, shared by both front ends (serve's own
 * prompt and `herald console` over the admin socket). A line is compiled
 * ("return " first, as lua.c does), run as a process of type 3 in the
 * console's own environment, and its results are printed readably. Input
 * that ends too early is kept until the statement is complete.
 */
#ifndef HERALD_REPL_H
#define HERALD_REPL_H

#include <lua.h>
#include <stddef.h>

typedef struct repl repl_t;

typedef struct repl_io {
  /* Text for the person at the console: print() output and results, one
   * chunk of lines without a trailing newline. */
  void (*print)(void *data, const char *text, size_t len);
  /* The same for the line's error: a syntax error, or a runtime error's
   * message and traceback (a pipe sends it to stderr). */
  void (*error)(void *data, const char *text, size_t len);
  /* The line is done; more is 1 when the statement needs more lines, ok
   * is 0 when it raised an error. */
  void (*done)(void *data, int more, int ok);
  void *data;
  /* Its lines' process name, which the audit log reads its actor from
   * ("console:OSUSER"); NULL: "console". */
  const char *name;
} repl_io_t;

repl_t *repl_new(lua_State *L, const repl_io_t *io);
/* Ends a running line, forgets the console's state, frees it. */
void repl_free(repl_t *r);
/* Evaluates one line of input; io.done follows, now or later. */
void repl_eval(repl_t *r, const char *line);
/* 1 while a line runs. */
int repl_busy(const repl_t *r);
/* Ctrl-C: ends the running line (its io.done follows), or forgets the
 * unfinished statement. Returns 1 if a line was running. */
int repl_interrupt(repl_t *r);
/* Completions of text, the word before the cursor, each text followed by
 * what Tab may add (console.lua's complete), as a NULL-terminated array of
 * malloc'ed strings (the caller frees each and the array), or NULL. */
char **repl_complete(repl_t *r, const char *text);

#endif
