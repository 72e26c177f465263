#include "process.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "vm.h"

/* How often the hook looks at the clock, and how long a process may run
 * before it lets the loop serve the network. */
#define HOOK_INSTRUCTIONS 1000
#define SLICE_NS (10 * 1000000LL)
/* How long one turn of the loop runs processes before it serves the
 * network again; those still ready wait for the next turn, in order. */
#define TURN_BUDGET_NS (20 * 1000000LL)
/* Finished coroutines kept for the next processes: a call to a small
 * method costs less when its coroutine need not be made and collected. */
#define SPARE_THREADS 64

static struct {
  uv_loop_t *loop;
  lua_State *L;
  uv_idle_t idle; /* active while processes wait for their next slice */
  process_t **all;
  size_t count, cap;
  process_t *ready_head, *ready_tail;
  process_t *running;
  int next_number;
  int spare[SPARE_THREADS]; /* registry refs of reset coroutines */
  int nspare;
  /* The loop is held by Lua since this time (0: it is back to polling),
   * and how long it may be without a chance to serve the network. */
  uv_prepare_t before_poll;
  uint64_t turns; /* the loop's waits for the network so far */
  int64_t busy_since_ns, max_blocking_ns;
  int runaway; /* Lua outside any process is being stopped */
} sched = {.max_blocking_ns = 500 * 1000000LL};

/* Set from a signal handler: every Lua code is to stop now. */
static volatile sig_atomic_t stop_requested;

static void step(process_t *p, int64_t now_ns);

/* How messages name a process: "method whoami", "job sweep.lua". */
static const char *type_label(const process_t *p) {
  switch (p->type) {
  case PROCESS_METHOD:
    return "method";
  case PROCESS_JOB:
    return "job";
  default:
    return "script";
  }
}

process_t *process_running(void) { return sched.running; }

size_t process_count(void) { return sched.count; }

process_t *process_at(size_t i) { return i < sched.count ? sched.all[i] : NULL; }

process_t *process_find(int number) {
  for (size_t i = 0; i < sched.count; i++)
    if (sched.all[i]->number == number)
      return sched.all[i];
  return NULL;
}

/* Written on the loop only; the watchdog's thread reads it. */
static void set_busy_since(int64_t ns) {
  __atomic_store_n(&sched.busy_since_ns, ns, __ATOMIC_RELAXED);
}

int64_t process_busy_since(void) {
  return __atomic_load_n(&sched.busy_since_ns, __ATOMIC_RELAXED);
}

/* How long the loop has been held by Lua in this turn. */
static int64_t busy_for(int64_t now) {
  return sched.busy_since_ns != 0 ? now - sched.busy_since_ns : 0;
}

static void on_idle(uv_idle_t *h) {
  /* A slice for each process that was ready when this turn began, while
   * the turn's budget lasts (one at least); the others keep their place
   * for the next turn, after the network. */
  process_t *last = sched.ready_tail;
  int ran = 0;
  (void)h;
  while (sched.ready_head != NULL &&
         (!ran || busy_for(clock_mono_ns()) < TURN_BUDGET_NS)) {
    process_t *p = sched.ready_head;
    int was_last = p == last;
    sched.ready_head = p->next_ready;
    if (sched.ready_head == NULL)
      sched.ready_tail = NULL;
    p->next_ready = NULL;
    p->queued = 0;
    step(p, clock_mono_ns());
    ran = 1;
    if (was_last)
      break;
  }
  if (sched.ready_head == NULL)
    uv_idle_stop(&sched.idle);
}

static void make_ready(process_t *p) {
  p->queued = 1;
  p->next_ready = NULL;
  if (sched.ready_tail != NULL)
    sched.ready_tail->next_ready = p;
  else
    sched.ready_head = p;
  sched.ready_tail = p;
  uv_idle_start(&sched.idle, on_idle);
}

static void unqueue(process_t *p) {
  process_t **pp = &sched.ready_head, *prev = NULL;
  while (*pp != NULL && *pp != p) {
    prev = *pp;
    pp = &(*pp)->next_ready;
  }
  if (*pp == NULL)
    return;
  *pp = p->next_ready;
  if (sched.ready_tail == p)
    sched.ready_tail = prev;
  p->queued = 0;
}

/* Runs p now while this turn's budget lasts, else queues it; now_ns: the
 * monotonic clock, just read. */
