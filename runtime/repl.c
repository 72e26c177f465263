#include "repl.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "process.h"
#include "vm.h"

struct repl {
  lua_State *L;
  repl_io_t io;
  int env_ref;    /* the console's own globals */
  char *pending;  /* an unfinished statement, or NULL */
  int process;    /* the running line's number, or 0 */
};

static void say(repl_t *r, const char *text, size_t len) {
  if (len > 0)
    r->io.print(r->io.data, text, len);
}

/* The line failed: its error, then the end of the line. */
static void fail(repl_t *r, const char *text, size_t len) {
  if (len > 0)
    r->io.error(r->io.data, text, len);
  r->io.done(r->io.data, 0, 0);
}

/* Calls console.name with nargs arguments (below it on the stack), with
 * nres results, protected. Returns the status; the error message stays. */
static int call_console(lua_State *L, const char *name, int nargs,
                        int nres) {
  vm_require(L, "console");
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  lua_insert(L, -1 - nargs);
  return vm_docall(L, nargs, nres);
}

repl_t *repl_new(lua_State *L, const repl_io_t *io) {
  repl_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return NULL;
  r->L = L;
  r->io = *io;
  if (call_console(L, "new_env", 0, 1) != LUA_OK) {
    lua_pop(L, 1);
    free(r);
    return NULL;
  }
  r->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return r;
}

void repl_free(repl_t *r) {
  if (r == NULL)
    return;
  if (r->process != 0) {
    process_t *p = process_find(r->process);
    if (p != NULL) {
      process_detach(p);
      process_kill(p, "the console closed");
    }
  }
  luaL_unref(r->L, LUA_REGISTRYINDEX, r->env_ref);
  free(r->pending);
  free(r);
}

int repl_busy(const repl_t *r) { return r->process != 0; }

static void on_line_print(process_t *p, const char *text, size_t len,
                          void *data) {
  (void)p;
  say(data, text, len);
}

static void on_line_done(process_t *p, int status, lua_State *co, int nres,
                         const char *err, void *data) {
  repl_t *r = data;
  lua_State *L = r->L;
  (void)p;
  r->process = 0;
  if (status != LUA_OK) {
    fail(r, err, strlen(err));
  } else {
    size_t len;
    const char *text;
    int ok;
    lua_xmove(co, L, nres);
    ok = call_console(L, "format_results", nres, 1) == LUA_OK;
    text = lua_tolstring(L, -1, &len);
    if (ok) {
      say(r, text, len);
      r->io.done(r->io.data, 0, 1);
    } else {
      fail(r, text, text != NULL ? len : 0);
    }
    lua_pop(L, 1);
  }
}

/* Keeps line in the unfinished statement; returns the whole of it. */
static const char *accumulate(repl_t *r, const char *line) {
  size_t old = r->pending != NULL ? strlen(r->pending) : 0;
  size_t len = strlen(line);
  char *p = realloc(r->pending, old + len + 2);
  if (p == NULL)
    return NULL;
  if (old > 0)
    p[old++] = '\n';
  memcpy(p + old, line, len + 1);
  r->pending = p;
  return p;
}

void repl_eval(repl_t *r, const char *line) {
  lua_State *L = r->L;
  const char *source;
  process_opts_t opts;

  if (r->pending == NULL && strcmp(line, "\\help") == 0) {
    if (call_console(L, "help", 0, 1) == LUA_OK) {
      size_t len;
      const char *text = lua_tolstring(L, -1, &len);
      say(r, text, len);
    }
    lua_pop(L, 1);
    r->io.done(r->io.data, 0, 1);
    return;
  }
  source = accumulate(r, line);
  if (source == NULL) {
    fail(r, "out of memory", 13);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->env_ref);
  lua_pushstring(L, source);
  if (call_console(L, "compile", 2, 3) != LUA_OK) {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  if (lua_isnil(L, -3)) {
    int more = lua_toboolean(L, -1);
    if (more) {
      r->io.done(r->io.data, 1, 1);
    } else {
      size_t len = 0;
      const char *msg = lua_tolstring(L, -2, &len);
      free(r->pending);
      r->pending = NULL;
      fail(r, msg, msg != NULL ? len : 0);
    }
    lua_pop(L, 3);
    return;
  }
  lua_pop(L, 2);
  free(r->pending);
  r->pending = NULL;
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_EVAL;
  opts.name = r->io.name != NULL ? r->io.name : "console";
  opts.on_print = on_line_print;
  opts.on_done = on_line_done;
  opts.data = r;
  r->process = process_spawn(L, 0, &opts);
  if (r->process < 0) {
    r->process = 0;
    fail(r, "cannot start a process now", 26);
  } else if (process_find(r->process) == NULL) {
    r->process = 0; /* already done: on_line_done has run */
  }
}

int repl_interrupt(repl_t *r) {
  process_t *p;
  free(r->pending);
  r->pending = NULL;
  if (r->process == 0 || (p = process_find(r->process)) == NULL)
    return 0;
  process_kill(p, "interrupted");
  return 1;
}

char **repl_complete(repl_t *r, const char *text) {
  lua_State *L = r->L;
  char **out = NULL;
  lua_Integer n;

  lua_rawgeti(L, LUA_REGISTRYINDEX, r->env_ref);
  lua_pushstring(L, text);
  if (call_console(L, "complete", 2, 1) != LUA_OK || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  out = calloc((size_t)n + 1, sizeof(*out));
  for (lua_Integer i = 0; out != NULL && i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    out[i] = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return out;
}
