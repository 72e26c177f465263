/*
 * Unit tests for the sandbox and the sealing of runtime/vm.c, on a state
 * set up as `herald serve` does (herald_open, process_init, then vm_seal):
 * what a sandboxed chunk cannot reach (io, os.execute, os.exit, package,
 * require, debug, dofile, loadfile, binary chunks) and what it keeps
 * (string, table, math, utf8, coroutine, os.time/clock/date/difftime, the
 * natives); that the libraries and the globals are read-only for every
 * script, rawset included, while a sandbox's own globals are its own;
 * setmetatable without __gc; getmetatable without the string metatable;
 * load for text only, in a fresh sandbox; coroutine.resume and close
 * refusing a process's own coroutine; and the full environment, which has
 * io and debug but the same frozen libraries.
 *
 * Chunks run outside any process (vm_docall) unless a test needs one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "clock.h"
#include "herald.h"
#include "log.h"
#include "process.h"
#include "vm.h"

#define MAX_BLOCKING 0.2
#define GUARD_SECONDS 2.0

enum env_kind { SANDBOX, FULL };

typedef struct fixture {
  uv_loop_t loop;
  vm_t *vm;
  lua_State *L;
  uv_timer_t settle, guard;
  int expired;
  char err[2048]; /* the last chunk's error */
} fixture_t;

typedef struct outcome {
  int calls;
  int status;
  char err[1024];
  char results[512]; /* every result as text, separated by '|' */
} outcome_t;

static int finished;

static void quiet_log(const char *line, void *data) {
  (void)line;
  (void)data;
}

static void noop_timer(uv_timer_t *t) { (void)t; }

static void on_guard(uv_timer_t *t) {
  fixture_t *f = t->data;
  f->expired = 1;
  uv_stop(&f->loop);
}

/* One turn of the loop up to its poll: the test's own code before no
 * longer counts as holding the loop (see the hook's max_blocking). */
