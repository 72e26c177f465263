#include "methods.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"
#include "outbuf.h"
#include "process.h"
#include "proto.h"
#include "server.h"
#include "users.h"
#include "vm.h"

#define MAX_NAME 64
#define MAX_ARGS 64

/* What the result needs once the process ends. */
typedef struct pending_call {
  server_t *srv;
  lua_Integer id;
  int forbidden; /* refused by the method's allow list, on its loading */
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
                        lua_Integer id, const char *code, const char *msg) {
  reply(srv, session_id, proto_result_error(server_lua(srv), id, code, msg));
}

/* The first line of a Lua error, without its traceback: what the caller
 * is told. The whole text goes to the log. */
static void first_line(const char *err, char *out, size_t len) {
  size_t n = strcspn(err, "\n");
  snprintf(out, len, "%.*s", (int)n, err);
}

/* What a method that ran out of memory is told: which limit it met. */
static void out_of_memory(server_t *srv, const char *name, vm_refusal_t limit,
                          char *why, size_t whylen) {
  const config_t *cfg = server_config(srv);
  snprintf(why, whylen, "method %s: out of memory (%s is %ld bytes)", name,
           limit == VM_REFUSED_ACCOUNT ? "session_memory_limit"
           : limit == VM_REFUSED_POOL  ? "remote users' share of "
                                         "lua_memory_limit"
                                       : "lua_memory_limit",
           limit == VM_REFUSED_ACCOUNT ? cfg->session_memory_limit
           : limit == VM_REFUSED_POOL  ? cfg->lua_memory_limit / 4 * 3
                                       : cfg->lua_memory_limit);
}

/* vm_account_full, after collecting the garbage that may be what fills
 * the account (at most once a second: a full collection is not cheap). */
static vm_refusal_t account_full(lua_State *L, const vm_account_t *a) {
  static int64_t last_collect_ms;
  vm_refusal_t full = vm_account_full(L, a);
  int64_t now;
  if (full != VM_REFUSED_NONE &&
      (now = clock_mono_ms()) - last_collect_ms >= 1000) {
    last_collect_ms = now;
    lua_gc(L, LUA_GCCOLLECT);
    full = vm_account_full(L, a);
  }
  return full;
}

/* The result code of a process that ended with an error. */
static const char *error_code(const process_t *p, int status) {
  if (status == LUA_ERRMEM)
    return "out_of_memory";
  if (p->killed)
    return "timeout"; /* its time, or the loop's, ran out */
  return "failed";
}

static void on_method_done(process_t *p, int status, lua_State *co, int nres,
                           const char *err, void *data) {
  pending_call_t *call = data;
  server_t *srv = call->srv;
  lua_State *L = server_lua(srv);
  session_t *s = session_find(server_sessions(srv), p->session_id);
  char why[1024];

  if (s != NULL)
    s->calls--;
  if (s == NULL || s->closing) {
    /* Its session ended: the result goes nowhere. */
  } else if (status == LUA_OK) {
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
      reply_error(srv, p->session_id, call->id, "failed", msg);
    } else {
      reply(srv, p->session_id, b);
    }
  } else if (call->forbidden) {
    first_line(err, why, sizeof(why));
    reply_error(srv, p->session_id, call->id, "forbidden", why);
  } else if (status == LUA_ERRMEM) {
    out_of_memory(srv, p->name, vm_last_refusal(L), why, sizeof(why));
    log_warn("session %s: %s", p->session_id, why);
    reply_error(srv, p->session_id, call->id, "out_of_memory", why);
  } else {
    log_warn("session %s: method %s failed: %s", p->session_id, p->name, err);
    first_line(err, why, sizeof(why));
    reply_error(srv, p->session_id, call->id, error_code(p, status), why);
  }
  free(call);
}

/*
 * The functions of the method files, kept with the version of the file
 * they came from (modification time, size, inode): a call compares its
 * stat with these and runs the kept function, and only a changed file is
 * loaded again. The first call of a method in a turn of the loop stats
 * its file, the others of that turn trust it: they all came in together,
 * so none of their clients can have seen a reply to a call made after
 * the file changed. Few methods: a linear search is the fastest there is.
 */
