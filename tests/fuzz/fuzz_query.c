/*
 * fuzz_query.c: libFuzzer target for the query language of
 * modules/collection.lua (`collection:query(q, ...)`).
 *
 * An input is a query string, optionally followed by a NUL byte and a
 * value text. The value is passed as placeholder :1, decoded as JSON when
 * it is JSON (so IN lists, numbers, booleans and null reach the query)
 * and as the raw string otherwise; the raw text is also :2, so
 * placeholder paths (":2 = 1") get fuzzed too. The query runs under
 * pcall over a small fixed collection, in the server's own kind of state
 * (vm_new, the embedded module through vm_require), with the memory limit
 * on as for a script.
 *
 * libFuzzer sees coverage of C code only, and the parser is Lua; so a
 * line hook reports which pairs of successive lines of the module ran
 * into libFuzzer's extra counters, and the fuzzer is steered by the
 * parser's own branches.
 *
 * A Lua error is the parser refusing the query and is fine, as long as it
 * is the module's documented `query: ... at position N` refusal. Anything
 * else aborts, so that libFuzzer keeps the input: an error raised from
 * inside the module (a bug in the parser), a result that is not a
 * collection, or one that is not a subsequence of the collection queried,
 * besides what ASan and UBSan catch in C.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm.h"

#define MEMORY_LIMIT (64 * 1024 * 1024)

/*
 * Run with the module as C and cjson as J; returns the function the
 * target calls for each input: run(query, text) returns true, or raises
 * the query's refusal, or returns false and the reason for a finding.
 */
static const char runner[] =
  "local C, J = ...\n"
  "local S = C.new{\n"
  "  {ID = 'A1', userName = 'Vanessa', state = 'active', age = 34,\n"
  "   score = 7.5, admin = true, info = {os = {name = 'macOS',\n"
  "   version = 14}}},\n"
  "  {ID = 'B2', userName = 'vanya', state = 'sleeping', age = 27,\n"
  "   score = 9, admin = false, info = {os = {name = 'Windows'}}},\n"
  "  {ID = 'C3', userName = 'Bob', state = 'Active', age = 'n/a',\n"
  "   score = -2.5, info = {}},\n"
  "  {ID = 'D4', userName = '50% off.*', state = 'postponed', score = 0,\n"
  "   tags = {'a', 'b'}},\n"
  "  {ID = 'E5', userName = '', age = 0/0, score = math.huge,\n"
  "   admin = J.null},\n"
  "  'not a table', 42,\n"
  "}\n"
  "local pos = {}\n"
  "for i, e in ipairs(S) do pos[e] = i end\n"
  "local function query(q, text)\n"
  "  local ok, v = pcall(J.decode, text)\n"
  "  if not ok then v = text elseif v == J.null then v = nil end\n"
  "  local r = S:query(q, v, text)\n"
  "  return r\n"
  "end\n"
  "return function(q, text)\n"
  "  local r = query(q, text)\n"
  "  if not C.is(r) then return false, 'query returned a ' .. type(r) end\n"
  "  local last = 0\n"
  "  for i = 1, #r do\n"
  "    local p = pos[r[i]]\n"
  "    if p == nil or p <= last then\n"
  "      return false, 'result is not a subsequence of the collection'\n"
  "    end\n"
  "    last = p\n"
  "  end\n"
  "  return true\n"
  "end\n";

#define MODULE_CHUNK "=[herald collection]"
#define EDGES 8192

/* libFuzzer treats the bytes of this section as coverage counters. */
__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t lua_edges[EDGES];
static int last_line;

static vm_t *vm;
static int run_ref;

/* Counts the edge (last line, this line) of the module's code. */
static void line_hook(lua_State *L, lua_Debug *ar) {
  unsigned e;

  if (!lua_getinfo(L, "S", ar) || strcmp(ar->source, MODULE_CHUNK) != 0)
    return;
  e = ((unsigned)last_line * 7919u + (unsigned)ar->currentline) % EDGES;
  last_line = ar->currentline;
  if (lua_edges[e] < 255)
    lua_edges[e]++;
}

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "fuzz_query: %s%s%s\n", what, detail ? ": " : "",
          detail ? detail : "");
  abort();
}

/* Pushes the embedded collection module and cjson: vm_require raises. */
static int push_modules(lua_State *L) {
  vm_require(L, "collection");
  lua_getglobal(L, "cjson");
  return 2;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  char err[256];
  lua_State *L;

  (void)argc;
  (void)argv;
  vm = vm_new(MEMORY_LIMIT, err, sizeof(err));
  if (vm == NULL)
    fail("cannot create the lua state", err);
  L = vm_state(vm);
  if (luaL_loadbufferx(L, runner, sizeof(runner) - 1, "=fuzz_query", "t")
      != LUA_OK)
    fail("cannot load the runner", lua_tostring(L, -1));
  lua_pushcfunction(L, push_modules);
  if (lua_pcall(L, 0, 2, 0) != LUA_OK)
    fail("cannot load the collection module", lua_tostring(L, -1));
  if (lua_pcall(L, 2, 1, 0) != LUA_OK || !lua_isfunction(L, -1))
    fail("cannot build the fixture", lua_tostring(L, -1));
  run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  return 0;
}

/*
 * A refusal reads `query: <what> at position N in "<query>"` after a
 * "chunk:line: " prefix that blames the caller: a prefix naming the
 * module's own chunk means the error came from inside the parser. (The
 * query itself, quoted at the end, may hold any text.)
 */
static int is_refusal(const char *msg) {
  const char *q = strstr(msg, "query: ");
  size_t plen = q != NULL ? (size_t)(q - msg) : 0;
  static const char module[] = "[herald collection]";

  if (q == NULL || strstr(q, " at position ") == NULL)
    return 0;
  for (size_t i = 0; i + sizeof(module) - 1 <= plen; i++)
    if (memcmp(msg + i, module, sizeof(module) - 1) == 0)
      return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = vm_state(vm);
  const char *text = (const char *)data, *nul = memchr(text, '\0', size);
  size_t qlen = nul != NULL ? (size_t)(nul - text) : size;
  int base = lua_gettop(L), status;

  last_line = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
  lua_pushlstring(L, text, qlen);
  if (nul != NULL)
    lua_pushlstring(L, nul + 1, size - qlen - 1);
  else
    lua_pushliteral(L, "");
  vm_enforce_limit(L, 1);
  status = lua_pcall(L, 2, 2, 0);
  vm_enforce_limit(L, 0);
  if (status != LUA_OK) {
    if (lua_type(L, -1) != LUA_TSTRING)
      fail("the query raised a non-string error", luaL_typename(L, -1));
    if (!is_refusal(lua_tostring(L, -1)))
      fail("the query failed other than by refusing it",
           lua_tostring(L, -1));
  } else if (!lua_toboolean(L, -2)) {
    fail("wrong query result", lua_tostring(L, -1));
  }
  lua_settop(L, base);
  return 0;
}