static void settle(fixture_t *f) {
  uv_timer_start(&f->settle, noop_timer, 0, 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  char err[256];
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->vm = vm_new(0, err, sizeof(err));
  assert_non_null(f->vm);
  f->L = vm_state(f->vm);
  /* As serve.c: the natives, the scheduler's guards, then the seal. */
  herald_open(f->L, NULL);
  process_init(&f->loop, f->L);
  process_set_limits(MAX_BLOCKING);
  vm_seal(f->L);
  uv_timer_init(&f->loop, &f->settle);
  uv_timer_init(&f->loop, &f->guard);
  f->settle.data = f->guard.data = f;
  finished = 0;
  log_set_writer(quiet_log, NULL);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  process_shutdown();
  uv_close((uv_handle_t *)&f->settle, NULL);
  uv_close((uv_handle_t *)&f->guard, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  vm_free(f->vm);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  log_set_writer(NULL, NULL);
  free(f);
  return 0;
}

/* A new environment of that kind, kept in the registry: its reference. */
static int new_env(fixture_t *f, enum env_kind kind) {
  if (kind == SANDBOX)
    vm_push_sandbox_env(f->L);
  else
    vm_push_full_env(f->L);
  assert_int_equal(lua_type(f->L, -1), LUA_TTABLE);
  return luaL_ref(f->L, LUA_REGISTRYINDEX);
}

static void drop_env(fixture_t *f, int env) {
  luaL_unref(f->L, LUA_REGISTRYINDEX, env);
}

/* Loads src with env as its _ENV (pushes the function). */
static void load_in(fixture_t *f, int env, const char *src) {
  if (vm_load_source(f->L, src, strlen(src), "=chunk") != LUA_OK)
    fail_msg("does not load: %s\n%s", lua_tostring(f->L, -1), src);
  lua_rawgeti(f->L, LUA_REGISTRYINDEX, env);
  assert_non_null(lua_setupvalue(f->L, -2, 1));
}

/* Runs src in env outside any process, one result kept on the stack (or
 * the error, copied into f->err). Returns the status. */
static int run_in(fixture_t *f, int env, const char *src) {
  int status;
  settle(f);
  load_in(f, env, src);
  status = vm_docall(f->L, 0, 1);
  f->err[0] = '\0';
  if (status != LUA_OK)
    snprintf(f->err, sizeof(f->err), "%s", lua_tostring(f->L, -1));
  return status;
}

/* src must run and return true. */
static void check(fixture_t *f, int env, const char *src) {
  int status = run_in(f, env, src);
  if (status != LUA_OK)
    fail_msg("%s\nraised: %s", src, f->err);
  if (lua_type(f->L, -1) != LUA_TBOOLEAN || !lua_toboolean(f->L, -1))
    fail_msg("%s\nreturned %s, not true", src, luaL_typename(f->L, -1));
  lua_pop(f->L, 1);
}

/* src must raise an error containing part. */
static void check_raises(fixture_t *f, int env, const char *src,
                         const char *part) {
  int status = run_in(f, env, src);
  lua_pop(f->L, 1);
  if (status == LUA_OK)
    fail_msg("%s\nran without the error \"%s\"", src, part);
  if (strstr(f->err, part) == NULL)
    fail_msg("%s\nraised \"%s\", not \"%s\"", src, f->err, part);
}

static const char read_only[] = "attempt to change a read-only table";

/* ---- what the sandbox hides and keeps -------------------------------- */

static void the_sandbox_hides_what_reaches_the_system(void **state) {
  fixture_t *f = *state;
  static const char *const hidden[] = {
      "io",         "package",     "require",    "debug",      "dofile",
      "loadfile",   "collectgarbage", "cjson",   "os.execute", "os.exit",
      "os.getenv",  "os.remove",   "os.rename",  "os.tmpname", "os.setlocale",
      "_G.io",      "_ENV.debug",  NULL};
  int env = new_env(f, SANDBOX);
  char src[128];
  for (const char *const *name = hidden; *name != NULL; name++) {
    snprintf(src, sizeof(src), "return %s == nil", *name);
    check(f, env, src);
  }
  drop_env(f, env);
}

static void the_sandbox_keeps_the_safe_libraries(void **state) {
  fixture_t *f = *state;
  int env = new_env(f, SANDBOX);
  check(f, env, "return string.rep('ab', 3) == 'ababab'");
  check(f, env, "return ('%d-%s'):format(7, 'x') == '7-x'");
  check(f, env, "return ('hello'):upper() == 'HELLO'");
  check(f, env, "local t = {3, 1, 2} table.sort(t)\n"
                "return table.concat(t, ',') == '1,2,3'");
  check(f, env, "return math.floor(2.5) == 2 and math.maxinteger > 0");
  check(f, env, "return utf8.char(233) == '\\u{E9}'");
  check(f, env, "return math.type(os.time()) == 'integer'");
  check(f, env, "return type(os.clock()) == 'number'");
  check(f, env, "return #os.date('%Y') == 4");
  check(f, env, "return os.difftime(10, 4) == 6");
  check(f, env, "return unpack == table.unpack and select('#', 1, 2) == 2");
  check(f, env, "return _VERSION == 'Lua 5.4'");
  check(f, env, "return tostring(12) == '12' and tonumber('0x10') == 16");
  check(f, env, "return pcall(error, 'x') == false");
  check(f, env,
        "local ok, e = xpcall(error, function(m) return 'h:' .. m end, 'x', 0)\n"
        "return not ok and e == 'h:x'");
  check(f, env, "local co = coroutine.wrap(function(a)\n"
                "  local b = coroutine.yield(a + 1) return b * 2 end)\n"
                "return co(1) == 2 and co(5) == 10");
  check(f, env, "local co = coroutine.create(function() return 7 end)\n"
                "local ok, v = coroutine.resume(co)\n"
                "return ok and v == 7 and coroutine.close(co)");
  /* The natives and the constants of herald_open. */
  check(f, env, "return type(delay_process) == 'function'\n"
                "  and type(print) == 'function'\n"
                "  and type(process_info) == 'function'\n"
                "  and math.type(SESSIONS_ONLY) == 'integer'");
  drop_env(f, env);
}

static void load_takes_text_only_in_a_fresh_sandbox(void **state) {
  fixture_t *f = *state;
  int env = new_env(f, SANDBOX);
  check(f, env, "return load('return 1 + 1')() == 2");
  check(f, env, "local fn, err = load(string.dump(function() end))\n"
                "return fn == nil and err:find('binary chunk') ~= nil");
  check(f, env, "local fn, err = load(string.dump(function() end), 'b',\n"
                "  'b')\n"
                "return fn == nil and err:find('binary chunk') ~= nil");
  check_raises(f, env, "return load(function() return nil end)",
               "bad argument #1 to 'load'");
  /* A loaded chunk gets a fresh sandbox: nothing more, and its globals
   * are not the caller's. */
  check(f, env, "return load('return io')() == nil");
  check(f, env, "return load('return os.execute')() == nil");
  check(f, env, "return load('return require')() == nil");
  check(f, env, "load('leaked = 1')() return leaked == nil");
  check(f, env, "mine = 1 return load('return mine')() == nil");
  /* Or the environment it is given. */
  check(f, env, "local t = {}\n"
                "load('x = 5', 'n', 't', t)()\n"
                "return t.x == 5 and x == nil");
  drop_env(f, env);
}

/* ---- read-only -------------------------------------------------------- */

static void the_libraries_are_read_only(void **state) {
  fixture_t *f = *state;
  static const char *const writes[] = {
      "string.rep = nil",
      "string.mine = 1",
      "table.insert = print",
      "math.pi = 3",
      "utf8.char = nil",
      "coroutine.resume = nil",
      "os.time = nil",
      "os.execute = print",
      "table.insert(string, 'x')",
      "string[1] = 'x'",
      NULL};
  int env = new_env(f, SANDBOX);
  for (const char *const *w = writes; *w != NULL; w++)
    check_raises(f, env, *w, read_only);
  check_raises(f, env, "setmetatable(string, {})",
               "cannot change a protected metatable");
  check(f, env, "return getmetatable(string) == false");
  check(f, env, "return getmetatable(os) == false");
  /* All as it was. */
  check(f, env, "return string.rep('a', 2) == 'aa' and string.mine == nil\n"
                "  and math.pi > 3.14 and os.execute == nil");
  drop_env(f, env);
}

static void rawset_refuses_the_shared_tables(void **state) {
  fixture_t *f = *state;
  static const char *const targets[] = {"string", "table", "math", "utf8",
                                        "coroutine", "os", NULL};
  int env = new_env(f, SANDBOX);
  char src[128];
  for (const char *const *t = targets; *t != NULL; t++) {
    snprintf(src, sizeof(src), "rawset(%s, 'rep', nil)", *t);
    check_raises(f, env, src, read_only);
    snprintf(src, sizeof(src), "rawset(%s, 'new', 1)", *t);
    check_raises(f, env, src, read_only);
  }
  check(f, env, "return string.rep('b', 2) == 'bb'");
  /* Its own globals and tables are its own: rawset works there. */
  check(f, env, "return rawset(_G, 'y', 1) == _G and y == 1");
  check(f, env, "local t = {} return rawset(t, 1, 2) == t and t[1] == 2");
  drop_env(f, env);
}

static void a_sandbox_s_globals_are_its_own(void **state) {
  fixture_t *f = *state;
  int a = new_env(f, SANDBOX), b = new_env(f, SANDBOX);
  /* A global set to nil is only absent from a's own table: reads fall
   * back to the base again. */
  check(f, a, "string = nil return type(string) == 'table'");
  check(f, a, "x = 1 string = false print = false tostring = 5\n"
              "rawset(_ENV, 'pairs', 'mine')\n"
              "return x == 1 and string == false and pairs == 'mine'");
  check(f, b, "return x == nil and type(string) == 'table'\n"
              "  and type(print) == 'function'\n"
              "  and type(tostring) == 'function'\n"
              "  and type(pairs) == 'function'");
  /* a keeps its globals from one chunk to the next (a method's file). */
  check(f, a, "return x == 1 and tostring == 5");
  /* _G is the environment itself, and nothing leads past it to the base
   * every sandbox shares. */
  check(f, b, "return _G == _ENV and _G._G == _G");
  check(f, b, "return getmetatable(_ENV) == false");
  check_raises(f, b, "setmetatable(_ENV, {})",
               "cannot change a protected metatable");
  check(f, b, "return rawget(_ENV, 'string') == nil");
  check(f, b, "local n = 0 for k in pairs(_ENV) do n = n + 1 end\n"
              "return n == 1");
  drop_env(f, a);
  drop_env(f, b);
}

static void frozen_libraries_still_list_their_names(void **state) {
  fixture_t *f = *state;
  int env = new_env(f, SANDBOX);
  check(f, env, "local names = {}\n"
                "for k, v in pairs(string) do names[k] = v end\n"
                "return names.rep == string.rep and names.format ~= nil");
  check(f, env, "local n = 0 for k in pairs(math) do n = n + 1 end\n"
                "return n > 20");
  drop_env(f, env);
}

/* ---- metatables ------------------------------------------------------- */

static void finalizers_are_refused(void **state) {
  fixture_t *f = *state;
  int env = new_env(f, SANDBOX);
  check_raises(f, env, "setmetatable({}, {__gc = function() end})",
               "setmetatable: finalizers (__gc) are not allowed in herald "
               "scripts");
  check_raises(f, env, "setmetatable({}, {__gc = true})", "finalizers");
  check(f, env, "local mt = {__index = {a = 1}}\n"
                "local t = setmetatable({}, mt)\n"
                "return t.a == 1 and getmetatable(t) == mt");
  check(f, env, "local t = setmetatable({}, {}) return setmetatable(t, nil)\n"
                "  == t and getmetatable(t) == nil");
  /* A __gc added to the metatable afterwards is never called. */
  check(f, env, "local mt = {}\n"
                "kept = setmetatable({}, mt)\n"
                "mt.__gc = function() finalized = true end\n"
                "kept = nil return true");
  lua_gc(f->L, LUA_GCCOLLECT);
  lua_gc(f->L, LUA_GCCOLLECT);
  check(f, env, "return finalized == nil");
  drop_env(f, env);
}

static void the_string_metatable_is_hidden(void **state) {
  fixture_t *f = *state;
  int sandbox = new_env(f, SANDBOX), full = new_env(f, FULL);
  check(f, sandbox, "return getmetatable('') == nil");
  check(f, sandbox, "return getmetatable('abc') == nil");
  check(f, full, "return getmetatable('') == nil");
  /* Strings still find their methods, from the frozen string table. */
  check(f, sandbox, "return ('x'):rep(3) == 'xxx' and ('a,b'):find(',') == 2");
  check(f, sandbox, "return ('x').nope == nil and ('x').rep == string.rep");
  /* The full environment's debug library reaches everything (its authors
   * are administrators). */
  check(f, full, "return type(debug.getmetatable('')) == 'table'");
  drop_env(f, sandbox);
  drop_env(f, full);
}

/* ---- the full environment ------------------------------------------- */

static void the_full_environment_has_io_and_debug(void **state) {
  fixture_t *f = *state;
  int env = new_env(f, FULL);
  check(f, env, "return type(io.write) == 'function'\n"
                "  and type(debug.traceback) == 'function'\n"
                "  and type(os.execute) == 'function'\n"
                "  and type(require) == 'function'\n"
                "  and type(collectgarbage) == 'function'\n"
                "  and type(cjson.encode) == 'function'\n"
                "  and type(delay_process) == 'function'");
  /* The standard load, binary chunks included. */
  check(f, env, "return load(string.dump(function() return 3 end))() == 3");
  drop_env(f, env);
}

static void the_full_environment_s_libraries_are_frozen(void **state) {
  fixture_t *f = *state;
  static const char *const writes[] = {
      "io.write = nil",        "debug.traceback = nil", "os.exit = nil",
      "os.mine = 1",           "cjson.encode = nil",    "string.rep = nil",
      "table.concat = nil",    "math.huge = 1",         "coroutine.wrap = nil",
      "utf8.len = nil",        "rawset(io, 'write', nil)",
      "rawset(debug, 'x', 1)", "rawset(cjson, 'x', 1)",
      NULL};
  int env = new_env(f, FULL);
  for (const char *const *w = writes; *w != NULL; w++)
    check_raises(f, env, *w, read_only);
  drop_env(f, env);
}

static void the_real_globals_are_read_only(void **state) {
  fixture_t *f = *state;
  int a = new_env(f, FULL), b = new_env(f, FULL);
  /* The real globals table is reachable (package.loaded._G, the
   * registry), but frozen like the libraries. */
  check_raises(f, a, "package.loaded._G.x = 1", read_only);
  check_raises(f, a, "package.loaded._G.print = nil", read_only);
  check_raises(f, a, "rawset(package.loaded._G, 'print', nil)", read_only);
  check_raises(f, a, "debug.getregistry()[2].x = 1", read_only);
  check(f, a, "return type(package.loaded._G.print) == 'function'");
  /* A full environment's own globals are its own. */
  check(f, a, "x = 1 print = false return x == 1 and print == false");
  check(f, b, "return x == nil and type(print) == 'function'");
  check(f, b, "return _G == _ENV and getmetatable(_ENV) == false");
  drop_env(f, a);
  drop_env(f, b);
}

/* vm.h: "the standard libraries, cjson and the globals become read-only
 * for every script"; docs/lua-api.md: "the standard libraries [...] are
 * read-only for every script, the console and `herald run` included".
 * package is one of Lua's standard libraries (luaL_openlibs opens it), and
 * only the full environment has it. */
static void the_full_environment_s_package_library_is_frozen(void **state) {
  fixture_t *f = *state;
  int env = new_env(f, FULL);
  check_raises(f, env, "package.path = './?.lua'", read_only);
  check_raises(f, env, "package.searchers = {}", read_only);
  check_raises(f, env, "rawset(package, 'cpath', '')", read_only);
  drop_env(f, env);
}

/* ---- processes -------------------------------------------------------- */

static void on_done(process_t *p, int status, lua_State *co, int nres,
                    const char *err, void *data) {
  outcome_t *o = data;
  (void)p;
  finished++;
  o->calls++;
  o->status = status;
  snprintf(o->err, sizeof(o->err), "%s", err != NULL ? err : "");
  o->results[0] = '\0';
  for (int i = -nres; i < 0; i++) {
    size_t len = strlen(o->results);
    const char *s = lua_type(co, i) == LUA_TBOOLEAN
                        ? (lua_toboolean(co, i) ? "true" : "false")
                        : lua_tostring(co, i);
    snprintf(o->results + len, sizeof(o->results) - len, "%s%s",
             len > 0 ? "|" : "", s != NULL ? s : "?");
  }
}

/* Spawns src as a method in a fresh sandbox, with nargs arguments already
 * on the stack. */
static int spawn_method(fixture_t *f, const char *name, const char *src,
                        int nargs, outcome_t *o) {
  process_opts_t opts;
  int env = new_env(f, SANDBOX), number;
  memset(o, 0, sizeof(*o));
  load_in(f, env, src);
  drop_env(f, env); /* the function holds it */
  lua_insert(f->L, -(nargs + 1));
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_METHOD;
  opts.name = name;
  opts.on_done = on_done;
  opts.data = o;
  number = process_spawn(f->L, nargs, &opts);
  assert_true(number > 0);
  return number;
}

static void run_until_finished(fixture_t *f, int want) {
  f->expired = 0;
  uv_timer_start(&f->guard, on_guard, (uint64_t)(GUARD_SECONDS * 1000), 0);
  while (finished < want && !f->expired)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_timer_stop(&f->guard);
  if (f->expired)
    fail_msg("processes still running after %g s", GUARD_SECONDS);
}

static void a_process_s_own_coroutine_cannot_be_resumed(void **state) {
  fixture_t *f = *state;
  outcome_t a, b;
  process_t *pa;
  int na;
  settle(f);
  lua_newtable(f->L); /* shared by the two methods, from C */
  lua_pushvalue(f->L, -1);
  na = spawn_method(f, "keeper",
                    "local shared = ...\n"
                    "shared.co = coroutine.running()\n"
                    "delay_process(10)",
                    1, &a);
  pa = process_find(na);
  assert_non_null(pa);
  assert_int_equal(pa->state, PROCESS_DELAYED);
  lua_pushvalue(f->L, -1);
  spawn_method(f, "thief",
               "local shared = ...\n"
               "local r1, e1 = pcall(coroutine.resume, shared.co)\n"
               "local r2, e2 = pcall(coroutine.close, shared.co)\n"
               "return r1, e1, r2, e2, coroutine.status(shared.co)",
               1, &b);
  run_until_finished(f, 1);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.status, LUA_OK);
  assert_string_equal(
      b.results,
      "false|cannot resume or close a process's own coroutine|"
      "false|cannot resume or close a process's own coroutine|suspended");
  /* The keeper is still asleep, untouched. */
  assert_ptr_equal(process_find(na), pa);
  assert_int_equal(pa->state, PROCESS_DELAYED);
  assert_int_equal(a.calls, 0);
  process_kill(pa, "done");
  assert_int_equal(a.calls, 1);
  lua_pop(f->L, 1);
}

/* The sandbox's xpcall and coroutine.wrap are the scheduler's guarded
 * ones (process_init ran before vm_seal): a method stopped where it
 * cannot yield runs none of its handlers. */
static void the_sandbox_has_the_guarded_xpcall(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  int64_t t0;
  settle(f);
  lua_newtable(f->L);
  lua_pushvalue(f->L, -1);
  t0 = clock_mono_ns();
  spawn_method(f, "stuck",
               "local seen = ...\n"
               "coroutine.wrap(function()\n"
               "  while true do\n"
               "    xpcall(function() while true do end end,\n"
               "           function(e) seen.handler = true return e end)\n"
               "  end\n"
               "end)()",
               1, &o);
  run_until_finished(f, 1);
  assert_int_equal(o.calls, 1);
  assert_int_equal(o.status, LUA_ERRRUN);
  if (strstr(o.err, "method stuck: held the server for more than 0.2 s") ==
      NULL)
    fail_msg("unexpected end: %s", o.err);
  assert_true((double)(clock_mono_ns() - t0) / 1e9 >= MAX_BLOCKING);
  assert_true((double)(clock_mono_ns() - t0) / 1e9 < 1.5);
  assert_int_equal(lua_getfield(f->L, -1, "handler"), LUA_TNIL);
  lua_pop(f->L, 2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(the_sandbox_hides_what_reaches_the_system),
      T(the_sandbox_keeps_the_safe_libraries),
      T(load_takes_text_only_in_a_fresh_sandbox),
      T(the_libraries_are_read_only),
      T(rawset_refuses_the_shared_tables),
      T(a_sandbox_s_globals_are_its_own),
      T(frozen_libraries_still_list_their_names),
      T(finalizers_are_refused),
      T(the_string_metatable_is_hidden),
      T(the_full_environment_has_io_and_debug),
      T(the_full_environment_s_libraries_are_frozen),
      T(the_real_globals_are_read_only),
      T(the_full_environment_s_package_library_is_frozen),
      T(a_process_s_own_coroutine_cannot_be_resumed),
      T(the_sandbox_has_the_guarded_xpcall),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