typedef struct method_cache {
  char name[MAX_NAME + 1];
  int64_t mtime_ns, size, ino;
  uint64_t checked_turn; /* the loop's turn of the last stat; 0: none */
  int fn_ref;
  char *allow; /* the groups that may call it, comma-separated; NULL: all */
} method_cache_t;

static method_cache_t *cache;
static size_t cache_count, cache_cap;

static method_cache_t *cache_find(const char *name) {
  for (size_t i = 0; i < cache_count; i++)
    if (strcmp(cache[i].name, name) == 0)
      return &cache[i];
  return NULL;
}

static void cache_forget(lua_State *L, const char *name) {
  method_cache_t *e = cache_find(name);
  if (e == NULL)
    return;
  luaL_unref(L, LUA_REGISTRYINDEX, e->fn_ref);
  free(e->allow);
  *e = cache[--cache_count];
}

/*
 * Whether session s may call the method of entry e: every method is open
 * on a server without users; with users, one that allows groups is for
 * users in one of them. A refusal is logged and answered here.
 */
static int permitted(server_t *srv, const session_t *s,
                     const method_cache_t *e, char *why, size_t whylen) {
  if (e->allow == NULL || !server_requires_login(srv))
    return 1;
  for (const char *p = e->allow; *p != '\0';) {
    char group[80];
    size_t len = strcspn(p, ",");
    snprintf(group, sizeof(group), "%.*s", (int)len, p);
    if (session_in_group(s, group))
      return 1;
    p += len + (p[len] == ',');
  }
  if (e->allow[0] == '\0')
    snprintf(why, whylen, "method %s: forbidden: it is for no group",
             e->name);
  else
    snprintf(why, whylen, "method %s: forbidden: it is for group%s %s",
             e->name, strchr(e->allow, ',') != NULL ? "s" : "", e->allow);
  log_warn("session %s (%s): %s", s->id, s->user_name, why);
  return 0;
}

static void bad_allow(lua_State *L, const char *name) {
  lua_pushfstring(L, "method %s: 'allow' must be an array of group names "
                     "(letters, digits, '_' and '-')", name);
  lua_error(L);
}

/* The allow list at idx (an array of group names, or nil) as a
 * comma-separated string in *out (NULL for nil). Raises for anything
 * else. */
static void read_allow(lua_State *L, int idx, const char *name, char **out) {
  luaL_Buffer b;
  lua_Integer n;
  *out = NULL;
  if (lua_isnil(L, idx))
    return;
  if (!lua_istable(L, idx))
    bad_allow(L, name);
  n = (lua_Integer)lua_rawlen(L, idx);
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    const char *g;
    lua_rawgeti(L, idx, i);
    g = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || !users_valid_group(g))
      bad_allow(L, name);
    lua_pop(L, 1);
    if (i > 1)
      luaL_addchar(&b, ',');
    luaL_addstring(&b, g);
  }
  luaL_pushresult(&b);
  *out = strdup(lua_tostring(L, -1));
  lua_pop(L, 1);
}

