#include "jobspec.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cron.h"

/* Pushes t[name] of the table at idx without metamethods: a __index of the
 * user's must not run outside a pcall. */
static int rawfield(lua_State *L, int idx, const char *name) {
  lua_pushstring(L, name);
  return lua_rawget(L, idx);
}

/* The field names of the table at idx are all known ones. */
static int known_fields(lua_State *L, int idx, int with_script, char *err,
                        size_t errlen) {
  static const char *const fields[] = {"cron", "every", "name", "timeout",
                                       "args", "script", NULL};
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int i;
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(err, errlen, "unexpected %s key", luaL_typename(L, -2));
      lua_pop(L, 2);
      return -1;
    }
    for (i = 0; fields[i] != NULL; i++)
      if (strcmp(lua_tostring(L, -2), fields[i]) == 0)
        break;
    if (fields[i] == NULL || (!with_script && strcmp(fields[i], "script") ==
                                                  0)) {
      snprintf(err, errlen, "unknown field '%s' (expected cron, every, %s"
               "name, args or timeout)", lua_tostring(L, -2),
               with_script ? "script, " : "");
      lua_pop(L, 2);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

int jobspec_read(lua_State *L, int idx, int with_script, jobspec_t *out,
                 char *err, size_t errlen) {
  int top = lua_gettop(L), r = -1, has_cron, has_every;

  idx = lua_absindex(L, idx);
  memset(out, 0, sizeof(*out));
  if (with_script) {
    if (rawfield(L, idx, "script") == LUA_TSTRING)
      out->script = lua_tostring(L, -1);
  }
  if (rawfield(L, idx, "name") == LUA_TSTRING)
    out->name = lua_tostring(L, -1);
  if (known_fields(L, idx, with_script, err, errlen) < 0)
    goto done;
  if (with_script && out->script == NULL) {
    snprintf(err, errlen, "'script' must be a string");
    goto done;
  }
  if (!lua_isnil(L, -1) && out->name == NULL) {
    snprintf(err, errlen, "'name' must be a string");
    goto done;
  }
  has_cron = rawfield(L, idx, "cron") != LUA_TNIL;
  has_every = rawfield(L, idx, "every") != LUA_TNIL;
  if (has_cron == has_every) {
    snprintf(err, errlen, "give exactly one of 'cron' or 'every'");
    goto done;
  }
  if (has_cron) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      snprintf(err, errlen, "'cron' must be a string");
      goto done;
    }
    out->cron = lua_tostring(L, -2);
  } else if (lua_type(L, -1) != LUA_TNUMBER) {
    snprintf(err, errlen, "'every' must be a number of seconds");
    goto done;
  } else {
    out->every = lua_tonumber(L, -1);
  }
  if (rawfield(L, idx, "timeout") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0)) {
      snprintf(err, errlen, "'timeout' must be a positive number of "
               "seconds");
      goto done;
    }
    out->timeout = lua_tonumber(L, -1);
  }
  switch (rawfield(L, idx, "args")) {
  case LUA_TNIL:
    break;
  case LUA_TTABLE:
    out->has_args = 1;
    break;
  default:
    snprintf(err, errlen, "'args' must be an array");
    goto done;
  }
  r = 0;
done:
  lua_settop(L, top);
  return r;
}

int jobspec_check(const char *cron, double every, double timeout, char *err,
                  size_t errlen) {
  if (cron != NULL) {
    cron_t c;
    time_t next;
    int r;
    if (cron_parse(&c, cron, err, errlen) < 0)
      return -1;
    r = cron_next(&c, time(NULL), &next);
    if (r == CRON_ENONEXT || r == CRON_ERANGE) {
      snprintf(err, errlen, "cron '%s' never fires (no matching time "
               "within %d years)", cron, CRON_HORIZON_DAYS / 366);
      return -1;
    }
  } else if (!(every >= 0.01 && every <= JOBSPEC_MAX_EVERY)) {
    snprintf(err, errlen, "'every' must be a number of seconds from 0.01 "
             "to %.0f (366 days), not %g", JOBSPEC_MAX_EVERY, every);
    return -1;
  }
  if (!(timeout >= 0 && timeout <= JOBSPEC_MAX_TIMEOUT)) {
    snprintf(err, errlen, "'timeout' must be a number of seconds up to "
             "%.0f, not %g", JOBSPEC_MAX_TIMEOUT, timeout);
    return -1;
  }
  return 0;
}
