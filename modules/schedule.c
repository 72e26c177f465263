#include "schedule.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "audit.h"
#include "clock.h"
#include "cron.h"
#include "jobspec.h"
#include "process.h"
#include "sched.h"
#include "vm.h"

static sched_t *sched_up(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* The most arguments a job may be given (a Lua call takes about 250). */
#define SCHEDULE_MAX_ARGS 250

/* Reads the table form of a spec at index 1 into *spec, with the rules
 * of the configuration's entries (jobspec.c); raises on a bad one. */
static void read_spec_table(lua_State *L, sched_spec_t *spec) {
  jobspec_t js;
  char why[256];
  if (jobspec_read(L, 1, 0, &js, why, sizeof(why)) < 0)
    luaL_argerror(L, 1, lua_pushstring(L, why));
  spec->cron = js.cron;
  spec->every = js.every;
  spec->name = js.name;
  spec->timeout = js.timeout;
}

/* Pushes a copy of the argument array t (its length is t.n when that is a
 * whole number, else #t), so later changes to t do not reach the job. */
static void push_args_copy(lua_State *L, int t) {
  lua_Integer n;
  if (lua_getfield(L, t, "n") == LUA_TNUMBER && lua_isinteger(L, -1))
    n = lua_tointeger(L, -1);
  else
    n = (lua_Integer)lua_rawlen(L, t);
  lua_pop(L, 1);
  if (n < 0 || n > SCHEDULE_MAX_ARGS)
    luaL_argerror(L, 1, lua_pushfstring(L, "'args' may hold at most %d "
                                        "values", SCHEDULE_MAX_ARGS));
  lua_createtable(L, (int)n, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, t, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
}

/* A method runs under its caller's limits and ends with its session; a
 * job it scheduled would escape both, so the schedule is not a method's
 * to change. */
static void refuse_methods(lua_State *L, const char *name) {
  process_t *p = process_running();
  if (p != NULL && p->type == PROCESS_METHOD)
    luaL_error(L, "%s: not available to methods called by remote users "
                  "(a job would outlive its caller's limits)", name);
}

/*
 * schedule(spec, script_or_function) -> job ID
 * spec: a cron string ("45 21 * * 1-5", "@hourly"), a number of seconds
 * (every), or {cron = ... | every = ..., name =, args =, timeout =}.
 * Raises on a bad spec or a missing script.
 */
static int l_schedule(lua_State *L) {
  sched_t *s = sched_up(L);
  sched_spec_t spec;
  char err[512];
  int id;

  refuse_methods(L, "schedule");
  memset(&spec, 0, sizeof(spec));
  spec.fn_ref = spec.args_ref = LUA_NOREF;
  lua_settop(L, 2);
  switch (lua_type(L, 1)) {
  case LUA_TSTRING:
    spec.cron = lua_tostring(L, 1);
    break;
  case LUA_TNUMBER:
    spec.every = lua_tonumber(L, 1);
    break;
  case LUA_TTABLE:
    read_spec_table(L, &spec);
    break;
  default:
    return luaL_typeerror(L, 1, "cron string, seconds or table");
  }
  if (lua_type(L, 2) == LUA_TSTRING)
    spec.script = lua_tostring(L, 2);
  else if (lua_type(L, 2) != LUA_TFUNCTION)
    return luaL_typeerror(L, 2, "script path or function");
  /* @reboot means "once, at the server's start", which has passed: a job
   * scheduled with it now would never run. */
  if (spec.cron != NULL) {
    cron_t c;
    if (cron_parse(&c, spec.cron, NULL, 0) == 0 && cron_is_reboot(&c)) {
      snprintf(err, sizeof(err), "@reboot is only for the configuration's "
               "schedule (it runs once, at the server's start); call "
               "run_job or the function itself to run something now");
      audit_job(s, "schedule", -1, 0, err);
      return luaL_error(L, "schedule: %s", err);
    }
  }
  /* Nothing but running out of memory raises from here on, so the refs
   * reach sched_add, which owns them. */
  if (lua_istable(L, 1) && lua_getfield(L, 1, "args") == LUA_TTABLE) {
    push_args_copy(L, lua_gettop(L));
    spec.args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (spec.script == NULL) {
    lua_pushvalue(L, 2);
    spec.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  id = sched_add(s, &spec, err, sizeof(err));
  audit_job(s, "schedule", id, id > 0, err);
  if (id < 0)
    return luaL_error(L, "schedule: %s", err);
  lua_pushinteger(L, id);
  return 1;
}

/* unschedule(id) -> true, or false for an unknown ID */
static int l_unschedule(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  refuse_methods(L, "unschedule");
  audit_job(sched_up(L), "unschedule", id, -1, NULL); /* before: its name */
  lua_pushboolean(L, id > 0 && id <= 0x7fffffff &&
                         sched_remove(sched_up(L), (int)id));
  return 1;
}

/* run_job(id) -> true when a run starts (on the next turn of the loop),
 * false for an unknown ID or a job that is running */
static int l_run_job(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  refuse_methods(L, "run_job");
  lua_pushboolean(L, id > 0 && id <= 0x7fffffff &&
                         sched_run_now(sched_up(L), (int)id));
  audit_job(sched_up(L), "run_job", id, lua_toboolean(L, -1), NULL);
  return 1;
}

static void set_time(lua_State *L, const char *key, int64_t ms) {
  char when[32];
  if (ms < 0)
    return;
  clock_format_iso8601(ms, when, sizeof(when));
  lua_pushstring(L, when);
  lua_setfield(L, -2, key);
}

/* get_schedule() -> a collection of {ID, name, spec, script, nextRun,
 * lastRun, lastResult, running, process}, in ID order */
static int l_get_schedule(lua_State *L) {
  sched_t *s = sched_up(L);
  sched_info_t info;
  size_t cursor = 0;
  lua_Integer n = 0;

  lua_newtable(L);
  while (sched_info_next(s, &cursor, &info)) {
    lua_createtable(L, 0, 9);
    lua_pushinteger(L, info.id);
    lua_setfield(L, -2, "ID");
    lua_pushstring(L, info.name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, info.spec);
    lua_setfield(L, -2, "spec");
    lua_pushstring(L, info.script != NULL ? info.script : "function");
    lua_setfield(L, -2, "script");
    set_time(L, "nextRun", info.next_ms);
    set_time(L, "lastRun", info.last_ms);
    if (info.last_result != NULL) {
      lua_pushstring(L, info.last_result);
      lua_setfield(L, -2, "lastResult");
    }
    lua_pushboolean(L, info.running);
    lua_setfield(L, -2, "running");
    if (info.process > 0) {
      lua_pushinteger(L, info.process);
      lua_setfield(L, -2, "process");
    }
    lua_rawseti(L, -2, ++n);
  }
  vm_require(L, "collection");
  lua_getfield(L, -1, "new");
  lua_remove(L, -2);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
  return 1;
}

static const luaL_Reg natives[] = {
    {"schedule", l_schedule},
    {"unschedule", l_unschedule},
    {"get_schedule", l_get_schedule},
    {"run_job", l_run_job},
    {NULL, NULL},
};

void schedule_open(lua_State *L, sched_t *s) {
  vm_register_natives(L, natives, s);
}
