/*
 * Unit tests for runtime/process.c, the process hook and scheduler: a
 * process returns its results or its error to on_done, exactly once; a
 * spinning process yields its slices (a timer on the same loop keeps
 * ticking, and two spinners share the loop); a timeout ends it, and pcall,
 * xpcall or a nested coroutine cannot catch that; code that cannot yield (a
 * table.sort comparator, a string.gsub function, a nested coroutine) is
 * ended after max_blocking, and no pcall or xpcall handler inside it goes
 * on; delay_process suspends one process only, and its time is not run
 * time; process_kill ends a delayed, a queued or the running process, and
 * a killed process's __close handlers stop at once; process_shutdown ends
 * what is left; and the loop closes cleanly after every test.
 *
 * Each test has a loop and a Lua state of its own (vm_new, herald_open for
 * delay_process and print, process_init), like `herald run --local`.
 * Bounds on time are generous, so that a loaded machine passes: a test
 * asserts that the loop ticked a few times, not how often.
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
/* A test that has not seen its processes end by then has failed. */
#define GUARD_SECONDS 2.0

/* What on_done saw of one process. */
typedef struct outcome {
  int calls;       /* on_done calls: must end at exactly 1 */
  int status;
  int nres;
  char err[1024];
  char first[256]; /* the first result, as text */
  char printed[256];
  int64_t started_ns, ended_ns;
  int calls_at_kill; /* on_done calls when kill_me ran (-1: never) */
} outcome_t;

typedef struct fixture {
  uv_loop_t loop;
  vm_t *vm;
  lua_State *L;
  uv_timer_t settle, guard, ticker;
  int expired; /* the guard fired */
  int ticks;
  void (*on_tick)(struct fixture *f);
  int target[2];      /* process numbers the tick callback acts on */
  int64_t cpu[2][2];  /* cpu_ns of target[i] at two ticks */
  int measured_at;    /* the tick of the first measure, or 0 */
  int shut;           /* process_shutdown already called by the test */
} fixture_t;

static int finished; /* on_done calls of the current test, all processes */
static char logged[4096];

static void capture_log(const char *line, void *data) {
  (void)data;
  snprintf(logged + strlen(logged), sizeof(logged) - strlen(logged),
           "%s\n", line);
}

static double seconds_between(int64_t from_ns, int64_t to_ns) {
  return (double)(to_ns - from_ns) / 1e9;
}

static void on_done(process_t *p, int status, lua_State *co, int nres,
                    const char *err, void *data) {
  outcome_t *o = data;
  (void)p;
  finished++;
  o->calls++;
  o->status = status;
  o->nres = nres;
  o->ended_ns = clock_mono_ns();
  snprintf(o->err, sizeof(o->err), "%s", err != NULL ? err : "");
  if (status == LUA_OK && nres > 0) {
    int t = lua_type(co, -nres);
    if (t == LUA_TSTRING || t == LUA_TNUMBER)
      snprintf(o->first, sizeof(o->first), "%s", lua_tostring(co, -nres));
    else if (t == LUA_TBOOLEAN)
      snprintf(o->first, sizeof(o->first), "%s",
               lua_toboolean(co, -nres) ? "true" : "false");
    else
      snprintf(o->first, sizeof(o->first), "(%s)", lua_typename(co, t));
  }
}

static void on_print(process_t *p, const char *text, size_t len,
                     void *data) {
  outcome_t *o = data;
  (void)p;
  snprintf(o->printed, sizeof(o->printed), "%.*s", (int)len, text);
}

/* kill_me(why): the running process kills itself, then goes on. */
static int l_kill_me(lua_State *L) {
  process_t *p = process_running();
  outcome_t *o;
  if (p == NULL)
    return luaL_error(L, "kill_me: no process");
  o = p->opts.data;
  o->calls_at_kill = o->calls;
  process_kill(p, luaL_checkstring(L, 1));
  return 0;
}

static void noop_timer(uv_timer_t *t) { (void)t; }

static void on_guard(uv_timer_t *t) {
  fixture_t *f = t->data;
  f->expired = 1;
  uv_stop(&f->loop);
}

static void on_ticker(uv_timer_t *t) {
  fixture_t *f = t->data;
  f->ticks++;
  if (f->on_tick != NULL)
    f->on_tick(f);
}

/* One turn of the loop up to its poll: whatever held the loop in the
 * test's own code before is over (the hook measures max_blocking from the
 * last return to polling). */
