#include "config.h"

#include <lauxlib.h>
#include <lua-cjson.h>
#include <errno.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobspec.h"
#include "text.h"

void config_defaults(config_t *c) {
  memset(c, 0, sizeof(*c));
  strcpy(c->listen.host, "127.0.0.1");
  c->listen.port = 7400;
  c->scripts = strdup("scripts");
  c->max_sessions = 10000;
  c->max_frame = 65536;
  c->max_message = 16384;
  c->max_pending = 1024;
  c->max_outbound_bytes = 1048576;
  c->handshake_timeout = 5;
  c->heartbeat = 30;
  c->resume_timeout = 60;
  c->sleep_after = 600;
  c->method_timeout = 10;
  c->lua_memory_limit = 256L * 1024 * 1024;
  c->session_memory_limit = 64L * 1024 * 1024;
  c->max_calls_per_session = 16;
  c->max_blocking = 0.5;
  c->users_file = strdup("herald.users");
  c->auth_delay = 1;
  c->state = strdup("herald.db");
  c->message_history = 10000;
  c->audit_keep_days = 90;
}

void config_default_admin_socket(char *out, size_t len) {
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg != NULL && xdg[0] == '/')
    snprintf(out, len, "%s/herald.sock", xdg);
  else
    snprintf(out, len, "/tmp/herald-%u/herald.sock", (unsigned)getuid());
}

static void free_jobs(config_t *c) {
  for (size_t i = 0; i < c->njobs; i++) {
    free(c->jobs[i].name);
    free(c->jobs[i].cron);
    free(c->jobs[i].script);
    free(c->jobs[i].args_json);
  }
  free(c->jobs);
  c->jobs = NULL;
  c->njobs = 0;
}

void config_free(config_t *c) {
  free(c->admin_socket);
  free(c->scripts);
  free(c->users_file);
  free(c->state);
  free(c->tls_cert);
  free(c->tls_key);
  free_jobs(c);
  c->admin_socket = c->scripts = c->users_file = c->state = NULL;
  c->tls_cert = c->tls_key = NULL;
}

/* The numeric keys: name, where the value goes, and the accepted range. */
typedef struct num_key {
  const char *name;
  size_t offset;
  int integer;
  double min, max;
} num_key_t;

#define NUM(field, integer, min, max) \
  {#field, offsetof(config_t, field), integer, min, max}
static const num_key_t num_keys[] = {
    NUM(max_sessions, 1, 1, 1000000),
    NUM(max_frame, 1, 256, 64 * 1024 * 1024),
    NUM(max_message, 1, 1, 16 * 1024 * 1024),
    NUM(max_pending, 1, 1, 1000000),
    NUM(max_outbound_bytes, 1, 1024, 1024L * 1024 * 1024),
    NUM(handshake_timeout, 0, 0.01, 3600),
    NUM(heartbeat, 0, 0.01, 86400),
    NUM(resume_timeout, 0, 0, 86400 * 7),
    NUM(sleep_after, 0, 0.01, 86400 * 365),
    NUM(method_timeout, 0, 0.001, 86400),
    NUM(lua_memory_limit, 1, 1024 * 1024, 1024.0 * 1024 * 1024 * 1024),
    NUM(session_memory_limit, 1, 64 * 1024, 1024.0 * 1024 * 1024 * 1024),
    NUM(max_calls_per_session, 1, 1, 100000),
    NUM(max_blocking, 0, 0.01, 60),
    NUM(auth_delay, 0, 0, 30),
    NUM(message_history, 1, 0, 100000000),
    NUM(audit_keep_days, 1, 1, 36500),
};
#undef NUM

/* Stores a number at its key's place; -1 with a message when it is not a
 * number in range. Value at the top of the stack. */
static int set_number(lua_State *L, config_t *c, const num_key_t *k,
                      char *err, size_t errlen) {
  int isnum;
  double v = lua_tonumberx(L, -1, &isnum);
  char *field = (char *)c + k->offset;

  if (!isnum || lua_type(L, -1) != LUA_TNUMBER) {
    snprintf(err, errlen, "key '%s': number expected, got %s", k->name,
             luaL_typename(L, -1));
    return -1;
  }
  if (k->integer && v != floor(v)) {
    snprintf(err, errlen, "key '%s': whole number expected, got %g", k->name,
             v);
    return -1;
  }
  if (!(v >= k->min && v <= k->max)) {
    snprintf(err, errlen, "key '%s': %g is out of range %g..%g", k->name, v,
             k->min, k->max);
    return -1;
  }
  if (k->integer)
    *(long *)field = (long)v;
  else
    *(double *)field = v;
  return 0;
}

static int set_string(lua_State *L, char **field, const char *name,
                      char *err, size_t errlen) {
  if (lua_type(L, -1) != LUA_TSTRING) {
    snprintf(err, errlen, "key '%s': string expected, got %s", name,
             luaL_typename(L, -1));
    return -1;
  }
  free(*field);
  *field = strdup(lua_tostring(L, -1));
  return 0;
}

/* Pushes t[name] of the table at idx without metamethods: the file is the
 * user's, and a __index or __len of theirs must not run outside a pcall. */
static int rawfield(lua_State *L, int idx, const char *name) {
  idx = lua_absindex(L, idx);
  lua_pushstring(L, name);
  return lua_rawget(L, idx);
}

/* 1 when the table at idx is a sequence 1..n and nothing else. */
static int is_array(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
        lua_tointeger(L, -1) > n) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
  }
  return count == n;
}

