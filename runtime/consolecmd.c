#include "consolecmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <lauxlib.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "console.h"
#include "jsonline.h"
#include "sockpath.h"

static const char usage[] =
    "usage: herald console [--socket PATH]\n"
    "\n"
    "Attaches a Lua console to the running server through its admin socket\n"
    "(default $HERALD_SOCKET, else $XDG_RUNTIME_DIR/herald.sock, else\n"
    "/tmp/herald-$UID/herald.sock); only the server's own user or root may.\n"
    "The socket is used only when its folder, the socket and the server on\n"
    "it are yours or root's, and the folder is not writable by others\n"
    "(unless sticky, as /tmp); else the exit status is 2.\n"
    "An expression prints its value; \\help lists the functions; Ctrl-C\n"
    "interrupts a running line; Ctrl-D or \\q leaves. From a pipe, each line\n"
    "read is evaluated, its output printed and its errors written to\n"
    "stderr; the exit status is then 1 if a line raised an error.\n";

static struct {
  jsonline_t *j;
  int want_input;
  int quit;
  int status;
  int failed; /* a line raised an error */
  int sigpipe[2]; /* SIGINT, turned into input for poll */
} cc;

/* Sends {"type":type, key:value} (key may be NULL). */
static void send_frame(const char *type, const char *key, const char *value) {
  lua_State *L = jsonline_lua(cc.j);
  lua_createtable(L, 0, 2);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "type");
  if (key != NULL) {
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
  }
  if (jsonline_send(cc.j) < 0) {
    fprintf(stderr, "herald: console: lost the server\n");
    cc.quit = 1;
    cc.status = 1;
  }
}

/* Writes a console's text: output, or a line's error. */
typedef void (*writer_fn)(const char *text, size_t len);

/*
 * Handles one frame (at the top of the stack, popped). print: output, or
 * with "error", a line's error (written by error); done: the line ended
 * (1 returned, *more set); exit: the server refused or ended the console.
 */
static int on_frame(writer_fn print, writer_fn error, int *more) {
  lua_State *L = jsonline_lua(cc.j);
  const char *type;
  int done = 0;

  lua_getfield(L, -1, "type");
  type = lua_tostring(L, -1);
  if (type != NULL && strcmp(type, "print") == 0) {
    size_t len;
    const char *text;
    int is_error;
    lua_getfield(L, -2, "error");
    is_error = lua_toboolean(L, -1);
    lua_getfield(L, -3, "text");
    text = lua_tolstring(L, -1, &len);
    if (text != NULL)
      (is_error ? error : print)(text, len);
    if (is_error)
      cc.failed = 1;
    lua_pop(L, 2);
  } else if (type != NULL && strcmp(type, "done") == 0) {
    lua_getfield(L, -2, "more");
    *more = lua_toboolean(L, -1);
    lua_getfield(L, -3, "ok");
    if (lua_isboolean(L, -1) && !lua_toboolean(L, -1))
      cc.failed = 1;
    lua_pop(L, 2);
    done = 1;
  } else if (type != NULL && strcmp(type, "exit") == 0) {
    lua_getfield(L, -2, "error");
    fprintf(stderr, "herald: console: %s\n",
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "ended by the server");
    lua_pop(L, 1);
    cc.quit = 1;
    cc.status = 1;
  }
  lua_pop(L, 2);
  return done;
}

/* Reads one frame; 0 at the end of the stream (the console is over). */
static int recv_frame(void) {
  int r = jsonline_recv(cc.j);
  if (r <= 0) {
    if (!cc.quit)
      fprintf(stderr, "herald: console: the server closed the connection\n");
    cc.quit = 1;
    cc.status = cc.status ? cc.status : 1;
  }
  return r > 0;
}

