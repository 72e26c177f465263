#include "vm.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"

/*
 * Lua memory is charged to accounts. Every block carries a header naming
 * the account it is charged to (NULL: the server's own, and the console's,
 * `herald run`'s and jobs'), so a free is credited to whoever holds the
 * block, whichever process happens to run when the collector frees it.
 */
struct vm_account {
  size_t used, limit;
  int holders; /* its session, and each of its running processes: once
                  none is left, it goes with its last byte */
};

typedef union block_header {
  vm_account_t *owner;
  max_align_t align; /* keeps what follows aligned as malloc's own */
} block_header_t;

struct vm {
  lua_State *L;
  size_t used, limit;           /* every block; limit 0: none */
  size_t pool_used, pool_limit; /* the blocks of all accounts together */
  vm_account_t *current;        /* what new blocks are charged to */
  vm_refusal_t refused;         /* the limit that refused last */
  int enforcing;
};

static void charge(vm_t *vm, vm_account_t *a, size_t n) {
  vm->used += n;
  if (a != NULL) {
    a->used += n;
    vm->pool_used += n;
  }
}

static void uncharge(vm_t *vm, vm_account_t *a, size_t n) {
  vm->used -= n;
  if (a != NULL) {
    a->used -= n;
    vm->pool_used -= n;
    if (a->holders == 0 && a->used == 0)
      free(a);
  }
}

/* The limit that growing a block charged to from (old bytes) into nsize
 * bytes charged to to would pass, or VM_REFUSED_NONE. */
static vm_refusal_t over_limit(const vm_t *vm, const vm_account_t *from,
                               const vm_account_t *to, size_t old,
                               size_t nsize) {
  if (vm->limit != 0 && vm->used - old + nsize > vm->limit)
    return VM_REFUSED_TOTAL;
  if (to != NULL) {
    if (to->used - (from == to ? old : 0) + nsize > to->limit)
      return VM_REFUSED_ACCOUNT;
    if (vm->pool_used - (from != NULL ? old : 0) + nsize > vm->pool_limit)
      return VM_REFUSED_POOL;
  }
  return VM_REFUSED_NONE;
}

/*
 * lua_Alloc with the accounts and the caps: refusing an allocation makes
 * Lua raise "not enough memory" in the code that asked, after an emergency
 * collection. A block belongs to whoever last grew it, so a session that
 * fills a table someone else made pays for the growth; shrinking (the
 * collector's work) changes no owner.
 */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  vm_t *vm = ud;
  block_header_t *h = ptr != NULL ? (block_header_t *)ptr - 1 : NULL;
  size_t old = ptr != NULL ? osize : 0;
  vm_account_t *from = h != NULL ? h->owner : NULL, *to;

  if (nsize == 0) {
    free(h);
    uncharge(vm, from, old);
    return NULL;
  }
  to = nsize > old ? vm->current : from;
  if (vm->enforcing && nsize > old) {
    vm_refusal_t why = over_limit(vm, from, to, old, nsize);
    if (why != VM_REFUSED_NONE) {
      vm->refused = why;
      return NULL;
    }
  }
  h = realloc(h, sizeof(*h) + nsize);
  if (h == NULL)
    return NULL;
  /* Charge first: uncharging may free an unheld account that is also
   * the new owner. */
  charge(vm, to, nsize);
  uncharge(vm, from, old);
  h->owner = to;
  return h + 1;
}

static vm_t *vm_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

vm_account_t *vm_account_new(size_t limit) {
  vm_account_t *a = calloc(1, sizeof(*a));
  if (a != NULL) {
    a->limit = limit;
    a->holders = 1;
  }
  return a;
}

void vm_account_hold(vm_account_t *a) {
  if (a != NULL)
    a->holders++;
}

void vm_account_release(vm_account_t *a) {
  if (a == NULL)
    return;
  if (--a->holders == 0 && a->used == 0)
    free(a);
}

size_t vm_account_used(const vm_account_t *a) { return a->used; }

vm_refusal_t vm_account_full(lua_State *L, const vm_account_t *a) {
  const vm_t *vm = vm_of(L);
  if (a == NULL)
    return VM_REFUSED_NONE;
  if (a->used >= a->limit)
    return VM_REFUSED_ACCOUNT;
  return vm->pool_used >= vm->pool_limit ? VM_REFUSED_POOL
                                         : VM_REFUSED_NONE;
}

vm_account_t *vm_charge_to(lua_State *L, vm_account_t *a) {
  vm_t *vm = vm_of(L);
  vm_account_t *was = vm->current;
  vm->current = a;
  return was;
}