static int64_t mtime_ns(const struct stat *st) {
  return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* keep(fn, allow): the loader's callback; its upvalues are the method's
 * name and the version of the file the function came from. Raises when
 * the calling session may not call the method. */
static int l_keep(lua_State *L) {
  const char *name = lua_tostring(L, lua_upvalueindex(1));
  process_t *p = process_running();
  pending_call_t *call = p != NULL ? p->opts.data : NULL;
  method_cache_t *e;
  session_t *s;
  char *allow, why[512];
  luaL_checktype(L, 1, LUA_TFUNCTION);
  read_allow(L, 2, name, &allow);
  e = cache_find(name);
  if (e == NULL) {
    if (cache_count == cache_cap) {
      size_t cap = cache_cap ? cache_cap * 2 : 16;
      method_cache_t *grown = realloc(cache, cap * sizeof(*grown));
      if (grown == NULL) {
        free(allow);
        return 0; /* not kept: the next call loads the file again */
      }
      cache = grown;
      cache_cap = cap;
    }
    e = &cache[cache_count++];
    snprintf(e->name, sizeof(e->name), "%s", name);
  } else {
    luaL_unref(L, LUA_REGISTRYINDEX, e->fn_ref);
    free(e->allow);
  }
  e->allow = allow;
  e->mtime_ns = lua_tointeger(L, lua_upvalueindex(2));
  e->size = lua_tointeger(L, lua_upvalueindex(3));
  e->ino = lua_tointeger(L, lua_upvalueindex(4));
  e->checked_turn = 0; /* loaded from a stat of an earlier turn, maybe */
  lua_pushvalue(L, 1);
  e->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s = call != NULL ? session_find(server_sessions(call->srv), p->session_id)
                   : NULL;
  if (s != NULL && !permitted(call->srv, s, e, why, sizeof(why))) {
    call->forbidden = 1;
    lua_pushstring(L, why); /* the loader's own position says nothing */
    return lua_error(L);
  }
  return 0;
}

/* Says where the server looked, relative to the scripts folder only: the
 * server's own paths stay out of what a remote user reads. */
static void unknown_method(char *why, size_t whylen, const char *name) {
  snprintf(why, whylen, "unknown method '%s' (no file methods/%s.lua in "
           "the scripts folder)", name, name);
}

/*
 * Pushes the function a call of method name runs, and returns how many
 * values it pushed before the call's own arguments: the kept function (1),
 * or, when the file is new or changed, the loader with keep, the name and
 * the freshly loaded file (4). Returns -1 for an unknown method, -2 for a
 * file that does not load, -3 for a caller that may not call it, with the
 * reason in why (nothing pushed).
 */
static int push_method(server_t *srv, lua_State *L, const char *name,
                       const session_t *s, char *why, size_t whylen) {
  const char *scripts = server_config(srv)->scripts;
  char path[4096], chunkname[128];
  size_t slen = strlen(scripts), nlen = strlen(name);
  method_cache_t *e;
  struct stat st;

  if (slen + nlen + 14 > sizeof(path)) {
    unknown_method(why, whylen, name);
    return -1;
  }
  /* scripts + "/methods/" + name + ".lua", without printf's cost. */
  memcpy(path, scripts, slen);
  memcpy(path + slen, "/methods/", 9);
  memcpy(path + slen + 9, name, nlen);
  memcpy(path + slen + 9 + nlen, ".lua", 5);
  e = cache_find(name);
  if (e != NULL && e->checked_turn == process_loop_turn()) {
    if (!permitted(srv, s, e, why, whylen))
      return -3;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->fn_ref);
    return 1;
  }
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    cache_forget(L, name);
    unknown_method(why, whylen, name);
    return -1;
  }
  if (e != NULL && e->mtime_ns == mtime_ns(&st) &&
      e->size == (int64_t)st.st_size && e->ino == (int64_t)st.st_ino) {
    e->checked_turn = process_loop_turn();
    if (!permitted(srv, s, e, why, whylen))
      return -3;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->fn_ref);
    return 1;
  }
  /* A broken file is never served from the cache. */
  cache_forget(L, name);
  vm_require(L, "methods");
  lua_getfield(L, -1, "load");
  lua_remove(L, -2);
  lua_pushstring(L, name);
  lua_pushinteger(L, mtime_ns(&st));
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  lua_pushcclosure(L, l_keep, 4);
  lua_pushstring(L, name);
  /* A relative chunk name keeps the server's own paths out of messages. */
  snprintf(chunkname, sizeof(chunkname), "@methods/%s.lua", name);
  if (vm_load_file(L, path, chunkname) != LUA_OK) {
    snprintf(why, whylen, "method %s: %s", name, lua_tostring(L, -1));
    lua_pop(L, 4);
    return -2;
  }
  vm_push_sandbox_env(L);
  lua_setupvalue(L, -2, 1);
  return 4;
}

/* The length of the JSON array at idx (a table whose keys are exactly 1..n,
 * n at most MAX_ARGS), or -1 for anything else. An empty object decodes as
 * an empty table too, and passes as no arguments. */
static lua_Integer array_length(lua_State *L, int idx) {
  lua_Integer n, keys = 0;
  if (!lua_istable(L, idx))
    return -1;
  idx = lua_absindex(L, idx);
  n = (lua_Integer)lua_rawlen(L, idx);
  if (n > MAX_ARGS)
    return -1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (++keys > n || !lua_isinteger(L, -1)) {
      lua_pop(L, 1);
      return -1;
    }
  }
  return keys == n ? n : -1;
}

