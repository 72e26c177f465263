#include "vm.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct vm {
  lua_State *L;
  size_t used, limit;
  int enforcing;
};

/* lua_Alloc with a cap: refusing an allocation makes Lua raise "not enough
 * memory" in the code that asked, after an emergency collection. */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  vm_t *vm = ud;
  size_t old = ptr != NULL ? osize : 0;
  void *p;

  if (nsize == 0) {
    free(ptr);
    vm->used -= old;
    return NULL;
  }
  if (vm->enforcing && nsize > old && vm->used - old + nsize > vm->limit)
    return NULL;
  p = realloc(ptr, nsize);
  if (p != NULL)
    vm->used = vm->used - old + nsize;
  return p;
}

static int panic(lua_State *L) {
  fprintf(stderr, "herald: lua panic: %s\n", lua_tostring(L, -1));
  return 0;
}

vm_t *vm_new(size_t limit, char *err, size_t errlen) {
  vm_t *vm = calloc(1, sizeof(*vm));
  if (vm == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  vm->L = lua_newstate(limited_alloc, vm);
  if (vm->L == NULL) {
    snprintf(err, errlen, "cannot create the lua state");
    free(vm);
    return NULL;
  }
  lua_atpanic(vm->L, panic);
  luaL_openlibs(vm->L);
  /* Most garbage is short-lived (frames, call arguments, coroutines):
   * the generational collector handles it cheaply. */
  lua_gc(vm->L, LUA_GCGEN, 0, 0);
  luaL_requiref(vm->L, "cjson", luaopen_cjson, 1);
  lua_pop(vm->L, 1);
  /* The limit applies from here: the libraries must always load. */
  vm->limit = limit;
  return vm;
}

void vm_free(vm_t *vm) {
  if (vm == NULL)
    return;
  lua_close(vm->L);
  free(vm);
}

lua_State *vm_state(const vm_t *vm) { return vm->L; }

int vm_enforce_limit(lua_State *L, int on) {
  void *ud;
  vm_t *vm;
  int was;
  lua_getallocf(L, &ud);
  vm = ud;
  was = vm->enforcing;
  vm->enforcing = on && vm->limit != 0;
  return was;
}

void vm_reclaim(lua_State *L) {
  lua_gc(L, LUA_GCCOLLECT);
  malloc_trim(0);
}


static int l_require(lua_State *L) {
  vm_require(L, luaL_checkstring(L, 1));
  return 1;
}

void vm_require(lua_State *L, const char *name) {
  const vm_module_t *m;
  char chunkname[96];

  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  for (m = vm_modules; m->name != NULL; m++)
    if (strcmp(m->name, name) == 0)
      break;
  if (m->name == NULL)
    luaL_error(L, "no embedded module '%s'", name);
  snprintf(chunkname, sizeof(chunkname), "=[herald %s]", name);
  if (luaL_loadbufferx(L, m->source, m->len, chunkname, "t") != LUA_OK)
    lua_error(L);
  /* Embedded modules get their own require as argument: `local require =
   * ...`. */
  lua_pushcfunction(L, l_require);
  lua_call(L, 1, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  lua_remove(L, -2);
}

int vm_push_file(lua_State *L, const char *path) {
  FILE *f = fopen(path, "rb");
  luaL_Buffer b;
  size_t n;
  int failed;

  if (f == NULL)
    return -1;
  luaL_buffinit(L, &b);
  do {
    n = fread(luaL_prepbuffer(&b), 1, LUAL_BUFFERSIZE, f);
    luaL_addsize(&b, n);
  } while (n == LUAL_BUFFERSIZE);
  failed = ferror(f);
  fclose(f);
  luaL_pushresult(&b);
  if (failed) {
    lua_pop(L, 1);
    errno = EIO;
    return -1;
  }
  return 0;
}

int vm_load_source(lua_State *L, const char *src, size_t len,
                   const char *chunkname) {
  /* The shebang line goes, its newline stays: line numbers hold. */
  if (len > 0 && src[0] == '#') {
    const char *nl = memchr(src, '\n', len);
    size_t skip = nl != NULL ? (size_t)(nl - src) : len;
    src += skip;
    len -= skip;
  }
  return luaL_loadbufferx(L, src, len, chunkname, "t");
}

int vm_load_file(lua_State *L, const char *path, const char *chunkname) {
  size_t len;
  const char *src;
  int status;

  if (vm_push_file(L, path) < 0) {
    lua_pushfstring(L, "cannot open %s: %s", chunkname + 1, strerror(errno));
    return LUA_ERRFILE;
  }
  src = lua_tolstring(L, -1, &len);
  status = vm_load_source(L, src, len, chunkname);
  lua_remove(L, -2);
  return status;
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int vm_docall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs, status;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

/* Globals a sandboxed chunk may read, as they are. */
static const char *const safe_globals[] = {
    "assert",   "error",    "ipairs", "next",     "pairs",    "pcall",
    "print",    "select",   "tonumber", "tostring", "type",   "xpcall",
    "rawequal", "rawget",   "rawlen", "setmetatable", "_VERSION", NULL};
/* Libraries a sandboxed chunk gets read-only copies of. */
static const char *const safe_libs[] = {"string", "table", "math", "utf8",
                                        "coroutine", NULL};
static const char *const safe_os[] = {"time", "clock", "date", "difftime",
                                      NULL};

static int readonly_newindex(lua_State *L) {
  return luaL_error(L, "attempt to change a read-only library table");
}

/* Remembers the table at the top of the stack as shared by every sandbox:
 * rawset may not write to it. */
static void mark_shared(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "herald.shared") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "herald.shared");
  }
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* rawset, except on the tables every sandbox shares: one method must not
 * change what another sees. */
static int sandbox_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  lua_getfield(L, LUA_REGISTRYINDEX, "herald.shared");
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL)
    return luaL_error(L, "attempt to change a read-only library table");
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 1;
}

