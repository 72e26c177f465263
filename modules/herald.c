#include "herald.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "clock.h"
#include "process.h"
#include "proto.h"
#include "server.h"
#include "session.h"
#include "snapshot.h"
#include "vm.h"

enum { PROCESSES_AND_SESSIONS = 0, PROCESSES_ONLY = 1, SESSIONS_ONLY = 2 };

static server_t *server_up(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static void set_string(lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

static void set_time(lua_State *L, const char *key, int64_t wall_ms) {
  char when[32];
  clock_format_iso8601(wall_ms, when, sizeof(when));
  set_string(L, key, when);
}

void herald_push_session(lua_State *L, server_t *srv, const char *id) {
  session_t *s = srv != NULL ? session_find(server_sessions(srv), id) : NULL;
  if (s == NULL || s->closing) { /* ending: gone as far as Lua knows */
    lua_pushnil(L);
    return;
  }
  snapshot_push_object(L, srv, s);
}

/* Turns the array at the top of the stack into a collection. */
static void make_collection(lua_State *L) {
  vm_require(L, "collection");
  lua_getfield(L, -1, "new");
  lua_remove(L, -2);
  lua_insert(L, -2);
  lua_call(L, 1, 1);
}

static void push_process_object(lua_State *L, server_t *srv,
                                const process_t *p, int with_session) {
  int64_t alive_ns = clock_mono_ns() - p->started_ns;
  char system_id[48];
  lua_createtable(L, 0, 14);
  lua_pushinteger(L, p->number);
  lua_setfield(L, -2, "number");
  lua_pushinteger(L, p->number);
  lua_setfield(L, -2, "ID");
  set_string(L, "name", p->name);
  set_string(L, "sessionID", p->session_id);
  lua_pushinteger(L, p->type);
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, p->state);
  lua_setfield(L, -2, "state");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "visible");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "preemptive");
  /* Processes are coroutines of the server's one thread. */
  snprintf(system_id, sizeof(system_id), "%ld:%d", (long)getpid(), p->number);
  set_string(L, "systemID", system_id);
  set_time(L, "creationDateTime", p->created_ms);
  lua_pushnumber(L, (double)p->cpu_ns / 1e9);
  lua_setfield(L, -2, "cpuTime");
  lua_pushnumber(L, alive_ns > 0 ? (double)p->cpu_ns / (double)alive_ns : 0);
  lua_setfield(L, -2, "cpuUsage");
  if (with_session && srv != NULL && p->session_id[0] != '\0') {
    herald_push_session(L, srv, p->session_id);
    lua_setfield(L, -2, "session");
  }
}

/* The processes (of session id, or all when id is NULL) as a collection. */
static void push_processes(lua_State *L, server_t *srv, const char *id) {
  lua_Integer n = 0;
  lua_createtable(L, (int)process_count(), 0);
  for (size_t i = 0; i < process_count(); i++) {
    const process_t *p = process_at(i);
    if (id != NULL && strcasecmp(p->session_id, id) != 0)
      continue;
    push_process_object(L, srv, p, 1);
    lua_rawseti(L, -2, ++n);
  }
  make_collection(L);
}

static int check_options(lua_State *L, int arg) {
  lua_Integer o = luaL_optinteger(L, arg, PROCESSES_AND_SESSIONS);
  luaL_argcheck(L, o >= 0 && o <= 2, arg,
                "expected PROCESSES_AND_SESSIONS, PROCESSES_ONLY or "
                "SESSIONS_ONLY");
  return (int)o;
}

/* get_process_activity([options]) / get_process_activity(id [, options])
 * -> {sessions = collection, processes = collection} or nil */
static int l_get_process_activity(lua_State *L) {
  server_t *srv = server_up(L);
  const char *id = NULL;
  int options;

  if (lua_type(L, 1) == LUA_TSTRING) {
    id = lua_tostring(L, 1);
    options = check_options(L, 2);
    session_t *s = srv != NULL ? session_find(server_sessions(srv), id)
                               : NULL;
    if (srv != NULL && (s == NULL || s->closing)) {
      lua_pushnil(L);
      return 1;
    }
  } else {
    options = check_options(L, 1);
  }
  lua_createtable(L, 0, 2);
  if (options != PROCESSES_ONLY && srv != NULL) {
    if (id != NULL) {
      lua_createtable(L, 1, 0);
      herald_push_session(L, srv, id);
      lua_rawseti(L, -2, 1);
      make_collection(L);
    } else {
      snapshot_push_sessions(L, srv);
    }
    lua_setfield(L, -2, "sessions");
  }
  if (options != SESSIONS_ONLY) {
    push_processes(L, srv, id);
    lua_setfield(L, -2, "processes");
  }
  return 1;
}