/* Encodes the value at the top of the stack as JSON with cjson. */
static char *encode_json(lua_State *L) {
  char *out = NULL;
  lua_getfield(L, LUA_REGISTRYINDEX, "herald.config.cjson");
  lua_getfield(L, -1, "encode");
  lua_pushvalue(L, -3);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK)
    out = strdup(lua_tostring(L, -1));
  lua_pop(L, 2);
  return out;
}

/* Reads one schedule entry, the table at the top of the stack, with the
 * rules every job spec follows (jobspec.c). */
static int read_job(lua_State *L, config_job_t *job, int n, char *err,
                    size_t errlen) {
  jobspec_t spec;
  char why[256];
  const char *who;

  if (jobspec_read(L, -1, 1, &spec, why, sizeof(why)) < 0 ||
      jobspec_check(spec.cron, spec.every, spec.timeout, why,
                    sizeof(why)) < 0) {
    who = spec.name != NULL ? spec.name : spec.script;
    if (who != NULL)
      snprintf(err, errlen, "schedule entry %d (%s): %s", n, who, why);
    else
      snprintf(err, errlen, "schedule entry %d: %s", n, why);
    return -1;
  }
  job->script = strdup(spec.script);
  job->name = strdup(spec.name != NULL ? spec.name : spec.script);
  job->cron = spec.cron != NULL ? strdup(spec.cron) : NULL;
  job->every = spec.every;
  job->timeout = spec.timeout;
  if (spec.has_args) {
    rawfield(L, -1, "args");
    if (lua_rawlen(L, -1) == 0 && is_array(L, -1)) {
      job->args_json = strdup("[]"); /* cjson would write {} */
    } else if (!is_array(L, -1) || (job->args_json = encode_json(L)) ==
                                       NULL) {
      snprintf(err, errlen, "schedule entry %d (%s): 'args' must be an "
               "array of plain values", n, job->name);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int read_schedule(lua_State *L, config_t *c, char *err,
                         size_t errlen) {
  lua_Integer n;
  if (!lua_istable(L, -1) || lua_getmetatable(L, -1)) {
    snprintf(err, errlen, "key 'schedule': a plain table expected, got %s",
             lua_istable(L, -1) ? "a table with a metatable"
                                : luaL_typename(L, -1));
    return -1;
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  free_jobs(c);
  c->jobs = calloc((size_t)n + 1, sizeof(*c->jobs));
  for (lua_Integer i = 1; i <= n; i++) {
    int r;
    lua_rawgeti(L, -1, i);
    if (!lua_istable(L, -1) || lua_getmetatable(L, -1)) {
      snprintf(err, errlen, "schedule entry %d: a plain table expected, "
               "got %s", (int)i,
               lua_istable(L, -1) ? "a table with a metatable"
                                  : luaL_typename(L, -1));
      return -1;
    }
    c->njobs++;
    r = read_job(L, &c->jobs[i - 1], (int)i, err, errlen);
    lua_pop(L, 1);
    if (r < 0)
      return -1;
  }
  return 0;
}

/* One key of the configuration's environment: key at -2, value at -1. */
/* tls = { cert = FILE, key = FILE } (the table at the top of the stack). */
static int read_tls(lua_State *L, config_t *c, char *err, size_t errlen) {
  static const char *const fields[] = {"cert", "key"};
  char **dest[] = {&c->tls_cert, &c->tls_key};
  if (lua_type(L, -1) != LUA_TTABLE) {
    snprintf(err, errlen, "key 'tls': table { cert = FILE, key = FILE } "
             "expected, got %s", luaL_typename(L, -1));
    return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
    lua_pop(L, 1);
    if (strcmp(k, "cert") != 0 && strcmp(k, "key") != 0) {
      lua_pop(L, 1);
      snprintf(err, errlen, "key 'tls': unknown field (expected cert and "
               "key)");
      return -1;
    }
  }
  for (int i = 0; i < 2; i++) {
    rawfield(L, -1, fields[i]);
    if (lua_type(L, -1) != LUA_TSTRING) {
      snprintf(err, errlen, "key 'tls': '%s' must be a file name, got %s",
               fields[i], luaL_typename(L, -1));
      lua_pop(L, 1);
      return -1;
    }
    free(*dest[i]);
    *dest[i] = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}

static int is_loopback(const char *h) {
  return TEXT_STARTS_WITH(h, "127.") || strcmp(h, "::1") == 0 ||
         strcmp(h, "localhost") == 0;
}

int config_listen_is_loopback(const config_t *c) {
  return is_loopback(c->listen.host);
}

int config_http_is_loopback(const config_t *c) {
  return !c->has_http || is_loopback(c->http_listen.host);
}

/* A "HOST:PORT" key into *out. */
static int read_address(lua_State *L, const char *key, netaddr_t *out,
                        char *err, size_t errlen) {
  char why[256];
  if (lua_type(L, -1) != LUA_TSTRING) {
    snprintf(err, errlen, "key '%s': string expected, got %s", key,
             luaL_typename(L, -1));
    return -1;
  }
  if (netaddr_parse(lua_tostring(L, -1), out, why, sizeof(why))) {
    snprintf(err, errlen, "key '%s': %s", key, why);
    return -1;
  }
  return 0;
}

static int read_key(lua_State *L, config_t *c, char *err, size_t errlen) {
  const char *key;
  if (lua_type(L, -2) != LUA_TSTRING) {
    snprintf(err, errlen, "unexpected %s key", luaL_typename(L, -2));
    return -1;
  }
  key = lua_tostring(L, -2);
  for (size_t i = 0; i < sizeof(num_keys) / sizeof(num_keys[0]); i++)
    if (strcmp(key, num_keys[i].name) == 0)
      return set_number(L, c, &num_keys[i], err, errlen);
  if (strcmp(key, "listen") == 0)
    return read_address(L, key, &c->listen, err, errlen);
  if (strcmp(key, "http_listen") == 0) {
    c->has_http = 1;
    return read_address(L, key, &c->http_listen, err, errlen);
  }
  if (strcmp(key, "admin_socket") == 0)
    return set_string(L, &c->admin_socket, key, err, errlen);
  if (strcmp(key, "scripts") == 0)
    return set_string(L, &c->scripts, key, err, errlen);
  if (strcmp(key, "schedule") == 0)
    return read_schedule(L, c, err, errlen);
  if (strcmp(key, "users_file") == 0)
    return set_string(L, &c->users_file, key, err, errlen);
  if (strcmp(key, "insecure") == 0) {
    if (lua_type(L, -1) != LUA_TBOOLEAN) {
      snprintf(err, errlen, "key 'insecure': boolean expected, got %s",
               luaL_typename(L, -1));
      return -1;
    }
    c->insecure = lua_toboolean(L, -1);
    return 0;
  }
  if (strcmp(key, "tls") == 0)
    return read_tls(L, c, err, errlen);
  if (strcmp(key, "state") == 0) {
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      free(c->state);
      c->state = NULL;
      return 0;
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
      snprintf(err, errlen, "key 'state': a file name or false expected, "
               "got %s", luaL_typename(L, -1));
      return -1;
    }
    return set_string(L, &c->state, key, err, errlen);
  }
  if (strcmp(key, "durability") == 0) {
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(v, "normal") != 0 && strcmp(v, "full") != 0) {
      snprintf(err, errlen, "key 'durability': \"normal\" or \"full\" "
               "expected");
      return -1;
    }
    c->durability_full = strcmp(v, "full") == 0;
    return 0;
  }
  snprintf(err, errlen, "unknown key '%s'", key);
  return -1;
}

int config_load_string(config_t *c, const char *chunk, const char *name,
                       char *err, size_t errlen) {
  lua_State *L = luaL_newstate();
  char why[512] = "", chunkname[512];
  int r = -1, located = 0;

  if (L == NULL) {
    snprintf(err, errlen, "%s: out of memory", name);
    return -1;
  }
  luaL_requiref(L, "_G", luaopen_base, 1);
  luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
  luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
  luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
  luaL_requiref(L, "cjson", luaopen_cjson, 0);
  lua_setfield(L, LUA_REGISTRYINDEX, "herald.config.cjson");
  lua_settop(L, 0);

  /* "@name" makes Lua's own messages read "name:LINE: why". */
  snprintf(chunkname, sizeof(chunkname), "@%s", name);
  if (luaL_loadbufferx(L, chunk, strlen(chunk), chunkname, "t") != LUA_OK) {
    snprintf(why, sizeof(why), "%s", lua_tostring(L, -1));
    /* Syntax errors carry "name:LINE:"; a refused binary chunk does not. */
    located = strncmp(why, name, strlen(name)) == 0;
    goto done;
  }
  /* The chunk's globals land in an environment of their own, which can
   * still read string, math and table. */
  lua_newtable(L);
  lua_newtable(L);
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setupvalue(L, -3, 1);
  lua_insert(L, 1);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg != NULL) {
      snprintf(why, sizeof(why), "%s", msg);
      located = strncmp(why, name, strlen(name)) == 0;
    } else {
      snprintf(why, sizeof(why), "error (a %s value) while running",
               luaL_typename(L, -1));
    }
    goto done;
  }
  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    if (read_key(L, c, why, sizeof(why)) < 0)
      goto done;
    lua_pop(L, 1);
  }
  r = 0;
done:
  if (r < 0 && located)
    snprintf(err, errlen, "%s", why);
  else if (r < 0)
    snprintf(err, errlen, "%s: %s", name, why);
  lua_close(L);
  return r;
}