vm_refusal_t vm_last_refusal(lua_State *L) { return vm_of(L)->refused; }

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
  /* Every thread copies the main one's extra space, which Lua leaves
   * uninitialised: no mark (see vm_mark_process_thread). */
  *(void **)lua_getextraspace(vm->L) = NULL;
  luaL_openlibs(vm->L);
  /* Most garbage is short-lived (frames, call arguments, coroutines):
   * the generational collector handles it cheaply. */
  lua_gc(vm->L, LUA_GCGEN, 0, 0);
  luaL_requiref(vm->L, "cjson", luaopen_cjson, 1);
  lua_pop(vm->L, 1);
  snapshot_open(vm->L);
  /* The limits apply from here: the libraries must always load. Remote
   * users' methods together may hold three quarters of the limit: the
   * rest stays for the console, `herald run` and scheduled jobs. */
  vm->limit = limit;
  vm->pool_limit = limit != 0 ? limit / 4 * 3 : SIZE_MAX;
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
  vm_t *vm = vm_of(L);
  int was = vm->enforcing;
  vm->enforcing = on;
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

/* The traceback where the error happened. It calls no script's code (no
 * __tostring): a message handler may run with hooks off, where nothing
 * could stop a loop. */
int vm_msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int vm_docall(lua_State *L, int nargs, int nresults) {
  int base = lua_gettop(L) - nargs, status;
  lua_pushcfunction(L, vm_msghandler);
  lua_insert(L, base);
  status = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  return status;
}

/* --- shared tables --------------------------------------------------- */

static int readonly_newindex(lua_State *L) {
  return luaL_error(L, "attempt to change a read-only table");
}

/* Remembers the table at idx as shared by every script: the guarded
 * rawset may not write to it. */
static void mark_shared(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
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
  lua_pushvalue(L, idx);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* The iterator pairs() gives for a frozen table: next over its hidden
 * contents (upvalue 1), which the script never gets to hold. */
static int frozen_next(lua_State *L) {
  lua_settop(L, 2);
  if (lua_next(L, lua_upvalueindex(1)) != 0)
    return 2;
  lua_pushnil(L);
  return 1;
}

/* __pairs of a frozen table, so the console can still list and complete
 * its names. */
static int frozen_pairs(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, frozen_next, 1);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/*
 * Makes the table at idx read-only in place: its contents move to a hidden
 * table that its __index reads, writes raise, and its metatable is
 * protected. Every reference to it (a global, package.loaded, an upvalue)
 * sees the same frozen table. Pushes the hidden table.
 */
static void freeze(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  /* Clearing fields that exist is allowed during a traversal. */
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, idx);
  }
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, readonly_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, frozen_pairs, 1);
  lua_setfield(L, -2, "__pairs");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, idx);
  mark_shared(L, idx);
  mark_shared(L, -1);
}

/* --- guarded functions ---------------------------------------------- */

/* rawset, except on the tables every script shares. */
static int guarded_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  snapshot_settle(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "herald.shared");
  lua_pushvalue(L, 1);
  if (lua_rawget(L, -2) != LUA_TNIL)
    return luaL_error(L, "attempt to change a read-only table");
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 1;
}

/* getmetatable that will not hand out the shared string metatable. */
static int guarded_getmetatable(lua_State *L) {
  luaL_checkany(L, 1);
  if (lua_type(L, 1) == LUA_TSTRING || !lua_getmetatable(L, 1)) {
    lua_pushnil(L);
    return 1;
  }
  luaL_getmetafield(L, 1, "__metatable");
  return 1;
}

/*
 * setmetatable without finalizers: Lua runs __gc with hooks off, at any
 * allocation of anyone, so a finalizer could hold the server where no
 * limit reaches it. (A __gc added to the metatable later is never called:
 * Lua marks an object for finalization only here.)
 */
static int guarded_setmetatable(lua_State *L) {
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "setmetatable: finalizers (__gc) are not "
                           "allowed in herald scripts");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1)); /* the real setmetatable */
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* next, rawget, rawlen and cjson.encode (the real one is upvalue 1): they
 * read tables raw, so a collection in waiting (snapshot.h) is built
 * first; cjson.encode builds those anywhere in its argument. */
static int settled_raw_op(lua_State *L) {
  snapshot_settle(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int settled_encode(lua_State *L) {
  snapshot_settle_within(L, 1, 1000); /* cjson's own depth limit */
  return settled_raw_op(L);
}

/* cjson.new (the real one is upvalue 1): its encoders settle too. */
static int settled_cjson_new(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_call(L, 0, 1);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "encode");
    lua_pushcclosure(L, settled_encode, 1);
    lua_setfield(L, -2, "encode");
  }
  return 1;
}

static char process_thread_mark;

void vm_mark_process_thread(lua_State *co) {
  *(void **)lua_getextraspace(co) = &process_thread_mark;
}

/* coroutine.resume and coroutine.close (the real one is upvalue 1),
 * except on a process's own coroutine: those belong to the scheduler, and
 * a script that kept one must not drive another user's call. */
static int guarded_coroutine_op(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  if (co != NULL && *(void **)lua_getextraspace(co) == &process_thread_mark)
    return luaL_error(L, "cannot resume or close a process's own "
                         "coroutine");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

/* Replaces t[name] (t at the top of the stack) with fn closed over the
 * original. */
static void guard_field(lua_State *L, const char *name, lua_CFunction fn) {
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, -2, name);
}

