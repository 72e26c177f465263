#include "admin.h"

#include <errno.h>
#include <lauxlib.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "outbuf.h"
#include "process.h"
#include "proto.h"
#include "repl.h"
#include "server.h"
#include "vm.h"

/* Scripts sent by `herald run` may be large; console lines are not. */
#define ADMIN_MAX_LINE (16 * 1024 * 1024)

typedef struct admin_client {
  admin_t *admin; /* NULL once the admin socket has stopped */
  lua_State *L;
  conn_t *conn;
  int process;   /* the running script's number, or 0 */
  repl_t *repl;  /* a console's evaluation, made on its first line */
  char name[64]; /* "console:OSUSER", who connected (SO_PEERCRED) */
  struct admin_client *prev, *next;
} admin_client_t;

struct admin {
  server_t *srv;
  lua_State *L;
  uv_pipe_t listener;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  admin_client_t *clients;
};

static const conn_handler_t admin_handler;

/* Encodes the table at the top of the stack (popped) and sends it. */
static void send_table(admin_client_t *ac) {
  lua_State *L = ac->L;
  char err[256];
  if (proto_encode_value(L, -1, err, sizeof(err)) == 0) {
    size_t len;
    const char *json = lua_tolstring(L, -1, &len);
    outbuf_t *b = outbuf_new(len + 1);
    if (b != NULL) {
      memcpy(b->data, json, len);
      b->data[len] = '\n';
      conn_send(ac->conn, b);
      outbuf_unref(b);
    }
    lua_pop(L, 1);
  } else {
    log_error("admin: cannot encode a reply: %s", err);
  }
  lua_pop(L, 1);
}

static void send_exit(admin_client_t *ac, int status, const char *error) {
  lua_State *L = ac->L;
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "exit");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, status);
  lua_setfield(L, -2, "status");
  if (error != NULL) {
    lua_pushstring(L, error);
    lua_setfield(L, -2, "error");
  }
  send_table(ac);
}

/* {"type":"print","text":T}: output of a script or a console line; with
 * "error":true, a console line's error (herald console sends it to
 * stderr when piped). */
static void send_text(admin_client_t *ac, const char *text, size_t len,
                      int error) {
  lua_State *L = ac->L;
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "print");
  lua_setfield(L, -2, "type");
  lua_pushlstring(L, text, len);
  lua_setfield(L, -2, "text");
  if (error) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "error");
  }
  send_table(ac);
}

static void send_print(void *data, const char *text, size_t len) {
  send_text(data, text, len, 0);
}

static void send_error(void *data, const char *text, size_t len) {
  send_text(data, text, len, 1);
}

static void on_run_print(process_t *p, const char *text, size_t len,
                         void *data) {
  (void)p;
  send_print(data, text, len);
}

static void on_run_done(process_t *p, int status, lua_State *co, int nres,
                        const char *err, void *data) {
  admin_client_t *ac = data;
  (void)co;
  (void)nres;
  ac->process = 0;
  if (status == LUA_OK) {
    log_info("script %s ended", p->name);
    send_exit(ac, 0, NULL);
  } else {
    log_info("script %s failed: %s", p->name, err);
    send_exit(ac, 1, err);
  }
  conn_end(ac->conn);
}

/*
 * {"type":"run","name":N,"source":S,"args":[...]} at the top of the stack:
 * runs S as a process of type 3 in an environment of its own that reads
 * through to the globals (the full environment), with arg and ... set.
 */
static void run_script(admin_client_t *ac) {
  lua_State *L = ac->L;
  const char *name, *source;
  size_t len;
  char chunkname[256];
  lua_Integer nargs = 0;
  process_opts_t opts;

  lua_getfield(L, -1, "name");
  lua_getfield(L, -2, "source");
  lua_getfield(L, -3, "args");
  name = lua_isstring(L, -3) ? lua_tostring(L, -3) : "script";
  source = lua_tolstring(L, -2, &len);
  if (lua_type(L, -2) != LUA_TSTRING ||
      (!lua_isnil(L, -1) && !lua_istable(L, -1))) {
    lua_pop(L, 3);
    send_exit(ac, 2, "run: 'source' must be a string and 'args' an array");
    conn_end(ac->conn);
    return;
  }
  if (lua_istable(L, -1))
    nargs = (lua_Integer)lua_rawlen(L, -1);
  if (nargs > 1000 || !lua_checkstack(L, (int)nargs + 8)) {
    lua_pop(L, 3);
    send_exit(ac, 2, "run: too many arguments");
    conn_end(ac->conn);
    return;
  }
  snprintf(chunkname, sizeof(chunkname), "@%s", name);
  if (vm_load_source(L, source, len, chunkname) != LUA_OK) {
    log_info("script %s: %s", name, lua_tostring(L, -1));
    send_exit(ac, 1, lua_tostring(L, -1));
    lua_pop(L, 4);
    conn_end(ac->conn);
    return;
  }
  /* _ENV: globals of its own, reading through to the shared ones. */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_createtable(L, (int)nargs, 1); /* arg, as lua's own */
  lua_pushstring(L, name);
  lua_rawseti(L, -2, 0);
  for (lua_Integer i = 1; i <= nargs; i++) {
    lua_geti(L, -4, i);
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "arg");
  lua_setupvalue(L, -2, 1);
  for (lua_Integer i = 1; i <= nargs; i++)
    lua_geti(L, -2 - (int)(i - 1), i);
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_EVAL;
  opts.name = name;
  opts.on_print = on_run_print;
  opts.on_done = on_run_done;
  opts.data = ac;
  log_info("script %s started", name);
  ac->process = process_spawn(L, (int)nargs, &opts);
  if (ac->process < 0) {
    ac->process = 0;
    send_exit(ac, 1, "the server cannot start a process now");
    conn_end(ac->conn);
  }
  lua_pop(L, 3);
}

