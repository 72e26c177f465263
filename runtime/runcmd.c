#include "runcmd.h"

#include <errno.h>
#include <getopt.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "herald.h"
#include "jsonline.h"
#include "log.h"
#include "process.h"
#include "proto.h"
#include "sockpath.h"
#include "vm.h"

static const char usage[] =
    "usage: herald run [--socket PATH] FILE.lua [ARG...]\n"
    "       herald run --local FILE.lua [ARG...]\n"
    "\n"
    "Runs a Lua script on the running server as a process; its print\n"
    "output streams back here. The script sees its arguments as ... and\n"
    "arg[1..n]. --socket is the server's admin socket (default\n"
    "$HERALD_SOCKET, else $XDG_RUNTIME_DIR/herald.sock, else\n"
    "/tmp/herald-$UID/herald.sock); it is used only when its folder, the\n"
    "socket and the server on it are yours or root's, and the folder is not\n"
    "writable by others (unless sticky, as /tmp). --local runs the script\n"
    "here, with no server: send_message_to_remote_user, drop_remote_user\n"
    "and reject_new_remote_connections then do nothing.\n"
    "\n"
    "Exit status: 0 success, 1 the script failed (message and traceback on\n"
    "stderr), 2 usage error, server unreachable or its socket refused.\n";

/* Handles one frame from the server (a table on top of L, popped);
 * returns the script's exit status once it has ended, else -1. */
static int on_frame(lua_State *L) {
  const char *type;
  int status = -1;

  lua_getfield(L, -1, "type");
  lua_getfield(L, -2, "text");
  lua_getfield(L, -3, "status");
  lua_getfield(L, -4, "error");
  type = lua_tostring(L, -4);
  if (type != NULL && strcmp(type, "print") == 0) {
    printf("%s\n", lua_isstring(L, -3) ? lua_tostring(L, -3) : "");
    fflush(stdout);
  } else if (type != NULL && strcmp(type, "exit") == 0) {
    status = (int)lua_tointeger(L, -2);
    if (lua_isstring(L, -1))
      fprintf(stderr, "herald: run: %s\n", lua_tostring(L, -1));
  }
  lua_pop(L, 5);
  return status;
}

static int run_remote(const char *socket_path, int argc, char **argv) {
  jsonline_t *j;
  const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1
                                           : argv[0];
  lua_State *L;
  char err[1024];
  int status = -1, r;

  /* The script goes only to a server of the user's own (sockpath.h). */
  if (sockpath_check(socket_path, err, sizeof(err)) < 0) {
    fprintf(stderr, "herald: run: %s\n", err);
    return 2;
  }
  j = jsonline_connect_unix(socket_path);
  if (j == NULL) {
    fprintf(stderr, "herald: run: cannot reach the server at %s: %s\n",
            socket_path, strerror(errno));
    return 2;
  }
  if (sockpath_check_peer(jsonline_fd(j), socket_path, err,
                          sizeof(err)) < 0) {
    fprintf(stderr, "herald: run: %s\n", err);
    jsonline_close(j);
    return 2;
  }
  L = jsonline_lua(j);
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "run");
  lua_setfield(L, -2, "type");
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  if (vm_push_file(L, argv[0]) < 0) {
    fprintf(stderr, "herald: run: cannot open %s: %s\n", argv[0],
            strerror(errno));
    jsonline_close(j);
    return 2;
  }
  lua_setfield(L, -2, "source");
  if (argc > 1) {
    lua_createtable(L, argc - 1, 0);
    for (int i = 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    lua_setfield(L, -2, "args");
  }
  if (jsonline_send(j) < 0) {
    fprintf(stderr, "herald: run: cannot send the script: %s\n",
            strerror(errno));
    jsonline_close(j);
    return 2;
  }
  while (status < 0 && (r = jsonline_recv(j)) != 0) {
    if (r < 0) {
      fprintf(stderr, "herald: run: unreadable answer from the server\n");
      status = 1;
    } else {
      status = on_frame(L);
    }
  }
  if (status < 0) {
    fprintf(stderr, "herald: run: the server closed the connection before "
                    "the script ended\n");
    status = 1;
  }
  jsonline_close(j);
  return status;
}

static void on_local_print(process_t *p, const char *text, size_t len,
                           void *data) {
  (void)p;
  (void)data;
  fwrite(text, 1, len, stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

static void on_local_done(process_t *p, int status, lua_State *co, int nres,
                          const char *err, void *data) {
  int *exit_status = data;
  (void)p;
  (void)co;
  (void)nres;
  if (status != LUA_OK)
    fprintf(stderr, "herald: run: %s\n", err);
  *exit_status = status == LUA_OK ? 0 : 1;
}

/* The script in a runtime of its own: the natives without a server. */
static int run_local(int argc, char **argv) {
  uv_loop_t *loop = uv_default_loop();
  char err[256], chunkname[512];
  vm_t *vm = vm_new(0, err, sizeof(err));
  lua_State *L;
  process_opts_t opts;
  int status = 1, r;

  if (vm == NULL) {
    fprintf(stderr, "herald: run: %s\n", err);
    return 1;
  }
  L = vm_state(vm);
  proto_init(L);
  herald_open(L, NULL);
  process_init(loop, L);
  snprintf(chunkname, sizeof(chunkname), "@%s", argv[0]);
  r = vm_load_file(L, argv[0], chunkname);
  if (r != LUA_OK) {
    fprintf(stderr, "herald: run: %s\n", lua_tostring(L, -1));
    vm_free(vm);
    return r == LUA_ERRFILE ? 2 : 1;
  }
  lua_createtable(L, argc - 1, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");
  for (int i = 1; i < argc; i++)
    lua_pushstring(L, argv[i]);
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_EVAL;
  opts.name = argv[0];
  opts.on_print = on_local_print;
  opts.on_done = on_local_done;
  opts.data = &status;
  if (process_spawn(L, argc - 1, &opts) < 0)
    fprintf(stderr, "herald: run: cannot start the script\n");
  uv_run(loop, UV_RUN_DEFAULT);
  process_shutdown();
  uv_run(loop, UV_RUN_DEFAULT);
  vm_free(vm);
  uv_loop_close(loop);
  return status;
}

int runcmd_main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 's'},
      {"local", no_argument, NULL, 'l'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *socket_path = getenv("HERALD_SOCKET");
  char default_path[512];
  int ch, local = 0;

  opterr = 0;
  optind = 1;
  /* '+': options end at the script's name; the rest are its arguments. */
  while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
    switch (ch) {
    case 's': socket_path = optarg; break;
    case 'l': local = 1; break;
    case 'h': fputs(usage, stdout); return 0;
    default:
      fprintf(stderr, "herald: run: unknown or incomplete option '%s'\n"
                      "Try 'herald run --help'.\n", argv[optind - 1]);
      return 2;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "herald: run: no script given\n"
                    "Try 'herald run --help'.\n");
    return 2;
  }
  if (local)
    return run_local(argc - optind, argv + optind);
  if (socket_path == NULL || socket_path[0] == '\0') {
    config_default_admin_socket(default_path, sizeof(default_path));
    socket_path = default_path;
  }
  return run_remote(socket_path, argc - optind, argv + optind);
}