static void run_or_queue(process_t *p, int64_t now_ns) {
  if (busy_for(now_ns) < TURN_BUDGET_NS)
    step(p, now_ns);
  else
    make_ready(p);
}

/* The loop is about to wait for the network: nothing holds it now. */
static void on_before_poll(uv_prepare_t *h) {
  (void)h;
  set_busy_since(0);
  sched.runaway = 0;
  sched.turns++;
}

uint64_t process_loop_turn(void) { return sched.turns; }

static void hook(lua_State *L, lua_Debug *ar);
static void install_guards(lua_State *L);

/* src (NULL: "") into dst of size bytes, cut to fit; printf's "%s"
 * without printf's cost, on every process started. */
static void copy_text(char *dst, size_t size, const char *src) {
  size_t n = src != NULL ? strnlen(src, size - 1) : 0;
  memcpy(dst, src != NULL ? src : "", n);
  dst[n] = '\0';
}

void process_init(uv_loop_t *loop, lua_State *L) {
  sched.loop = loop;
  sched.L = L;
  sched.next_number = 1;
  uv_idle_init(loop, &sched.idle);
  uv_unref((uv_handle_t *)&sched.idle);
  uv_prepare_init(loop, &sched.before_poll);
  uv_prepare_start(&sched.before_poll, on_before_poll);
  uv_unref((uv_handle_t *)&sched.before_poll);
  /* On the main state too: every coroutine inherits it, and code the
   * server runs outside processes (a console's printer calling a
   * script's __tostring) is bounded like the rest. */
  lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
  install_guards(L);
}

void process_set_limits(double max_blocking) {
  sched.max_blocking_ns = (int64_t)(max_blocking * 1e9);
}

void process_request_stop(void) { stop_requested = 1; }

static void on_timer_closed(uv_handle_t *h) { free(h); }

/*
 * Resets p's coroutine for the next process. That runs the __close
 * handlers still pending in it (a process ended by an error or while
 * suspended) as code of a killed process: each ends at its first
 * instruction, so none can hold the loop.
 */
static int reset_thread(process_t *p) {
  process_t *outer = sched.running;
  int status;
  /* Said only if a __close handler runs (see hook): a reset costs no
   * formatting on every call. */
  if (!p->killed)
    p->kill_reason[0] = '\0';
  p->killed = 1;
  sched.running = p;
  /* The hook at every instruction: a pending __close handler ends at its
   * first one, not after the count the thread had left. */
  lua_sethook(p->co, hook, LUA_MASKCOUNT, 1);
  status = lua_resetthread(p->co);
  sched.running = outer;
  return status;
}

/* Calls on_done and releases everything the process holds. */
static void finish(process_t *p, int status, int nres, const char *err) {
  p->finished = 1;
  if (p->opts.on_done != NULL)
    p->opts.on_done(p, status, p->co, nres, err, p->opts.data);
  if (p->queued)
    unqueue(p);
  if (p->timer != NULL)
    uv_close((uv_handle_t *)p->timer, on_timer_closed);
  sched.all[p->index] = sched.all[--sched.count];
  sched.all[p->index]->index = p->index;
  if (sched.nspare < SPARE_THREADS && reset_thread(p) == LUA_OK)
    sched.spare[sched.nspare++] = p->co_ref;
  else
    luaL_unref(sched.L, LUA_REGISTRYINDEX, p->co_ref);
  vm_account_release(p->account);
  free(p);
  /* Its garbage is unreachable only now: give the memory back at once. */
  if (status == LUA_ERRMEM)
    vm_reclaim(sched.L);
}

/* --- bodies: where an error of the hook is caught --------------------
 *
 * Lua leaves hooks off in a thread after an error raised inside a hook,
 * until a pcall of that same thread catches it; message handlers run
 * before that, and a coroutine whose body raised is closed (its <close>
 * handlers run) by whoever closes it. So every thread a script runs in
 * has its function under a pcall of its own: a process's coroutine
 * (process_body), and each coroutine a script creates (nested_body). And
 * xpcall does not call a script's message handler for an error that is
 * stopping the script.
 */

/* Whether the code running now is being stopped. */
static int stopping(void) {
  process_t *p = sched.running;
  return stop_requested || (p != NULL ? p->killed : sched.runaway);
}

static int body_done(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  /* The message handler at 1 gives its place to the status. */
  lua_pushinteger(L, status == LUA_YIELD ? LUA_OK : status);
  lua_replace(L, 1);
  return lua_gettop(L);
}