/* Pushes a read-only proxy of a shallow copy of the table at idx (only the
 * listed keys, when keys is not NULL). */
static void push_readonly_copy(lua_State *L, int idx,
                               const char *const *keys) {
  idx = lua_absindex(L, idx);
  lua_newtable(L); /* proxy */
  lua_newtable(L); /* its metatable */
  lua_newtable(L); /* the copy */
  if (keys != NULL) {
    for (; *keys != NULL; keys++) {
      lua_getfield(L, idx, *keys);
      lua_setfield(L, -2, *keys);
    }
  } else {
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -4);
    }
  }
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, readonly_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  mark_shared(L);
}

/* getmetatable that will not hand out the shared string metatable, through
 * which a chunk could change string methods for everyone. */
static int sandbox_getmetatable(lua_State *L) {
  luaL_checkany(L, 1);
  if (lua_type(L, 1) == LUA_TSTRING) {
    lua_pushnil(L);
    return 1;
  }
  if (!lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  luaL_getmetafield(L, 1, "__metatable");
  return 1;
}

/* load for sandboxed code: text only, and never the global environment. */
static int sandbox_load(lua_State *L) {
  size_t len;
  const char *chunk = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "=(load)");
  if (luaL_loadbufferx(L, chunk, len, name, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (!lua_isnoneornil(L, 4)) {
    lua_pushvalue(L, 4);
  } else {
    vm_push_sandbox_env(L);
  }
  lua_setupvalue(L, -2, 1);
  return 1;
}

/* The allow-listed base, built once: the safe globals, read-only library
 * copies, and every global whose name is upper-case or that the herald
 * natives registered (listed in registry herald.natives). */
static void push_sandbox_base(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "herald.sandbox") == LUA_TTABLE)
    return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushglobaltable(L);
  for (const char *const *g = safe_globals; *g != NULL; g++) {
    lua_getfield(L, -1, *g);
    lua_setfield(L, -3, *g);
  }
  for (const char *const *lib = safe_libs; *lib != NULL; lib++) {
    lua_getfield(L, -1, *lib);
    push_readonly_copy(L, -1, NULL);
    lua_setfield(L, -4, *lib);
    lua_pop(L, 1);
  }
  lua_getfield(L, -1, "os");
  push_readonly_copy(L, -1, safe_os);
  lua_setfield(L, -4, "os");
  lua_pop(L, 1);
  lua_getfield(L, -1, "table");
  lua_getfield(L, -1, "unpack");
  lua_setfield(L, -4, "unpack");
  lua_pop(L, 1);
  lua_pop(L, 1); /* globals */
  lua_pushcfunction(L, sandbox_getmetatable);
  lua_setfield(L, -2, "getmetatable");
  lua_pushcfunction(L, sandbox_load);
  lua_setfield(L, -2, "load");
  lua_pushcfunction(L, sandbox_rawset);
  lua_setfield(L, -2, "rawset");
  /* The natives and constants of API.md. */
  if (lua_getfield(L, LUA_REGISTRYINDEX, "herald.natives") == LUA_TTABLE) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_settable(L, -5);
    }
  }
  lua_pop(L, 1);
  mark_shared(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "herald.sandbox");
}

void vm_push_sandbox_env(lua_State *L) {
  lua_newtable(L);
  lua_newtable(L);
  push_sandbox_base(L);
  lua_setfield(L, -2, "__index");
  /* getmetatable(_ENV) must not lead to the shared base. */
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
}
