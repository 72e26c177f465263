#include "prompt.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "console.h"
#include "log.h"
#include "repl.h"
#include "server.h"

static struct {
  server_t *srv;
  repl_t *repl;
  uv_poll_t poll;
  int stdin_flags;
  int active;
  int quit_asked; /* the last key was a quit refused for the sessions */
} pr;

static void on_stdin(uv_poll_t *h, int status, int events) {
  (void)h;
  (void)events;
  if (status == 0)
    console_input_ready();
}

static void want_input(void *ctx, int on) {
  (void)ctx;
  if (!pr.active)
    return;
  if (on)
    uv_poll_start(&pr.poll, UV_READABLE, on_stdin);
  else
    uv_poll_stop(&pr.poll);
}

static void eval(void *ctx, const char *line) {
  (void)ctx;
  pr.quit_asked = 0;
  repl_eval(pr.repl, line);
}

static void interrupt(void *ctx) {
  (void)ctx;
  pr.quit_asked = 0;
  if (repl_interrupt(pr.repl) == 0 && pr.active)
    console_output("(\\q or Ctrl-D stops the server)", 31);
}

static char **complete(void *ctx, const char *text) {
  (void)ctx;
  return repl_complete(pr.repl, text);
}

/* Sessions with a connection (a postponed one has none). */
static size_t connected_sessions(void) {
  session_table_t *t = server_sessions(pr.srv);
  session_t *const *all = session_all(t);
  size_t n = 0, count = session_count(t);
  for (size_t i = 0; i < count; i++)
    if (all[i]->conn != NULL && !all[i]->closing)
      n++;
  return n;
}

/*
 * Stopping the server drops everyone connected: as a shell with running
 * jobs, the first Ctrl-D or \q only says so, and a second one in a row
 * (no line, no Ctrl-C between) stops it.
 */
static int quit(void *ctx) {
  size_t n;
  (void)ctx;
  if (!pr.quit_asked && (n = connected_sessions()) > 0) {
    char text[160];
    int len = snprintf(text, sizeof(text),
                       "%zu %s connected; Ctrl-D again (or \\q) stops the "
                       "server and drops %s", n,
                       n == 1 ? "session is" : "sessions are",
                       n == 1 ? "it" : "them");
    pr.quit_asked = 1;
    console_output(text, (size_t)len);
    return 0;
  }
  log_info("console closed: stopping the server");
  server_shutdown(pr.srv);
  return 1;
}

static void repl_print(void *data, const char *text, size_t len) {
  (void)data;
  console_output(text, len);
}

static void repl_done(void *data, int more, int ok) {
  (void)data;
  (void)ok;
  console_done(more);
}

static void log_line(const char *line, void *data) {
  (void)data;
  console_output(line, strlen(line));
}

static void on_sigint(void *data) {
  (void)data;
  console_interrupt();
}

int prompt_start(server_t *srv) {
  static const repl_io_t io = {repl_print, repl_print, repl_done, NULL,
                               NULL};
  console_backend_t be = {eval, interrupt, complete, quit, want_input, NULL};

  pr.srv = srv;
  pr.repl = repl_new(server_lua(srv), &io);
  if (pr.repl == NULL)
    return -1;
  pr.stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
  if (uv_poll_init(server_loop(srv), &pr.poll, 0) != 0) {
    repl_free(pr.repl);
    pr.repl = NULL;
    return -1;
  }
  /* uv_poll_init makes stdin non-blocking; libedit reads one key at a time
   * when told the terminal is readable, and expects a blocking read. */
  fcntl(STDIN_FILENO, F_SETFL, pr.stdin_flags);
  pr.active = 1;
  pr.quit_asked = 0;
  log_set_writer(log_line, NULL);
  server_on_sigint(srv, on_sigint, NULL);
  console_open(&be, "herald");
  return 0;
}

void prompt_stop(void) {
  if (!pr.active)
    return;
  pr.active = 0;
  console_close();
  log_set_writer(NULL, NULL);
  server_on_sigint(pr.srv, NULL, NULL);
  uv_close((uv_handle_t *)&pr.poll, NULL);
  fcntl(STDIN_FILENO, F_SETFL, pr.stdin_flags); /* the terminal as it was */
  repl_free(pr.repl);
  pr.repl = NULL;
}