/* {"type":"done","more":B,"ok":B}: the line ended; ok is false when it
 * raised an error (a piped herald console then exits 1). */
static void console_done(void *data, int more, int ok) {
  admin_client_t *ac = data;
  lua_State *L = ac->L;
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "done");
  lua_setfield(L, -2, "type");
  lua_pushboolean(L, more);
  lua_setfield(L, -2, "more");
  lua_pushboolean(L, ok);
  lua_setfield(L, -2, "ok");
  send_table(ac);
}

/*
 * A console's frames, the decoded frame at the top of the stack:
 * {"type":"eval","line":L}, {"type":"complete","text":T} (answered with
 * {"type":"completions","items":[...]}) and {"type":"interrupt"}.
 */
static void console_frame(admin_client_t *ac, const char *type) {
  lua_State *L = ac->L;
  const char *text;

  if (ac->repl == NULL) {
    repl_io_t io = {send_print, send_error, console_done, ac, ac->name};
    ac->repl = repl_new(L, &io);
    if (ac->repl == NULL) {
      send_exit(ac, 1, "the server cannot open a console now");
      conn_end(ac->conn);
      return;
    }
  }
  if (strcmp(type, "interrupt") == 0) {
    repl_interrupt(ac->repl);
    return;
  }
  lua_getfield(L, -1, strcmp(type, "eval") == 0 ? "line" : "text");
  text = lua_tostring(L, -1);
  if (text == NULL) {
    lua_pop(L, 1);
    send_exit(ac, 2, "admin: eval needs 'line', complete needs 'text'");
    conn_end(ac->conn);
    return;
  }
  if (strcmp(type, "eval") == 0) {
    if (repl_busy(ac->repl))
      send_print(ac, "a line is still running", 23);
    else
      repl_eval(ac->repl, text);
  } else {
    char **items = repl_complete(ac->repl, text);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "completions");
    lua_setfield(L, -2, "type");
    lua_newtable(L);
    for (int i = 0; items != NULL && items[i] != NULL; i++) {
      lua_pushstring(L, items[i]);
      lua_rawseti(L, -2, i + 1);
      free(items[i]);
    }
    free(items);
    lua_setfield(L, -2, "items");
    send_table(ac);
  }
  lua_pop(L, 1);
}

static void on_admin_line(conn_t *c, char *line, size_t len) {
  admin_client_t *ac = conn_owner(c);
  lua_State *L = ac->L;
  int top = lua_gettop(L);
  char err[256];
  const char *type;

  if (proto_decode(L, line, len, err, sizeof(err)) < 0) {
    send_exit(ac, 2, err);
    conn_end(c);
    return;
  }
  lua_getfield(L, -1, "type");
  type = lua_tostring(L, -1);
  lua_pop(L, 1);
  if (type != NULL && strcmp(type, "run") == 0 && ac->process == 0 &&
      ac->repl == NULL) {
    run_script(ac);
  } else if (type != NULL && ac->process == 0 &&
             (strcmp(type, "eval") == 0 || strcmp(type, "complete") == 0 ||
              strcmp(type, "interrupt") == 0)) {
    console_frame(ac, type);
  } else {
    send_exit(ac, 2, "admin: expected a run, eval, complete or interrupt "
                     "frame");
    conn_end(c);
  }
  lua_settop(L, top);
}

static void on_admin_too_large(conn_t *c) {
  send_exit(conn_owner(c), 2, "admin: frame too large");
  conn_end(c);
}

/* The requester went away: its script goes on no longer. */
static void on_admin_close(conn_t *c) {
  admin_client_t *ac = conn_owner(c);
  admin_t *a;
  if (ac == NULL)
    return;
  a = ac->admin;
  repl_free(ac->repl);
  if (ac->process != 0) {
    process_t *p = process_find(ac->process);
    if (p != NULL) {
      /* Its end goes nowhere now: say it here. */
      log_info("script %s interrupted: the herald run that started it went "
               "away", p->name);
      process_detach(p);
      process_kill(p, "the client that started it went away");
    }
  }
  if (ac->prev != NULL)
    ac->prev->next = ac->next;
  else if (a != NULL)
    a->clients = ac->next;
  if (ac->next != NULL)
    ac->next->prev = ac->prev;
  free(ac);
}