/* A process's coroutine runs this over the function and its arguments:
 * returns the pcall status, then the results or the error with its
 * traceback. */
static int process_body(lua_State *L) {
  int n = lua_gettop(L) - 1;
  lua_pushcfunction(L, vm_msghandler);
  lua_insert(L, 1);
  return body_done(L, lua_pcallk(L, n, LUA_MULTRET, 1, 0, body_done), 0);
}

static int nested_done(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  if (status != LUA_OK && status != LUA_YIELD)
    return lua_error(L); /* on its way, hooks on again */
  return lua_gettop(L);
}

/* The body of a coroutine a script creates (its function: upvalue 1). */
static int nested_body(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  return nested_done(L, lua_pcallk(L, lua_gettop(L) - 1, LUA_MULTRET, 0,
                                   0, nested_done), 0);
}

/* coroutine.create and coroutine.wrap (the real one: upvalue 1) of the
 * function wrapped in nested_body. */
static int guarded_create(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_pushcclosure(L, nested_body, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

/* The message handler xpcall gets: the script's (upvalue 1), unless the
 * script is being stopped. */
static int guarded_handler(lua_State *L) {
  if (stopping())
    return 1; /* the error as it came */
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int xpcall_done(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  return lua_gettop(L);
}

/* xpcall (the real one: upvalue 1) with the handler guarded; it stays
 * yieldable. */
static int guarded_xpcall(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, guarded_handler, 1);
  lua_replace(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_callk(L, n, LUA_MULTRET, 0, xpcall_done);
  return xpcall_done(L, LUA_OK, 0);
}

/* Replaces t[name] (t at the top of the stack) with fn closed over the
 * original. */
static void wrap_field(lua_State *L, const char *name, lua_CFunction fn) {
  lua_getfield(L, -1, name);
  lua_pushcclosure(L, fn, 1);
  lua_setfield(L, -2, name);
}

static void install_guards(lua_State *L) {
  lua_pushglobaltable(L);
  wrap_field(L, "xpcall", guarded_xpcall);
  lua_getfield(L, -1, "coroutine");
  wrap_field(L, "create", guarded_create);
  wrap_field(L, "wrap", guarded_create);
  lua_pop(L, 2);
}

/* An error that escaped the body (only a memory error can). */
static void finish_error(process_t *p, int status) {
  const char *msg = lua_tostring(p->co, -1);
  finish(p, status, 0, msg != NULL ? msg : "not enough memory");
}

/* Marks p to be ended with the reason; the hook does the rest. */
static void condemn(process_t *p, const char *fmt, double seconds) {
  p->killed = 1;
  snprintf(p->kill_reason, sizeof(p->kill_reason), fmt, type_label(p),
           p->name, seconds);
}

/*
 * The count hook, on every thread. It yields the process's own coroutine
 * when its slice is used up. It ends a process that passed its timeout, or
 * that held the loop longer than max_blocking where it cannot yield (a
 * nested coroutine, a callback from C, a metamethod called by C, a __close
 * handler): then every thread it runs raises at every instruction, so no
 * pcall can catch the error and loop, until its frames unwind to where the
 * process can be ended. Lua that runs outside any process (the console's
 * printer calling a script's __tostring) is stopped the same way until the
 * loop is back to polling.
 */
static void hook(lua_State *L, lua_Debug *ar) {
  process_t *p = sched.running;
  int64_t now = clock_mono_ns();
  int own = p != NULL && L == p->co && lua_isyieldable(L);
  (void)ar;
  if (sched.busy_since_ns == 0)
    set_busy_since(now);
  if (p != NULL && !p->killed) {
    if (stop_requested) {
      condemn(p, "%s %s: the server is shutting down", 0);
    } else if (p->timeout_ns > 0 &&
               p->cpu_ns + (now - p->slice_start_ns) > p->timeout_ns) {
      condemn(p, "%s %s: timed out after %g s",
              (double)p->timeout_ns / 1e9);
    } else if (!own && busy_for(now) > sched.max_blocking_ns) {
      condemn(p, "%s %s: held the server for more than %g s where it "
                 "could not yield (a nested coroutine, a metamethod or a "
                 "function called from C)",
              (double)sched.max_blocking_ns / 1e9);
    }
  } else if (p == NULL && !sched.runaway &&
             (stop_requested || busy_for(now) > sched.max_blocking_ns)) {
    sched.runaway = 1;
    if (!stop_requested)
      log_warn("lua code outside any process held the server for more "
               "than %g s; stopping it", (double)sched.max_blocking_ns / 1e9);
  }
  if ((p != NULL && p->killed) || (p == NULL && sched.runaway)) {
    /* In a hook, lua_yield returns and Lua yields once the hook ends. */
    if (own) {
      lua_yield(L, 0);
      return;
    }
    lua_sethook(L, hook, LUA_MASKCOUNT, 1);
    if (p != NULL && p->kill_reason[0] == '\0')
      snprintf(p->kill_reason, sizeof(p->kill_reason), "%s %s: ended",
               type_label(p), p->name);
    luaL_error(L, "%s", p != NULL ? p->kill_reason
                                  : "stopped: held the server too long");
    return;
  }
  /* A thread left at every instruction by an earlier stop goes back to
   * the usual pace. */
  if (lua_gethookcount(L) != HOOK_INSTRUCTIONS)
    lua_sethook(L, hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
  if (own && now - p->slice_start_ns > SLICE_NS)
    lua_yield(L, 0);
}

/* Runs p until it ends, yields its slice or delays; its slice starts at
 * now_ns (the monotonic clock, just read: one read fewer per call). */
static void step(process_t *p, int64_t now_ns) {
  int status, nres = 0, nargs = p->nargs, enforcing;
  process_t *outer = sched.running; /* a process may start another */
  vm_account_t *account;
  int64_t end;

  if (p->killed) {
    finish(p, LUA_ERRRUN, 0, p->kill_reason);
    return;
  }
  p->nargs = 0;
  p->state = PROCESS_EXECUTING;
  p->slice_start_ns = now_ns;
  if (sched.busy_since_ns == 0)
    set_busy_since(p->slice_start_ns);
  sched.running = p;
  enforcing = vm_enforce_limit(sched.L, 1);
  account = vm_charge_to(sched.L, p->account);
  status = lua_resume(p->co, sched.L, nargs, &nres);
  vm_charge_to(sched.L, account);
  vm_enforce_limit(sched.L, enforcing);
  sched.running = outer;
  end = clock_mono_ns();
  p->cpu_ns += end - p->slice_start_ns;
  /* Only one call into C that never returns to Lua can hold a slice this
   * long (a pathological pattern match): no hook runs inside it. */
  if (end - p->slice_start_ns > sched.max_blocking_ns + SLICE_NS)
    log_warn("process %d (%s %s) held the server for %.2f s in one call "
             "into C", p->number, type_label(p), p->name,
             (double)(end - p->slice_start_ns) / 1e9);
  if (p->killed) {
    finish(p, LUA_ERRRUN, 0, p->kill_reason);
  } else if (status == LUA_YIELD) {
    lua_pop(p->co, nres);
    if (p->delaying)
      p->state = PROCESS_DELAYED;
    else
      make_ready(p);
  } else if (status == LUA_OK) {
    /* process_body's: the status first, then results or the error. */
    int body = (int)lua_tointeger(p->co, -nres);
    if (body == LUA_OK)
      finish(p, LUA_OK, nres - 1, NULL);
    else
      finish(p, body, 0, lua_tostring(p->co, -1));
  } else {
    finish_error(p, status);
  }
}

static int reserve_slot(void) {
  process_t **all;
  size_t cap;
  if (sched.count < sched.cap)
    return 0;
  cap = sched.cap ? sched.cap * 2 : 16;
  all = realloc(sched.all, cap * sizeof(*all));
  if (all == NULL)
    return -1;
  sched.all = all;
  sched.cap = cap;
  return 0;
}

int process_spawn(lua_State *L, int nargs, const process_opts_t *o) {
  process_t *p = calloc(1, sizeof(*p));
  int number;
  if (p == NULL || reserve_slot() < 0) {
    free(p);
    lua_pop(L, nargs + 1);
    return -1;
  }
  p->number = sched.next_number++;
  copy_text(p->name, sizeof(p->name), o->name);
  copy_text(p->session_id, sizeof(p->session_id), o->session_id);
  p->type = o->type;
  p->created_ms = clock_wall_ms();
  p->started_ns = clock_mono_ns();
  p->timeout_ns = (int64_t)(o->timeout * 1e9);
  p->opts = *o;
  p->opts.name = p->opts.session_id = NULL; /* copied above */
  p->account = o->account;
  if (sched.nspare > 0) {
    p->co_ref = sched.spare[--sched.nspare];
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->co_ref);
    p->co = lua_tothread(L, -1);
    lua_pop(L, 1);
  } else {
    p->co = lua_newthread(L);
    p->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    vm_mark_process_thread(p->co);
  }
  lua_sethook(p->co, hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
  /* lua_xmove does not grow the coroutine's stack by itself. */
  if (!lua_checkstack(p->co, nargs + 2 + LUA_MINSTACK)) {
    luaL_unref(L, LUA_REGISTRYINDEX, p->co_ref);
    free(p);
    lua_pop(L, nargs + 1);
    return -1;
  }
  vm_account_hold(p->account); /* not freed while the process runs */
  lua_pushcfunction(p->co, process_body);
  lua_xmove(L, p->co, nargs + 1);
  p->nargs = nargs + 1; /* the function is process_body's argument */
  p->index = sched.count;
  sched.all[sched.count++] = p;
  number = p->number;
  run_or_queue(p, p->started_ns); /* may end and free p */
  return number;
}

static void on_delay_done(uv_timer_t *t) {
  process_t *p = t->data;
  p->delaying = 0;
  run_or_queue(p, clock_mono_ns());
}

int process_lua_delay(lua_State *L) {
  process_t *p = sched.running;
  double seconds = luaL_checknumber(L, 1);
  if (p == NULL || L != p->co)
    return luaL_error(L, "delay_process: only a process's own code can be "
                         "delayed (not the main state or a coroutine)");
  if (!(seconds > 0))
    seconds = 0;
  if (seconds > 86400.0 * 365)
    seconds = 86400.0 * 365;
  if (p->timer == NULL) {
    p->timer = malloc(sizeof(*p->timer));
    if (p->timer == NULL)
      return luaL_error(L, "delay_process: out of memory");
    uv_timer_init(sched.loop, p->timer);
    p->timer->data = p;
  }
  p->delaying = 1;
  uv_timer_start(p->timer, on_delay_done, (uint64_t)(seconds * 1000 + 0.5),
                 0);
  return lua_yield(L, 0);
}

void process_kill(process_t *p, const char *why) {
  snprintf(p->kill_reason, sizeof(p->kill_reason), "%s", why);
  p->killed = 1;
  if (p == sched.running || p->queued)
    return; /* the hook, or the next slice, ends it */
  if (p->delaying) {
    uv_timer_stop(p->timer);
    p->delaying = 0;
  }
  finish(p, LUA_ERRRUN, 0, p->kill_reason);
}

void process_kill_session(const char *session_id, const char *why) {
  /* Backwards: finishing moves the last process into the hole. */
  for (size_t i = sched.count; i-- > 0;) {
    process_t *p = sched.all[i];
    if (i < sched.count && strcmp(p->session_id, session_id) == 0 &&
        !p->killed)
      process_kill(p, why);
  }
}

void process_detach(process_t *p) {
  p->opts.on_print = NULL;
  p->opts.on_done = NULL;
  p->opts.data = NULL;
}

void process_shutdown(void) {
  while (sched.count > 0) {
    process_t *p = sched.all[sched.count - 1];
    process_detach(p);
    p->queued = 0;
    process_kill(p, "server shutting down");
  }
  sched.ready_head = sched.ready_tail = NULL;
  uv_close((uv_handle_t *)&sched.idle, NULL);
  uv_close((uv_handle_t *)&sched.before_poll, NULL);
  while (sched.nspare > 0)
    luaL_unref(sched.L, LUA_REGISTRYINDEX, sched.spare[--sched.nspare]);
  free(sched.all);
  sched.all = NULL;
  sched.count = sched.cap = 0;
}

int process_lua_print(lua_State *L) {
  int n = lua_gettop(L);
  process_t *p = sched.running;
  luaL_Buffer b;
  const char *line;
  size_t len;

  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    luaL_tolstring(L, i, NULL);
    if (i > 1)
      luaL_addchar(&b, '\t');
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  line = lua_tolstring(L, -1, &len);
  if (p != NULL && p->opts.on_print != NULL) {
    p->opts.on_print(p, line, len, p->opts.data);
  } else if (p != NULL) {
    log_info("%s %s: %s", type_label(p), p->name, line);
  } else {
    fwrite(line, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
  }
  return 0;
}