static void settle(fixture_t *f) {
  uv_timer_start(&f->settle, noop_timer, 0, 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Runs the loop until `finished` reaches want, for GUARD_SECONDS at most. */
static void run_until_finished(fixture_t *f, int want) {
  f->expired = 0;
  uv_timer_start(&f->guard, on_guard, (uint64_t)(GUARD_SECONDS * 1000), 0);
  while (finished < want && !f->expired)
    uv_run(&f->loop, UV_RUN_ONCE);
  uv_timer_stop(&f->guard);
  if (f->expired)
    fail_msg("processes still running after %g s (%d of %d ended)",
             GUARD_SECONDS, finished, want);
}

static void start_ticker(fixture_t *f, void (*fn)(fixture_t *)) {
  f->ticks = 0;
  f->on_tick = fn;
  uv_timer_start(&f->ticker, on_ticker, 1, 1);
}

static void stop_ticker(fixture_t *f) {
  uv_timer_stop(&f->ticker);
  f->on_tick = NULL;
}

/* Spawns src as a process of type script (on_done and on_print fill o);
 * checks that the stack is left as it was. */
static int spawn_args(fixture_t *f, const char *name, const char *src,
                      double timeout, outcome_t *o, int nargs) {
  process_opts_t opts;
  char chunkname[64];
  int top, number;

  memset(o, 0, sizeof(*o));
  o->calls_at_kill = -1;
  snprintf(chunkname, sizeof(chunkname), "=%s", name);
  if (vm_load_source(f->L, src, strlen(src), chunkname) != LUA_OK)
    fail_msg("%s does not load: %s", name, lua_tostring(f->L, -1));
  lua_insert(f->L, -(nargs + 1)); /* the function below its arguments */
  top = lua_gettop(f->L) - nargs - 1;
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_EVAL;
  opts.name = name;
  opts.timeout = timeout;
  opts.on_done = on_done;
  opts.on_print = on_print;
  opts.data = o;
  o->started_ns = clock_mono_ns();
  number = process_spawn(f->L, nargs, &opts);
  assert_true(number > 0);
  assert_int_equal(lua_gettop(f->L), top);
  return number;
}

static int spawn(fixture_t *f, const char *name, const char *src,
                 double timeout, outcome_t *o) {
  return spawn_args(f, name, src, timeout, o, 0);
}

static void assert_contains(const char *text, const char *part) {
  if (strstr(text, part) == NULL)
    fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

static void assert_ended_once(const outcome_t *o, int status) {
  assert_int_equal(o->calls, 1);
  assert_int_equal(o->status, status);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  char err[256];
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->vm = vm_new(0, err, sizeof(err));
  assert_non_null(f->vm);
  f->L = vm_state(f->vm);
  herald_open(f->L, NULL); /* delay_process, print */
  lua_register(f->L, "kill_me", l_kill_me);
  process_init(&f->loop, f->L);
  process_set_limits(MAX_BLOCKING);
  uv_timer_init(&f->loop, &f->settle);
  uv_timer_init(&f->loop, &f->guard);
  uv_timer_init(&f->loop, &f->ticker);
  f->settle.data = f->guard.data = f->ticker.data = f;
  finished = 0;
  logged[0] = '\0';
  log_set_writer(capture_log, NULL);
  settle(f);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (!f->shut)
    process_shutdown();
  assert_int_equal(process_count(), 0);
  uv_close((uv_handle_t *)&f->settle, NULL);
  uv_close((uv_handle_t *)&f->guard, NULL);
  uv_close((uv_handle_t *)&f->ticker, NULL);
  uv_run(&f->loop, UV_RUN_DEFAULT); /* the close callbacks */
  vm_free(f->vm);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  log_set_writer(NULL, NULL);
  free(f);
  return 0;
}

/* ---- ending ---------------------------------------------------------- */

static void a_process_returns_its_results(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  int n = spawn(f, "sum", "print('hello', 42) return 1 + 2, 'three'", 0,
                &o);
  /* Short code runs at once, inside process_spawn. */
  assert_ended_once(&o, LUA_OK);
  assert_int_equal(o.nres, 2);
  assert_string_equal(o.first, "3");
  assert_string_equal(o.printed, "hello\t42");
  assert_string_equal(o.err, "");
  assert_null(process_find(n));
  assert_int_equal(process_count(), 0);
}

static void an_error_ends_it_with_message_and_traceback(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  spawn(f, "boom", "local x = 1\nerror('boom ' .. x)", 0, &o);
  assert_ended_once(&o, LUA_ERRRUN);
  assert_contains(o.err, "boom:2: boom 1");
  assert_contains(o.err, "stack traceback");
  assert_int_equal(process_count(), 0);
}

static void process_numbers_are_never_reused(void **state) {
  fixture_t *f = *state;
  outcome_t a, b, c;
  int na, nb, nc;
  na = spawn(f, "a", "delay_process(10)", 0, &a);
  settle(f);
  nb = spawn(f, "b", "return 'b'", 0, &b);
  assert_ended_once(&b, LUA_OK);
  assert_true(nb > na);
  assert_int_equal(process_count(), 1);
  assert_ptr_equal(process_at(0), process_find(na));
  assert_null(process_at(1));
  settle(f);
  nc = spawn(f, "c", "return 'c'", 0, &c); /* reuses b's coroutine */
  assert_ended_once(&c, LUA_OK);
  assert_true(nc > nb);
  assert_string_equal(b.first, "b");
  assert_string_equal(c.first, "c");
  process_kill(process_find(na), "killed");
  assert_ended_once(&a, LUA_ERRRUN);
  assert_int_equal(process_count(), 0);
}

/* ---- slices and timeouts --------------------------------------------- */

/* After 5 ticks of a 1 ms timer, kill target 0 (it is queued for its next
 * slice: the timer could only fire because the process yielded). */
static void kill_at_tick_5(fixture_t *f) {
  process_t *p = process_find(f->target[0]);
  if (f->ticks == 5 && p != NULL)
    process_kill(p, "killed by the ticker");
}

static void a_spinning_process_yields_its_slices(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  uint64_t turns = process_loop_turn();
  process_t *p;

  settle(f);
  f->target[0] = spawn(f, "spin", "while true do end", 5, &o);
  p = process_find(f->target[0]);
  assert_non_null(p); /* it used its first slice and waits for the next */
  assert_int_equal(p->state, PROCESS_EXECUTING);
  assert_true(p->cpu_ns > 0);
  start_ticker(f, kill_at_tick_5);
  run_until_finished(f, 1);
  stop_ticker(f);
  assert_ended_once(&o, LUA_ERRRUN);
  assert_string_equal(o.err, "killed by the ticker");
  assert_true(f->ticks >= 5);
  assert_true(process_loop_turn() >= turns + 5);
  assert_true(seconds_between(o.started_ns, o.ended_ns) < 1.5);
  assert_int_equal(process_count(), 0);
}

/* Two spinners: once both have run, each runs again within the next 4
 * ticks (a turn gives a slice to one of them at least, in turn). */
static void measure_both(fixture_t *f) {
  process_t *p[2] = {process_find(f->target[0]),
                     process_find(f->target[1])};
  int at;
  if (p[0] == NULL || p[1] == NULL)
    return;
  if (f->measured_at == 0 && p[0]->cpu_ns > 0 && p[1]->cpu_ns > 0)
    at = 0, f->measured_at = f->ticks;
  else if (f->measured_at != 0 && f->ticks == f->measured_at + 4)
    at = 1;
  else
    return;
  for (int i = 0; i < 2; i++) {
    f->cpu[i][at] = p[i]->cpu_ns;
    if (at == 1)
      process_kill(p[i], "enough");
  }
}

static void two_spinners_share_the_loop(void **state) {
  fixture_t *f = *state;
  outcome_t a, b;
  settle(f);
  f->target[0] = spawn(f, "spin1", "while true do end", 5, &a);
  f->target[1] = spawn(f, "spin2", "local n = 0 while true do n = n + 1 end",
                       5, &b);
  start_ticker(f, measure_both);
  run_until_finished(f, 2);
  stop_ticker(f);
  for (int i = 0; i < 2; i++) {
    assert_true(f->cpu[i][0] > 0);
    assert_true(f->cpu[i][1] > f->cpu[i][0]);
  }
  assert_ended_once(&a, LUA_ERRRUN);
  assert_ended_once(&b, LUA_ERRRUN);
  assert_string_equal(a.err, "enough");
  assert_string_equal(b.err, "enough");
}

static void a_spinning_process_times_out(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  double took;
  settle(f);
  spawn(f, "spin", "while true do end", 0.1, &o);
  start_ticker(f, NULL);
  run_until_finished(f, 1);
  stop_ticker(f);
  assert_ended_once(&o, LUA_ERRRUN);
  assert_string_equal(o.err, "script spin: timed out after 0.1 s");
  took = seconds_between(o.started_ns, o.ended_ns);
  assert_true(took >= 0.1);
  assert_true(took < 1.5);
  /* The loop was not held: the timer fired between the slices. */
  assert_true(f->ticks >= 2);
  assert_int_equal(process_count(), 0);
}

static void pcall_and_xpcall_cannot_catch_the_timeout(void **state) {
  fixture_t *f = *state;
  outcome_t a, b, c;
  settle(f);
  spawn(f, "pcalls",
        "while true do pcall(function() while true do end end) end", 0.1,
        &a);
  spawn(f, "xpcalls",
        "while true do\n"
        "  xpcall(function() while true do end end,\n"
        "         function(e) handled = (handled or 0) + 1 return e end)\n"
        "end",
        0.1, &b);
  spawn(f, "errors", "while true do pcall(error, 'again') end", 0.1, &c);
  start_ticker(f, NULL);
  run_until_finished(f, 3);
  stop_ticker(f);
  assert_ended_once(&a, LUA_ERRRUN);
  assert_ended_once(&b, LUA_ERRRUN);
  assert_ended_once(&c, LUA_ERRRUN);
  assert_string_equal(a.err, "script pcalls: timed out after 0.1 s");
  assert_string_equal(b.err, "script xpcalls: timed out after 0.1 s");
  assert_string_equal(c.err, "script errors: timed out after 0.1 s");
  assert_int_equal(lua_getglobal(f->L, "handled"), LUA_TNIL);
  lua_pop(f->L, 1);
  assert_true(f->ticks >= 2);
}

/* A nested coroutine cannot yield the process: it holds the loop until
 * the timeout (shorter than max_blocking here) ends it from inside. */
static void a_nested_coroutine_times_out_too(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  double took;
  settle(f);
  spawn(f, "nested",
        "coroutine.wrap(function()\n"
        "  while true do pcall(function() while true do end end) end\n"
        "end)()",
        0.1, &o);
  run_until_finished(f, 1);
  assert_ended_once(&o, LUA_ERRRUN);
  assert_string_equal(o.err, "script nested: timed out after 0.1 s");
  took = seconds_between(o.started_ns, o.ended_ns);
  assert_true(took >= 0.1);
  assert_true(took < 1.5);
}

static void delayed_time_is_not_run_time(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  /* The loop after the delay runs the hook: the 0.12 s asleep would
   * have passed the 0.08 s timeout. */
  spawn(f, "sleeper",
        "delay_process(0.12) for i = 1, 100000 do end return 'awake'", 0.08,
        &o);
  run_until_finished(f, 1);
  assert_ended_once(&o, LUA_OK);
  assert_string_equal(o.first, "awake");
  assert_true(seconds_between(o.started_ns, o.ended_ns) >= 0.1);
}

/* ---- code that cannot yield ---------------------------------------- */

static const char held[] =
    "held the server for more than 0.2 s where it could not yield";

/* Runs src (no timeout) and checks that max_blocking ended it. */
static void check_ended_after_max_blocking(fixture_t *f, const char *name,
                                           const char *src) {
  outcome_t o;
  char want[256];
  double took;
  int want_finished = finished + 1;
  settle(f);
  spawn(f, name, src, 0, &o);
  run_until_finished(f, want_finished);
  assert_ended_once(&o, LUA_ERRRUN);
  snprintf(want, sizeof(want), "script %s: %s", name, held);
  assert_contains(o.err, want);
  took = seconds_between(o.started_ns, o.ended_ns);
  assert_true(took >= MAX_BLOCKING);
  assert_true(took < 1.5);
  assert_int_equal(process_count(), 0);
}

static void a_sort_comparator_is_ended_after_max_blocking(void **state) {
  check_ended_after_max_blocking(
      *state, "sort",
      "local t = {} for i = 1, 100 do t[i] = i end\n"
      "table.sort(t, function(a, b) while true do end end)");
}

static void a_gsub_function_is_ended_after_max_blocking(void **state) {
  check_ended_after_max_blocking(
      *state, "gsub",
      "return (('x'):rep(10):gsub('.', function() while true do end end))");
}

static void a_nested_coroutine_is_ended_after_max_blocking(void **state) {
  check_ended_after_max_blocking(
      *state, "nested", "coroutine.wrap(function() while true do end end)()");
}

static void no_pcall_loop_goes_on_where_it_cannot_yield(void **state) {
  check_ended_after_max_blocking(
      *state, "pcalls",
      "table.sort({3, 2, 1}, function(a, b)\n"
      "  while true do pcall(function() while true do end end) end\n"
      "end)");
}

static void no_xpcall_handler_runs_for_a_stopped_script(void **state) {
  fixture_t *f = *state;
  check_ended_after_max_blocking(
      f, "xpcalls",
      "table.sort({3, 2, 1}, function(a, b)\n"
      "  while true do\n"
      "    xpcall(function() while true do end end,\n"
      "           function(e) handled = true return e end)\n"
      "  end\n"
      "end)");
  assert_int_equal(lua_getglobal(f->L, "handled"), LUA_TNIL);
  lua_pop(f->L, 1);
}

/* ---- delay_process and process_kill --------------------------------- */

static void delay_process_suspends_only_its_process(void **state) {
  fixture_t *f = *state;
  outcome_t a, b;
  int na = spawn(f, "sleeper", "delay_process(0.1) return 'awake'", 0, &a);
  process_t *p = process_find(na);
  assert_non_null(p);
  assert_int_equal(p->state, PROCESS_DELAYED);
  assert_int_equal(a.calls, 0);
  spawn(f, "quick", "return 'quick'", 0, &b);
  run_until_finished(f, 1);
  assert_ended_once(&b, LUA_OK); /* while a sleeps */
  assert_int_equal(a.calls, 0);
  run_until_finished(f, 2);
  assert_ended_once(&a, LUA_OK);
  assert_string_equal(a.first, "awake");
  assert_true(seconds_between(a.started_ns, a.ended_ns) >= 0.09);
  assert_true(a.ended_ns > b.ended_ns);
}

static void delay_process_refuses_a_nested_coroutine(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  spawn(f, "nested",
        "coroutine.wrap(function() delay_process(0.01) end)()", 0, &o);
  run_until_finished(f, 1);
  assert_ended_once(&o, LUA_ERRRUN);
  assert_contains(o.err, "delay_process: only a process's own code can be "
                         "delayed");
}

static void process_kill_ends_a_delayed_process(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  int64_t t0;
  int n = spawn(f, "sleeper", "delay_process(10) return 'awake'", 0, &o);
  process_t *p = process_find(n);
  assert_non_null(p);
  assert_int_equal(p->state, PROCESS_DELAYED);
  process_kill(p, "killed by the test");
  /* Not running: ended at once. */
  assert_ended_once(&o, LUA_ERRRUN);
  assert_string_equal(o.err, "killed by the test");
  assert_null(process_find(n));
  assert_int_equal(process_count(), 0);
  /* Its 10 s timer no longer holds the loop. */
  t0 = clock_mono_ns();
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_true(seconds_between(t0, clock_mono_ns()) < 1.0);
  assert_int_equal(o.calls, 1);
}

static void process_kill_ends_the_running_process(void **state) {
  fixture_t *f = *state;
  outcome_t a, b;
  settle(f);
  spawn(f, "self", "kill_me('killed itself') while true do end", 0, &a);
  spawn(f, "selfsort",
        "table.sort({3, 2, 1}, function(x, y)\n"
        "  kill_me('killed itself in sort')\n"
        "  while true do pcall(function() while true do end end) end\n"
        "end)",
        0, &b);
  run_until_finished(f, 2);
  /* on_done waited for the process to reach its next chance. */
  assert_int_equal(a.calls_at_kill, 0);
  assert_int_equal(b.calls_at_kill, 0);
  assert_ended_once(&a, LUA_ERRRUN);
  assert_ended_once(&b, LUA_ERRRUN);
  assert_string_equal(a.err, "killed itself");
  /* Not max_blocking's message: the kill ended it. */
  assert_string_equal(b.err, "killed itself in sort");
}

/* A killed process's pending __close handlers run as code of a killed
 * process: "each ends at its first instruction, so none can hold the
 * loop" (reset_thread). */
static void a_killed_process_s_close_handlers_stop_at_once(void **state) {
  fixture_t *f = *state;
  outcome_t o;
  int64_t t0;
  int n;
  lua_newtable(f->L); /* what the handlers did, seen from C */
  lua_pushvalue(f->L, -1);
  n = spawn_args(
      f, "closer",
      "local seen = ...\n"
      "local a <close> = setmetatable({}, {__close = function()\n"
      "  while true do end end})\n"
      "local b <close> = setmetatable({}, {__close = function()\n"
      "  seen.b = true while true do end end})\n"
      "delay_process(10)",
      0, &o, 1);
  assert_non_null(process_find(n));
  t0 = clock_mono_ns();
  process_kill(process_find(n), "killed with pending __close");
  assert_true(seconds_between(t0, clock_mono_ns()) < 1.0);
  assert_ended_once(&o, LUA_ERRRUN);
  assert_string_equal(o.err, "killed with pending __close");
  uv_run(&f->loop, UV_RUN_DEFAULT);
  /* The handler's first statement never ran. */
  lua_getfield(f->L, -1, "b");
  if (!lua_isnil(f->L, -1))
    fail_msg("a __close handler of a killed process ran its first "
             "statement (seen.b = true) instead of ending at its first "
             "instruction");
  lua_pop(f->L, 2);
}

/* ---- many processes, and the end ------------------------------------ */

static void on_done_is_called_once_per_process(void **state) {
  fixture_t *f = *state;
  enum { N = 40 };
  outcome_t o[N];
  int numbers[N];
  char name[16];
  static const char *const kinds[] = {
      "return 1",
      "error('no')",
      "delay_process(0.01) return 2",
      "while true do end", /* timeout */
      "delay_process(10)", /* killed below */
  };
  settle(f);
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof(name), "p%d", i);
    numbers[i] = spawn(f, name, kinds[i % 5], 0.01, &o[i]);
    if (i > 0)
      assert_true(numbers[i] > numbers[i - 1]);
  }
  for (int i = 4; i < N; i += 5) {
    process_t *p = process_find(numbers[i]);
    assert_non_null(p);
    process_kill(p, "killed");
  }
  run_until_finished(f, N);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  for (int i = 0; i < N; i++) {
    assert_int_equal(o[i].calls, 1);
    assert_int_equal(o[i].status, i % 5 == 0 || i % 5 == 2 ? LUA_OK
                                                           : LUA_ERRRUN);
  }
  assert_int_equal(finished, N);
  assert_int_equal(process_count(), 0);
}

static void process_shutdown_ends_what_is_left(void **state) {
  fixture_t *f = *state;
  outcome_t a, b, c;
  spawn(f, "done", "return 1", 0, &c);
  assert_ended_once(&c, LUA_OK);
  spawn(f, "sleeper", "delay_process(10)", 0, &a); /* delayed or queued */
  spawn(f, "spinner", "while true do end", 0, &b); /* queued */
  assert_int_equal(process_count(), 2);
  process_shutdown();
  f->shut = 1;
  assert_int_equal(process_count(), 0);
  /* The processes were detached first: their results go nowhere, and
   * on_done is never called twice. */
  assert_true(a.calls <= 1);
  assert_true(b.calls <= 1);
  assert_int_equal(c.calls, 1);
  /* The sleeper's timer and the scheduler's handles are closing: the loop
   * ends at once (teardown closes it and checks uv_loop_close). */
  {
    int64_t t0 = clock_mono_ns();
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(seconds_between(t0, clock_mono_ns()) < 1.0);
  }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(a_process_returns_its_results),
      T(an_error_ends_it_with_message_and_traceback),
      T(process_numbers_are_never_reused),
      T(a_spinning_process_yields_its_slices),
      T(two_spinners_share_the_loop),
      T(a_spinning_process_times_out),
      T(pcall_and_xpcall_cannot_catch_the_timeout),
      T(a_nested_coroutine_times_out_too),
      T(delayed_time_is_not_run_time),
      T(a_sort_comparator_is_ended_after_max_blocking),
      T(a_gsub_function_is_ended_after_max_blocking),
      T(a_nested_coroutine_is_ended_after_max_blocking),
      T(no_pcall_loop_goes_on_where_it_cannot_yield),
      T(no_xpcall_handler_runs_for_a_stopped_script),
      T(delay_process_suspends_only_its_process),
      T(delay_process_refuses_a_nested_coroutine),
      T(process_kill_ends_a_delayed_process),
      T(process_kill_ends_the_running_process),
      T(a_killed_process_s_close_handlers_stop_at_once),
      T(on_done_is_called_once_per_process),
      T(process_shutdown_ends_what_is_left),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
