#include "methods.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "outbuf.h"
#include "process.h"
#include "proto.h"
#include "server.h"
#include "vm.h"

#define MAX_NAME 64
#define MAX_ARGS 64

/* What the result needs once the process ends. */
typedef struct pending_call {
  server_t *srv;
  lua_Integer id;
} pending_call_t;

int methods_valid_name(const char *name) {
  size_t n = 0;
  for (; name[n] != '\0'; n++) {
    char c = name[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_'))
      return 0;
  }
  return n >= 1 && n <= MAX_NAME;
}

static void reply(server_t *srv, const char *session_id, outbuf_t *b) {
  if (b != NULL) {
    server_send_to(srv, session_id, b);
    outbuf_unref(b);
  }
}

static void reply_error(server_t *srv, const char *session_id,
                        lua_Integer id, const char *msg) {
  reply(srv, session_id, proto_result_error(server_lua(srv), id, msg));
}

/* The first line of a Lua error, without its traceback: what the caller
 * is told. The whole text goes to the log. */
static void first_line(const char *err, char *out, size_t len) {
  size_t n = strcspn(err, "\n");
  snprintf(out, len, "%.*s", (int)n, err);
}

static void on_method_done(process_t *p, int status, lua_State *co, int nres,
                           const char *err, void *data) {
  pending_call_t *call = data;
  server_t *srv = call->srv;
  lua_State *L = server_lua(srv);
  char why[1024];

  if (status == LUA_OK) {
    outbuf_t *b;
    /* One result travels: the first (nil when there is none). */
    if (nres == 0)
      lua_pushnil(co);
    else if (nres > 1)
      lua_pop(co, nres - 1);
    lua_xmove(co, L, 1);
    b = proto_result_value(L, call->id, -1, why, sizeof(why));
    lua_pop(L, 1);
    if (b == NULL) {
      char msg[1200];
      snprintf(msg, sizeof(msg), "method %s: its result cannot be sent as "
               "JSON: %s", p->name, why);
      log_warn("session %s: %s", p->session_id, msg);
      reply_error(srv, p->session_id, call->id, msg);
    } else {
      reply(srv, p->session_id, b);
    }
  } else if (status == LUA_ERRMEM) {
    snprintf(why, sizeof(why), "method %s: out of memory (lua_memory_limit "
             "is %ld bytes)", p->name, server_config(srv)->lua_memory_limit);
    log_warn("session %s: %s", p->session_id, why);
    reply_error(srv, p->session_id, call->id, why);
    vm_reclaim(L);
  } else {
    log_warn("session %s: method %s failed: %s", p->session_id, p->name, err);
    first_line(err, why, sizeof(why));
    reply_error(srv, p->session_id, call->id, why);
  }
  free(call);
}

/*
 * Pushes the runner's arguments for method name: its version stamp and,
 * when the cached function is stale, the freshly loaded chunk (else nil).
 * Returns 0, or -1 with the reason in why (nothing pushed).
 */
static int push_method(server_t *srv, lua_State *L, const char *name,
                       char *why, size_t whylen) {
  const config_t *cfg = server_config(srv);
  char path[4096], chunkname[128], stamp[64];
  int r;
  struct stat st;
  int current;

  snprintf(path, sizeof(path), "%s/methods/%s.lua", cfg->scripts, name);
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(why, whylen, "unknown method '%s'", name);
    return -1;
  }
  snprintf(stamp, sizeof(stamp), "%lld.%09ld:%lld", (long long)st.st_mtime,
           st.st_mtim.tv_nsec, (long long)st.st_size);
  vm_require(L, "methods");
  lua_getfield(L, -1, "current");
  lua_pushstring(L, name);
  lua_pushstring(L, stamp);
  lua_call(L, 2, 1);
  current = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, -1, "call");
  lua_remove(L, -2);
  lua_pushstring(L, name);
  lua_pushstring(L, stamp);
  if (current) {
    lua_pushnil(L);
    return 0;
  }
  /* A relative chunk name keeps the server's own paths out of messages. */
  snprintf(chunkname, sizeof(chunkname), "@methods/%s.lua", name);
  r = vm_load_file(L, path, chunkname);
  if (r != LUA_OK) {
    snprintf(why, whylen, "method %s: %s", name, lua_tostring(L, -1));
    lua_pop(L, 4);
    vm_require(L, "methods");
    lua_getfield(L, -1, "forget");
    lua_pushstring(L, name);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return -1;
  }
  vm_push_sandbox_env(L);
  lua_setupvalue(L, -2, 1);
  return 0;
}

void methods_call(server_t *srv, session_t *s, lua_State *L) {
  const config_t *cfg = server_config(srv);
  lua_Integer id;
  const char *name;
  char why[1024];
  lua_Integer nargs = 0;
  int args;
  pending_call_t *call;
  process_opts_t opts;

  if (proto_get_integer(L, "id", &id) < 0) {
    outbuf_t *b = proto_error(L, "bad_frame", "call: 'id' must be an "
                                              "integer");
    reply(srv, s->id, b);
    return;
  }
  lua_getfield(L, -1, "method");
  name = lua_tostring(L, -1);
  if (lua_type(L, -1) != LUA_TSTRING || !methods_valid_name(name)) {
    snprintf(why, sizeof(why), "call: 'method' must be a name of letters, "
             "digits and '_' (at most %d)", MAX_NAME);
    lua_pop(L, 1);
    reply_error(srv, s->id, id, why);
    return;
  }
  lua_getfield(L, -2, "args");
  if (!lua_isnil(L, -1) && (!lua_istable(L, -1) ||
                            (nargs = (lua_Integer)lua_rawlen(L, -1)) >
                                MAX_ARGS)) {
    snprintf(why, sizeof(why), "call: 'args' must be an array of at most "
             "%d values", MAX_ARGS);
    lua_pop(L, 2);
    reply_error(srv, s->id, id, why);
    return;
  }
  if (push_method(srv, L, name, why, sizeof(why)) < 0) {
    lua_pop(L, 2);
    log_info("session %s: %s", s->id, why);
    reply_error(srv, s->id, id, why);
    return;
  }
  /* Stack: method, args, runner, name, stamp, chunk-or-nil. */
  args = lua_gettop(L) - 4;
  for (lua_Integer i = 1; i <= nargs; i++) {
    lua_geti(L, args, i);
    /* JSON null arrives as cjson.null; a method sees nil. */
    if (lua_islightuserdata(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
  call = malloc(sizeof(*call));
  if (call == NULL) {
    lua_pop(L, (int)nargs + 6);
    reply_error(srv, s->id, id, "the server is out of memory");
    return;
  }
  call->srv = srv;
  call->id = id;
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_METHOD;
  opts.name = name;
  opts.session_id = s->id;
  opts.timeout = cfg->method_timeout;
  opts.on_done = on_method_done;
  opts.data = call;
  if (process_spawn(L, 3 + (int)nargs, &opts) < 0) {
    free(call);
    reply_error(srv, s->id, id, "the server cannot start a process now");
  }
  lua_pop(L, 2);
}