static void print_plain(const char *text, size_t len) {
  fwrite(text, 1, len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

static void print_error(const char *text, size_t len) {
  fwrite(text, 1, len, stderr);
  fputc('\n', stderr);
  fflush(stderr);
}

/* From a pipe: each line in turn, its answers printed plainly, its errors
 * on stderr; 1 when a line raised one, as a script's failure would. */
static int run_piped(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  int more = 0;

  while (!cc.quit && (n = getline(&line, &cap, stdin)) >= 0) {
    int done = 0;
    if (n > 0 && line[n - 1] == '\n')
      line[--n] = '\0';
    if (strcmp(line, "\\q") == 0)
      break;
    send_frame("eval", "line", line);
    while (!cc.quit && !done && recv_frame())
      done = on_frame(print_plain, print_error, &more);
  }
  free(line);
  if (more && !cc.quit) {
    fprintf(stderr, "herald: console: input ended inside a statement\n");
    cc.status = 1;
  }
  return cc.status != 0 ? cc.status : cc.failed;
}

/* The console front end's back end: frames to the server. */
static void be_eval(void *ctx, const char *line) {
  (void)ctx;
  send_frame("eval", "line", line);
}

static void be_interrupt(void *ctx) {
  (void)ctx;
  send_frame("interrupt", NULL, NULL);
}

static int be_quit(void *ctx) {
  (void)ctx;
  cc.quit = 1;
  return 1;
}

static void be_want_input(void *ctx, int on) {
  (void)ctx;
  cc.want_input = on;
}

/* Completion is a round trip: libedit asks synchronously. */
static char **be_complete(void *ctx, const char *text) {
  lua_State *L = jsonline_lua(cc.j);
  char **items = NULL;
  (void)ctx;
  send_frame("complete", "text", text);
  while (!cc.quit && recv_frame()) {
    const char *type;
    lua_getfield(L, -1, "type");
    type = lua_tostring(L, -1);
    if (type != NULL && strcmp(type, "completions") == 0) {
      lua_Integer n;
      lua_getfield(L, -2, "items");
      n = lua_istable(L, -1) ? (lua_Integer)lua_rawlen(L, -1) : 0;
      items = calloc((size_t)n + 1, sizeof(*items));
      for (lua_Integer i = 0; items != NULL && i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        items[i] = strdup(lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
        lua_pop(L, 1);
      }
      lua_pop(L, 3);
      break;
    }
    lua_pop(L, 1);
    on_frame(console_output, console_output, &(int){0});
  }
  return items;
}

static void on_sigint(int sig) {
  ssize_t r;
  (void)sig;
  r = write(cc.sigpipe[1], "i", 1);
  (void)r;
}

static int run_terminal(void) {
  console_backend_t be = {be_eval, be_interrupt, be_complete, be_quit,
                          be_want_input, NULL};
  struct sigaction sa;

  if (pipe2(cc.sigpipe, O_CLOEXEC | O_NONBLOCK) != 0)
    return 1;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, NULL);
  console_open(&be, "herald");
  while (!cc.quit) {
    struct pollfd fds[3] = {{jsonline_fd(cc.j), POLLIN, 0},
                            {cc.sigpipe[0], POLLIN, 0},
                            {cc.want_input ? STDIN_FILENO : -1, POLLIN, 0}};
    if (!jsonline_buffered(cc.j) && poll(fds, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[1].revents & POLLIN) {
      char drain[16];
      while (read(cc.sigpipe[0], drain, sizeof(drain)) > 0)
        ;
      console_interrupt();
    }
    if (jsonline_buffered(cc.j) || (fds[0].revents & (POLLIN | POLLHUP))) {
      int more = 0;
      if (recv_frame() && on_frame(console_output, console_output, &more))
        console_done(more);
    }
    if (!cc.quit && (fds[2].revents & (POLLIN | POLLHUP)))
      console_input_ready();
  }
  console_close();
  return cc.status;
}

int consolecmd_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 's'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *socket_path = getenv("HERALD_SOCKET");
  char default_path[512], err[1024];
  int ch, status;

  opterr = 0;
  optind = 1;
  while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
    switch (ch) {
    case 's': socket_path = optarg; break;
    case 'h': fputs(usage, stdout); return 0;
    default:
      fprintf(stderr, "herald: console: unknown or incomplete option '%s'\n"
                      "Try 'herald console --help'.\n", argv[optind - 1]);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "herald: console: unexpected argument '%s'\n"
                    "Try 'herald console --help'.\n", argv[optind]);
    return 2;
  }
  if (socket_path == NULL || socket_path[0] == '\0') {
    config_default_admin_socket(default_path, sizeof(default_path));
    socket_path = default_path;
  }
  /* Lines go only to a server of the user's own (sockpath.h). */
  if (sockpath_check(socket_path, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: console: %s\n", err);
    return 2;
  }
  cc.j = jsonline_connect_unix(socket_path);
  if (cc.j == NULL) {
    fprintf(stderr, "herald: console: cannot reach the server at %s: %s\n",
            socket_path, strerror(errno));
    return 2;
  }
  if (sockpath_check_peer(jsonline_fd(cc.j), socket_path, err,
                          sizeof(err)) < 0) {
    fprintf(stderr, "herald: console: %s\n", err);
    jsonline_close(cc.j);
    return 2;
  }
  status = isatty(STDIN_FILENO) ? run_terminal() : run_piped();
  jsonline_close(cc.j);
  return status;
}