void methods_call(void *data, session_t *s, lua_State *L) {
  server_t *srv = data;
  const config_t *cfg = server_config(srv);
  lua_Integer id;
  const char *name;
  char why[1024];
  lua_Integer nargs = 0;
  int args, pushed;
  pending_call_t *call;
  process_opts_t opts;
  vm_refusal_t full;

  if (proto_get_integer(L, "id", &id) < 0) {
    outbuf_t *b = proto_error(L, "bad_frame", "call: 'id' must be an "
                                              "integer");
    reply(srv, s->id, b);
    return;
  }
  lua_getfield(L, -1, "method");
  /* The type first: lua_tostring would turn a number into a name. */
  name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  if (name == NULL || !methods_valid_name(name)) {
    snprintf(why, sizeof(why), "call: 'method' must be a name of letters, "
             "digits and '_' (at most %d)", MAX_NAME);
    lua_pop(L, 1);
    reply_error(srv, s->id, id, "unknown_method", why);
    return;
  }
  lua_getfield(L, -2, "args");
  if (!lua_isnil(L, -1) && (nargs = array_length(L, -1)) < 0) {
    snprintf(why, sizeof(why), "call: 'args' must be an array of at most "
             "%d values", MAX_ARGS);
    lua_pop(L, 2);
    reply_error(srv, s->id, id, "bad_args", why);
    return;
  }
  /* A session (or all of them) already at its memory limit starts no
   * process, so arguments waiting in calls cannot pile up past it. */
  if ((full = account_full(L, s->account)) != VM_REFUSED_NONE) {
    out_of_memory(srv, name, full, why, sizeof(why));
    lua_pop(L, 2);
    log_info("session %s: %s", s->id, why);
    reply_error(srv, s->id, id, "out_of_memory", why);
    return;
  }
  if (s->calls >= cfg->max_calls_per_session) {
    snprintf(why, sizeof(why), "method %s: this session already runs %d "
             "calls (max_calls_per_session)", name, s->calls);
    lua_pop(L, 2);
    log_info("session %s: %s", s->id, why);
    reply_error(srv, s->id, id, "busy", why);
    return;
  }
  pushed = push_method(srv, L, name, s, why, sizeof(why));
  if (pushed < 0) {
    static const char *const codes[] = {"unknown_method", "failed",
                                        "forbidden"};
    lua_pop(L, 2);
    if (pushed != -3)
      log_info("session %s: %s", s->id, why);
    reply_error(srv, s->id, id, codes[-pushed - 1], why);
    return;
  }
  /* A session's account comes with its first call: most sessions never
   * call, and cost nothing for it. */
  if (s->account == NULL)
    s->account = vm_account_new((size_t)cfg->session_memory_limit);
  luaL_checkstack(L, (int)nargs + 4, "call arguments");
  /* Stack: method, args, what push_method pushed. */
  args = lua_gettop(L) - pushed;
  for (lua_Integer i = 1; i <= nargs; i++) {
    lua_geti(L, args, i);
    /* JSON null arrives as cjson.null; a method sees nil. */
    if (lua_islightuserdata(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    proto_integers(L, -1);
  }
  call = malloc(sizeof(*call));
  if (call == NULL) {
    lua_pop(L, (int)nargs + pushed + 2);
    reply_error(srv, s->id, id, "out_of_memory",
                "the server is out of memory");
    return;
  }
  call->srv = srv;
  call->id = id;
  call->forbidden = 0;
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_METHOD;
  opts.name = name;
  opts.session_id = s->id;
  opts.timeout = cfg->method_timeout;
  opts.account = s->account;
  opts.on_done = on_method_done;
  opts.data = call;
  /* Counted first: the process may end before process_spawn returns. */
  s->calls++;
  if (process_spawn(L, pushed - 1 + (int)nargs, &opts) < 0) {
    s->calls--;
    free(call);
    reply_error(srv, s->id, id, "out_of_memory",
                "the server cannot start a process now");
  }
  lua_pop(L, 2);
}
