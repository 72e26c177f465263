/*
 * fuzz_config.c: libFuzzer target for the configuration loader
 * (config_load_string in runtime/config.c, then config_free).
 *
 * Each input is a configuration chunk, up to its first NUL byte. A chunk
 * is Lua, and the administrator's Lua may loop or allocate forever, which
 * is no bug of the loader; so this file defines luaL_newstate, which the
 * loader calls (the executable's definition takes precedence over
 * liblua's), to give the loader's state what the server gives scripts: a
 * memory limit (64 MiB, past which allocations fail and Lua raises "not
 * enough memory") and an instruction budget (a count hook that raises an
 * error once 10 million instructions have run, and again at every count
 * after that, so a looping finalizer is stopped too). A runaway chunk
 * thus takes the loader's ordinary error path, fuzzed with the rest.
 *
 * It aborts, so that libFuzzer keeps the input, on a Lua error outside a
 * protected call (a panic), on a refused chunk without a message, and
 * when the loader did not close its state; ASan and UBSan catch the rest,
 * and the leak check what config_free leaves behind.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define MEMORY_LIMIT ((size_t)64 * 1024 * 1024)
#define HOOK_COUNT 10000
#define BUDGET_HOOKS 1000 /* times HOOK_COUNT instructions */

/* The loader's one state at a time: bytes in use, count hooks run. */
static struct {
  size_t used;
  long hooks;
  int open;
} budget;

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_config: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  abort();
}

/* lua_Alloc with a cap, like vm.c's: a refused allocation makes Lua raise
 * "not enough memory" in the code that asked. */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr != NULL ? osize : 0;
  void *p;

  (void)ud;
  if (nsize == 0) {
    free(ptr);
    budget.used -= old;
    return NULL;
  }
  if (nsize > old && budget.used - old + nsize > MEMORY_LIMIT)
    return NULL;
  p = realloc(ptr, nsize);
  if (p != NULL)
    budget.used = budget.used - old + nsize;
  return p;
}

static void count_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (++budget.hooks >= BUDGET_HOOKS)
    luaL_error(L, "fuzz: instruction budget exhausted");
}

static int panic(lua_State *L) {
  fail("lua panic", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                    : "(no message)");
  return 0;
}

/* Replaces liblua's for the loader: a limited state, as described above. */
lua_State *luaL_newstate(void) {
  lua_State *L;

  if (budget.open)
    fail("the loader opened a state without closing the last", NULL);
  budget.used = 0;
  budget.hooks = 0;
  L = lua_newstate(limited_alloc, NULL);
  if (L == NULL)
    return NULL;
  budget.open = 1;
  lua_atpanic(L, panic);
  lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_COUNT);
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *chunk = malloc(size + 1), err[1024] = "";
  config_t c;
  int r;

  if (chunk == NULL)
    return 0;
  memcpy(chunk, data, size);
  chunk[size] = '\0';
  config_defaults(&c);
  r = config_load_string(&c, chunk, "fuzz.conf.lua", err, sizeof(err));
  /* Every byte the state had is back once the loader closed it. */
  if (budget.used != 0)
    fail("the loader did not close its lua state", NULL);
  budget.open = 0;
  if (r != 0 && r != -1)
    fail("config_load_string returned an undocumented code", NULL);
  if (r < 0 && err[0] == '\0')
    fail("a refused chunk has no message", NULL);
  config_free(&c);
  free(chunk);
  return 0;
}