/* --- the sandbox ----------------------------------------------------- */

/* Globals a sandboxed chunk may read, as they are. */
static const char *const safe_globals[] = {
    "assert",   "error",    "ipairs", "next",     "pairs",    "pcall",
    "print",    "select",   "tonumber", "tostring", "type",   "xpcall",
    "rawequal", "rawget",   "rawlen", "rawset", "getmetatable",
    "setmetatable", "_VERSION", NULL};
/* Libraries a sandboxed chunk reads (frozen by vm_seal). */
static const char *const safe_libs[] = {"string", "table", "math", "utf8",
                                        "coroutine", NULL};
static const char *const safe_os[] = {"time", "clock", "date", "difftime",
                                      NULL};

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

/* The natives registered so far, by name: pushed (made on first use). */
static void push_native_list(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "herald.natives") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "herald.natives");
  }
}

/* The value at the top (popped) as native name: in the list and global. */
static void register_native(lua_State *L, const char *name) {
  push_native_list(L);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
  lua_setglobal(L, name);
}

void vm_register_natives(lua_State *L, const luaL_Reg *fns, void *upvalue) {
  for (const luaL_Reg *r = fns; r->name != NULL; r++) {
    lua_pushlightuserdata(L, upvalue);
    lua_pushcclosure(L, r->func, 1);
    register_native(L, r->name);
  }
}

void vm_register_constant(lua_State *L, const char *name,
                          lua_Integer value) {
  lua_pushinteger(L, value);
  register_native(L, name);
}

/* Builds the allow-listed base of every sandbox from the globals (the
 * natives among them) and keeps it in the registry. */
static void build_sandbox_base(lua_State *L) {
  lua_newtable(L);
  lua_pushglobaltable(L);
  for (const char *const *g = safe_globals; *g != NULL; g++) {
    lua_getfield(L, -1, *g);
    lua_setfield(L, -3, *g);
  }
  for (const char *const *lib = safe_libs; *lib != NULL; lib++) {
    lua_getfield(L, -1, *lib);
    lua_setfield(L, -3, *lib);
  }
  lua_newtable(L); /* os: a few functions */
  lua_getfield(L, -2, "os");
  for (const char *const *f = safe_os; *f != NULL; f++) {
    lua_getfield(L, -1, *f);
    lua_setfield(L, -3, *f);
  }
  lua_pop(L, 1);
  freeze(L, -1);
  lua_pop(L, 1);
  lua_setfield(L, -3, "os");
  lua_getfield(L, -1, "table");
  lua_getfield(L, -1, "unpack");
  lua_setfield(L, -4, "unpack");
  lua_pop(L, 2); /* table, globals */
  lua_pushcfunction(L, sandbox_load);
  lua_setfield(L, -2, "load");
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
  mark_shared(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "herald.sandbox");
}

void vm_seal(lua_State *L) {
  static const char *const libs[] = {"string", "table",  "math", "utf8",
                                     "coroutine", "os", "io", "debug",
                                     "package", "cjson", NULL};
  lua_pushglobaltable(L);
  lua_pushcfunction(L, guarded_rawset);
  lua_setfield(L, -2, "rawset");
  guard_field(L, "next", settled_raw_op);
  guard_field(L, "rawget", settled_raw_op);
  guard_field(L, "rawlen", settled_raw_op);
  if (lua_getfield(L, -1, "cjson") == LUA_TTABLE) {
    guard_field(L, "encode", settled_encode);
    guard_field(L, "new", settled_cjson_new);
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, guarded_getmetatable);
  lua_setfield(L, -2, "getmetatable");
  guard_field(L, "setmetatable", guarded_setmetatable);
  lua_getfield(L, -1, "coroutine");
  guard_field(L, "resume", guarded_coroutine_op);
  guard_field(L, "close", guarded_coroutine_op);
  lua_pop(L, 1);
  /* Strings find their methods in the hidden copy of string. */
  lua_getfield(L, -1, "string");
  freeze(L, -1);
  lua_pushliteral(L, "");
  lua_getmetatable(L, -1);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 4);
  for (const char *const *lib = libs + 1; *lib != NULL; lib++) {
    if (lua_getfield(L, -1, *lib) == LUA_TTABLE) {
      freeze(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  build_sandbox_base(L);
  freeze(L, -1);
  lua_pop(L, 2);
}

static void push_env(lua_State *L, const char *base_key) {
  lua_newtable(L);
  lua_createtable(L, 0, 2);
  if (base_key != NULL)
    lua_getfield(L, LUA_REGISTRYINDEX, base_key);
  else
    lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");
  /* getmetatable(_ENV) must not lead to what every script shares. */
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
}

void vm_push_sandbox_env(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, "herald.sandbox") != LUA_TTABLE)
    build_sandbox_base(L); /* an unsealed state: tests, herald run --local */
  lua_pop(L, 1);
  push_env(L, "herald.sandbox");
}

void vm_push_full_env(lua_State *L) { push_env(L, NULL); }
