#include "prompt.h"

#include <fcntl.h>
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
  repl_eval(pr.repl, line);
}

static void interrupt(void *ctx) {
  (void)ctx;
  if (repl_interrupt(pr.repl) == 0 && pr.active)
    console_output("(\\q or Ctrl-D stops the server)", 31);
}

static char **complete(void *ctx, const char *text) {
  (void)ctx;
  return repl_complete(pr.repl, text);
}

static void quit(void *ctx) {
  (void)ctx;
  log_info("console closed: stopping the server");
  server_shutdown(pr.srv);
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
  static const repl_io_t io = {repl_print, repl_print, repl_done, NULL};
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