/* send_message_to_remote_user(message [, id]) -> count, message id */
static int l_send_message(lua_State *L) {
  server_t *srv = server_up(L);
  size_t len;
  const char *text, *id;
  int64_t msg_id = 0;
  long count;

  /* Before luaL_checklstring, which would turn a number into a string. */
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_typeerror(L, 1, "string");
  text = lua_tolstring(L, 1, &len);
  id = luaL_optstring(L, 2, NULL);
  if (srv == NULL) {
    lua_pushinteger(L, 0);
    return 1;
  }
  if ((long)len > server_config(srv)->max_message)
    return luaL_error(L, "send_message_to_remote_user: message is %d bytes "
                         "long; the limit (max_message) is %d",
                      (int)len, (int)server_config(srv)->max_message);
  if (!proto_valid_utf8(text, len))
    return luaL_argerror(L, 1, "message is not valid UTF-8");
  count = server_send_message(srv, text, len, id, &msg_id);
  audit_record("send", id != NULL ? id : "all", count > 0 ? count : 0, text,
               count < 0 ? "out of memory"
               : count == 0 && id != NULL ? "no such session" : "ok");
  if (count < 0)
    return luaL_error(L, "send_message_to_remote_user: out of memory");
  lua_pushinteger(L, count);
  lua_pushinteger(L, msg_id);
  return 2;
}

/* message_status(id) -> {queued, delivered, acknowledged, pending} or nil */
static int l_message_status(lua_State *L) {
  server_t *srv = server_up(L);
  lua_Integer id = luaL_checkinteger(L, 1);
  long counts[3];
  session_t *const *all;
  lua_Integer n = 0;

  if (srv == NULL || server_message_counts(srv, id, counts) < 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, counts[0]);
  lua_setfield(L, -2, "queued");
  lua_pushinteger(L, counts[1]);
  lua_setfield(L, -2, "delivered");
  lua_pushinteger(L, counts[2]);
  lua_setfield(L, -2, "acknowledged");
  lua_newtable(L);
  all = session_all(server_sessions(srv));
  for (size_t i = 0; i < session_count(server_sessions(srv)); i++) {
    if (session_pend_has(all[i], id)) {
      lua_pushstring(L, all[i]->id);
      lua_rawseti(L, -2, ++n);
    }
  }
  lua_setfield(L, -2, "pending");
  return 1;
}

/* drop_remote_user(id) -> true if the session existed */
static int l_drop_remote_user(lua_State *L) {
  server_t *srv = server_up(L);
  const char *id = luaL_checkstring(L, 1);
  size_t len;
  const char *reason = luaL_optlstring(L, 2, "dropped by an administrator",
                                       &len);
  if (len > 1024 || !proto_valid_utf8(reason, len) ||
      memchr(reason, '\0', len) != NULL)
    return luaL_argerror(L, 2, "a reason of at most 1024 bytes of UTF-8 "
                               "text expected");
  lua_pushboolean(L, srv != NULL && server_drop(srv, id, reason));
  audit_record("drop", id, lua_toboolean(L, -1), reason,
               lua_toboolean(L, -1) ? "ok" : "no such session");
  return 1;
}

/* reject_new_remote_connections(flag) */
static int l_reject_new_remote_connections(lua_State *L) {
  server_t *srv = server_up(L);
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  if (srv != NULL)
    server_set_reject(srv, lua_toboolean(L, 1));
  audit_record("reject", "all", 0, lua_toboolean(L, 1) ? "on" : "off", "ok");
  lua_pushboolean(L, srv != NULL);
  return 1;
}

/* session_info(id) -> session object or nil */
static int l_session_info(lua_State *L) {
  herald_push_session(L, server_up(L), luaL_checkstring(L, 1));
  return 1;
}

/* process_info(number) -> process object or nil */
static int l_process_info(lua_State *L) {
  const process_t *p = process_find((int)luaL_checkinteger(L, 1));
  if (p == NULL)
    lua_pushnil(L);
  else
    push_process_object(L, server_up(L), p, 1);
  return 1;
}

/* current_session() -> the calling client's session object, or nil */
static int l_current_session(lua_State *L) {
  const process_t *p = process_running();
  if (p == NULL || p->session_id[0] == '\0')
    lua_pushnil(L);
  else
    herald_push_session(L, server_up(L), p->session_id);
  return 1;
}

static const luaL_Reg natives[] = {
    {"get_process_activity", l_get_process_activity},
    {"send_message_to_remote_user", l_send_message},
    {"message_status", l_message_status},
    {"drop_remote_user", l_drop_remote_user},
    {"reject_new_remote_connections", l_reject_new_remote_connections},
    {"session_info", l_session_info},
    {"process_info", l_process_info},
    {"current_session", l_current_session},
    {NULL, NULL},
};

void herald_open(lua_State *L, server_t *srv) {
  static const struct {
    const char *name;
    int value;
  } constants[] = {{"PROCESSES_AND_SESSIONS", PROCESSES_AND_SESSIONS},
                   {"PROCESSES_ONLY", PROCESSES_ONLY},
                   {"SESSIONS_ONLY", SESSIONS_ONLY}};

  static const luaL_Reg process_natives[] = {
      {"delay_process", process_lua_delay},
      {"print", process_lua_print},
      {NULL, NULL},
  };

  vm_register_natives(L, natives, srv);
  vm_register_natives(L, process_natives, NULL);
  for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++)
    vm_register_constant(L, constants[i].name, constants[i].value);
}
