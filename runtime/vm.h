/*
 * vm: the one Lua state of a herald process. Its allocator enforces
 * lua_memory_limit (a memory bomb becomes a Lua error, not an OOM kill); it
 * carries the Lua modules embedded at build time; and it builds the two
 * environments of ARCHITECTURE.md: the full one (console, `herald run`) and
 * the sandbox (server methods, scheduled jobs).
 */
#ifndef HERALD_VM_H
#define HERALD_VM_H

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>

typedef struct vm_module {
  const char *name;
  const char *source;
  size_t len;
} vm_module_t;

/* Generated from the modules folder by tools/embed.c. */
extern const vm_module_t vm_modules[];

typedef struct vm vm_t;

/* A new state with the standard libraries and cjson; limit in bytes (0: no
 * limit). Returns NULL with the reason in err. */
vm_t *vm_new(size_t limit, char *err, size_t errlen);
void vm_free(vm_t *vm);
lua_State *vm_state(const vm_t *vm);
/*
 * The memory limit binds Lua code run by processes only: the server's own
 * work (decoding a frame, building a snapshot) must not fail because a
 * script has filled memory up to the limit. The scheduler turns it on
 * around each slice a process runs.
 */
int vm_enforce_limit(lua_State *L, int on); /* returns the previous state */
/*
 * Accounts of Lua memory. A remote session's processes are charged to its
 * account: growing past the account's limit, or past what all accounts
 * together may hold (three quarters of the state's limit, so the console,
 * `herald run` and jobs keep a reserve), is refused while a process runs.
 * Memory charged to no account is the server's, the console's, `herald
 * run`'s and jobs', bound by the state's limit alone.
 */
typedef struct vm_account vm_account_t;
typedef enum vm_refusal {
  VM_REFUSED_NONE,
  VM_REFUSED_TOTAL,   /* lua_memory_limit */
  VM_REFUSED_ACCOUNT, /* the account's own limit */
  VM_REFUSED_POOL,    /* what all accounts together may hold */
} vm_refusal_t;

/* A new account, held by its caller (the session). */
vm_account_t *vm_account_new(size_t limit);
/* One more holder (a process that runs charged to it): an account is not
 * freed while code may still be charged to it. */
void vm_account_hold(vm_account_t *a);
/* A holder is gone: the account goes when no one holds it and the last
 * byte charged to it is freed (a method's globals may keep some alive). */
void vm_account_release(vm_account_t *a);
size_t vm_account_used(const vm_account_t *a);
/* Whether a (or all accounts together) already holds all it may: a new
 * process charged to it would fail at once. */
vm_refusal_t vm_account_full(lua_State *L, const vm_account_t *a);
/* New blocks are charged to a (NULL: to no account) from now on; returns
 * the account charged before. */
vm_account_t *vm_charge_to(lua_State *L, vm_account_t *a);
/* The limit that refused the last refused allocation. */
vm_refusal_t vm_last_refusal(lua_State *L);

/* After a script ran out of memory: collects the garbage and hands freed
 * pages back to the system. */
void vm_reclaim(lua_State *L);

/*
 * Runs embedded module name (modules/NAME.lua) once and keeps its result:
 * pushes the module's value. Raises a Lua error if the module fails.
 */
void vm_require(lua_State *L, const char *name);

/*
 * Pushes a fresh environment for one sandboxed chunk (a server method or a
 * scheduled job): its own globals table whose reads fall back to the
 * allow-listed base (no package, io, os.execute, debug, binary chunks).
 * The base is built on first use from the globals present then, so the
 * natives must be registered before.
 */
void vm_push_sandbox_env(lua_State *L);
/* Pushes a fresh environment of the full kind (the console, `herald run`):
 * its own globals table reading through to the real globals. */
void vm_push_full_env(lua_State *L);

/*
 * Registers natives (up to a NULL name): each becomes a global of the
 * full environment and a name of every sandbox (vm_seal builds its base
 * from them). upvalue is each function's one upvalue, a light userdata
 * (the server, the scheduler; NULL where there is none, as under herald
 * run --local). Before vm_seal.
 */
void vm_register_natives(lua_State *L, const luaL_Reg *fns, void *upvalue);
/* The same for an integer constant (SESSIONS_ONLY). */
void vm_register_constant(lua_State *L, const char *name, lua_Integer value);

/*
 * Seals the state once every native is registered: the standard libraries,
 * cjson and the globals become read-only for every script (their contents
 * move behind a protected metatable), rawset refuses them, getmetatable
 * hides the string metatable, setmetatable refuses finalizers (__gc), and
 * coroutine.resume and close refuse a process's own coroutine. Builds the
 * sandbox's base from what is there. The debug library of the full
 * environment can still reach everything: the console's and `herald
 * run`'s authors are the server's administrators.
 */
void vm_seal(lua_State *L);
/* Marks co as a process's own coroutine (see vm_seal). */
void vm_mark_process_thread(lua_State *co);

/* Pushes the contents of the file at path as a string and returns 0, or
 * returns -1 with errno set (nothing pushed). */
int vm_push_file(lua_State *L, const char *path);

/*
 * Loads Lua text (binary chunks are refused) as a function named chunkname
 * ("@name" for messages that read "name:LINE: why"), skipping a first line
 * that starts with '#' as lua does. Returns the luaL_load status with the
 * function, or the error message, pushed.
 */
int vm_load_source(lua_State *L, const char *src, size_t len,
                   const char *chunkname);

/* vm_push_file then vm_load_source; a file that cannot be read gives
 * LUA_ERRFILE with "cannot open NAME: why". */
int vm_load_file(lua_State *L, const char *path, const char *chunkname);

/*
 * Calls the function below nargs arguments in protected mode with a
 * traceback (lua.c's docall). Returns the lua_pcall status; on error the
 * message with its traceback is at the top of the stack.
 */
int vm_docall(lua_State *L, int nargs, int nresults);
/* vm_docall's message handler: the error's text and the traceback where
 * it happened; runs no script code. */
int vm_msghandler(lua_State *L);

#endif