static const conn_handler_t admin_handler = {
    .on_line = on_admin_line,
    .on_too_large = on_admin_too_large,
    .on_close = on_admin_close,
};

/* "console:NAME" for the user uid, as its lines are named (and audited). */
static void console_name(admin_client_t *ac, uid_t uid) {
  struct passwd pw, *found = NULL;
  char buf[1024];
  if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
    snprintf(ac->name, sizeof(ac->name), "console:%s", pw.pw_name);
  else
    snprintf(ac->name, sizeof(ac->name), "console:%u", (unsigned)uid);
}

/* Only the server's own user, or root, may drive it. */
static int peer_allowed(conn_t *c, uid_t *uid) {
  struct ucred cred;
  socklen_t len = sizeof(cred);
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)conn_stream(c), &fd) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return 0;
  *uid = cred.uid;
  return cred.uid == getuid() || cred.uid == 0;
}

static void on_admin_connection(uv_stream_t *listener, int status) {
  admin_t *a = listener->data;
  admin_client_t *ac;
  conn_t *c;
  uid_t uid = (uid_t)-1;

  if (status < 0) {
    log_warn("admin: accept failed: %s", uv_strerror(status));
    return;
  }
  c = conn_new(listener->loop, CONN_PIPE, &admin_handler, ADMIN_MAX_LINE);
  ac = calloc(1, sizeof(*ac));
  if (c == NULL || ac == NULL || uv_accept(listener, conn_stream(c)) != 0) {
    free(ac);
    if (c != NULL)
      conn_close(c); /* no owner: its close callback has nothing to do */
    return;
  }
  ac->admin = a;
  ac->L = a->L;
  ac->conn = c;
  ac->next = a->clients;
  if (a->clients != NULL)
    a->clients->prev = ac;
  a->clients = ac;
  conn_set_owner(c, ac);
  if (!peer_allowed(c, &uid)) {
    log_warn("admin: refused a connection from uid %d", (int)uid);
    send_exit(ac, 2, "permission denied: only the server's own user or "
                     "root may use its admin socket");
    conn_end(c);
    return;
  }
  console_name(ac, uid);
  if (conn_start(c) < 0)
    conn_close(c);
}

static void on_listener_closed(uv_handle_t *h) { free(h->data); }

/* Makes the socket's folder, mode 0700, if it does not exist. */
static int make_folder(const char *path, char *err, size_t errlen) {
  char copy[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *dir;
  struct stat st;

  snprintf(copy, sizeof(copy), "%s", path);
  dir = dirname(copy);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
    return -1;
  }
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s is not a folder", dir);
    return -1;
  }
  if (st.st_uid != getuid()) {
    snprintf(err, errlen, "%s belongs to another user", dir);
    return -1;
  }
  return 0;
}

/* 1 when a server already answers at path. */
static int socket_in_use(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM, 0), used;
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
  used = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
  if (fd >= 0)
    close(fd);
  return used;
}

admin_t *admin_start(server_t *srv, const char *path, char *err,
                     size_t errlen) {
  admin_t *a;
  int r;

  if (strlen(path) >= sizeof(a->path)) {
    snprintf(err, errlen, "admin socket path is too long: %s", path);
    return NULL;
  }
  if (make_folder(path, err, errlen) < 0)
    return NULL;
  if (socket_in_use(path)) {
    snprintf(err, errlen, "another herald server is running on the admin "
             "socket %s", path);
    return NULL;
  }
  unlink(path); /* a stale socket from a server that died */
  a = calloc(1, sizeof(*a));
  if (a == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  a->srv = srv;
  a->L = server_lua(srv);
  snprintf(a->path, sizeof(a->path), "%s", path);
  uv_pipe_init(server_loop(srv), &a->listener, 0);
  a->listener.data = a;
  r = uv_pipe_bind(&a->listener, path);
  if (r == 0)
    r = chmod(path, 0600) == 0 ? 0 : uv_translate_sys_error(errno);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&a->listener, 64, on_admin_connection);
  if (r != 0) {
    snprintf(err, errlen, "cannot listen on the admin socket %s: %s", path,
             uv_strerror(r));
    uv_close((uv_handle_t *)&a->listener, on_listener_closed);
    return NULL;
  }
  log_info("admin socket %s", path);
  return a;
}

void admin_stop(admin_t *a) {
  if (a == NULL)
    return;
  /* The clients' close callbacks run after a is freed: unlink them now. */
  while (a->clients != NULL) {
    admin_client_t *ac = a->clients;
    a->clients = ac->next;
    ac->prev = ac->next = NULL;
    ac->admin = NULL;
    conn_close(ac->conn);
  }
  unlink(a->path);
  uv_close((uv_handle_t *)&a->listener, on_listener_closed);
}
