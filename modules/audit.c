#include "audit.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "process.h"
#include "sched.h"
#include "vm.h"

/* --- audit_log -------------------------------------------------------- */

/* The entries, copied out of the log before any Lua table is made: making
 * them may raise (memory), which must not happen while the state
 * database's statement is open. */
typedef struct item {
  state_audit_t e;
  size_t seq; /* its place in the log's order */
} item_t;

typedef struct gathered {
  item_t *v;
  size_t n, cap;
  int failed; /* out of memory */
} gathered_t;

static char *copy(const char *s) {
  size_t len = strlen(s) + 1;
  char *c = malloc(len);
  if (c != NULL)
    memcpy(c, s, len);
  return c;
}

static void gather(void *data, const state_audit_t *a) {
  gathered_t *g = data;
  state_audit_t *e;
  if (g->failed)
    return;
  if (g->n == g->cap) {
    size_t cap = g->cap > 0 ? g->cap * 2 : 64;
    item_t *v = realloc(g->v, cap * sizeof(*v));
    if (v == NULL) {
      g->failed = 1;
      return;
    }
    g->v = v;
    g->cap = cap;
  }
  g->v[g->n].seq = g->n;
  e = &g->v[g->n++].e;
  *e = *a;
  e->actor = copy(a->actor);
  e->action = copy(a->action);
  e->target = copy(a->target);
  e->detail = copy(a->detail);
  e->outcome = copy(a->outcome);
  if (e->actor == NULL || e->action == NULL || e->target == NULL ||
      e->detail == NULL || e->outcome == NULL)
    g->failed = 1;
}

/* Newest first by time (the database gives the order of writing, and the
 * wall clock may have been set back); equal times keep the log's order. */
static int newest_first(const void *x, const void *y) {
  const item_t *a = x, *b = y;
  if (a->e.time_ms != b->e.time_ms)
    return a->e.time_ms > b->e.time_ms ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void gathered_free(gathered_t *g) {
  for (size_t i = 0; i < g->n; i++) {
    free((char *)g->v[i].e.actor);
    free((char *)g->v[i].e.action);
    free((char *)g->v[i].e.target);
    free((char *)g->v[i].e.detail);
    free((char *)g->v[i].e.outcome);
  }
  free(g->v);
}

static void set_string(lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

/* Protected: pushes the array of entries of the gathered_t at 1. */
static int push_entries(lua_State *L) {
  const gathered_t *g = lua_touserdata(L, 1);
  char when[32];
  lua_createtable(L, g->n < 0x7fffffff ? (int)g->n : 0, 0);
  for (size_t i = 0; i < g->n; i++) {
    const state_audit_t *e = &g->v[i].e;
    lua_createtable(L, 0, 7);
    clock_format_iso8601(e->time_ms, when, sizeof(when));
    set_string(L, "time", when);
    set_string(L, "actor", e->actor);
    set_string(L, "action", e->action);
    set_string(L, "target", e->target);
    lua_pushinteger(L, e->count);
    lua_setfield(L, -2, "count");
    set_string(L, "detail", e->detail);
    set_string(L, "outcome", e->outcome);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int after_query(lua_State *L, int status, lua_KContext ctx) {
  (void)L;
  (void)status;
  (void)ctx;
  return 1;
}

/*
 * audit_log([queryString, ...]) -> a collection of {time, actor, action,
 * target, count, detail, outcome}, newest first; with a query string, the
 * entries it matches (the collection's query, 4D's syntax).
 */
static int l_audit_log(lua_State *L) {
  const process_t *p = process_running();
  gathered_t g = {NULL, 0, 0, 0};
  int nargs = lua_gettop(L), status;

  /* Methods run for remote users; the log holds every message's text. */
  if (p != NULL && p->type == PROCESS_METHOD)
    return luaL_error(L, "audit_log: not available to methods called by "
                         "remote users (it holds every message's text)");
  if (nargs > 0 && lua_type(L, 1) != LUA_TSTRING)
    return luaL_typeerror(L, 1, "query string");
  luaL_checkstack(L, nargs + 8, "too many arguments");
  if (audit_each(0, gather, &g) < 0) {
    gathered_free(&g);
    return luaL_error(L, "audit_log: the state database cannot be read "
                         "(see the server's log)");
  }
  if (g.failed) {
    gathered_free(&g);
    return luaL_error(L, "audit_log: out of memory");
  }
  if (g.n > 1)
    qsort(g.v, g.n, sizeof(*g.v), newest_first);
  lua_pushcfunction(L, push_entries);
  lua_pushlightuserdata(L, &g);
  status = lua_pcall(L, 1, 1, 0);
  gathered_free(&g);
  if (status != LUA_OK)
    return lua_error(L);
  vm_require(L, "collection");
  lua_getfield(L, -1, "new");
  lua_remove(L, -2);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  if (nargs == 0)
    return 1;
  /* collection:query(queryString, ...), which may yield: a long query
   * over a long log never holds the loop. */
  lua_getfield(L, -1, "query");
  lua_insert(L, -2);
  for (int i = 1; i <= nargs; i++)
    lua_pushvalue(L, i);
  lua_callk(L, nargs + 1, 1, 0, after_query);
  return after_query(L, LUA_OK, 0);
}

/* --- the schedule's hook -------------------------------------------------- */

void audit_job(struct sched *s, const char *action, lua_Integer id, int ok,
               const char *why) {
  sched_info_t info;
  size_t cursor = 0;
  int found = 0;
  char target[32], detail[512];

  while (id > 0 && sched_info_next(s, &cursor, &info))
    if (info.id == id) {
      found = 1;
      break;
    }
  /* A job that could not be made has no ID. */
  snprintf(target, sizeof(target), id < 0 && ok == 0 && why != NULL ? "none"
           : "%lld", (long long)id);
  if (found)
    snprintf(detail, sizeof(detail), "%s (%s)", info.name, info.spec);
  else
    detail[0] = '\0';
  if (ok < 0)
    ok = found;
  if (ok == 0 && why == NULL)
    why = !found        ? "no such job"
          : info.running ? "already running"
                         : "refused";
  audit_record(action, target, 0, detail, ok ? "ok" : why);
}

/* --- registration --------------------------------------------------------- */

void audit_open(lua_State *L) {
  static const luaL_Reg natives[] = {{"audit_log", l_audit_log},
                                     {NULL, NULL}};
  vm_register_natives(L, natives, NULL);
}