/* A relative file name in the configuration means beside it: makes *name
 * (if set) relative to the folder of config_path. */
static int beside(char **name, const char *config_path) {
  const char *slash = strrchr(config_path, '/');
  char *joined;
  size_t dir, len;
  if (*name == NULL || (*name)[0] == '/' || slash == NULL)
    return 0;
  dir = (size_t)(slash - config_path) + 1;
  len = strlen(*name);
  joined = malloc(dir + len + 1);
  if (joined == NULL)
    return -1;
  memcpy(joined, config_path, dir);
  memcpy(joined + dir, *name, len + 1);
  free(*name);
  *name = joined;
  return 0;
}

int config_load_file(config_t *c, const char *path, char *err,
                     size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *chunk = NULL;
  size_t len = 0, cap = 0;
  int r;

  if (f == NULL) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  /* Read to the end rather than trust the size: --config may be a pipe. */
  for (;;) {
    size_t n;
    if (cap - len < 4096) {
      char *p = realloc(chunk, cap = cap ? cap * 2 : 8192);
      if (p == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        r = -1;
        goto done;
      }
      chunk = p;
    }
    n = fread(chunk + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0)
      break;
  }
  if (ferror(f)) {
    snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    r = -1;
    goto done;
  }
  chunk[len] = '\0';
  if (memchr(chunk, '\0', len) != NULL && chunk[0] != '\x1b') {
    snprintf(err, errlen, "%s: not a text file", path);
    r = -1;
    goto done;
  }
  r = config_load_string(c, chunk, path, err, errlen);
  if (r == 0 && (beside(&c->users_file, path) < 0 ||
                 beside(&c->state, path) < 0 ||
                 beside(&c->tls_cert, path) < 0 ||
                 beside(&c->tls_key, path) < 0)) {
    snprintf(err, errlen, "%s: out of memory", path);
    r = -1;
  }
done:
  free(chunk);
  fclose(f);
  return r;
}
