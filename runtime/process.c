#include "process.h"

#include <lauxlib.h>
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
} sched;

static void step(process_t *p);

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

static void on_idle(uv_idle_t *h) {
  /* One slice for each process that was ready when this turn began;
   * those that yield again wait for the next turn, after the network. */
  process_t *p = sched.ready_head, *last = sched.ready_tail;
  (void)h;
  sched.ready_head = sched.ready_tail = NULL;
  while (p != NULL) {
    process_t *next = p->next_ready;
    int was_last = p == last;
    p->next_ready = NULL;
    p->queued = 0;
    step(p);
    if (was_last)
      break;
    p = next;
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

void process_init(uv_loop_t *loop, lua_State *L) {
  sched.loop = loop;
  sched.L = L;
  sched.next_number = 1;
  uv_idle_init(loop, &sched.idle);
  uv_unref((uv_handle_t *)&sched.idle);
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

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
  if (sched.nspare < SPARE_THREADS && lua_resetthread(p->co) == LUA_OK)
    sched.spare[sched.nspare++] = p->co_ref;
  else
    luaL_unref(sched.L, LUA_REGISTRYINDEX, p->co_ref);
  free(p);
}

static void finish_error(process_t *p, int status) {
  lua_State *L = sched.L;
  const char *msg = lua_tostring(p->co, -1);
  if (msg == NULL)
    msg = lua_pushfstring(p->co, "(error object is a %s value)",
                          luaL_typename(p->co, -1));
  /* The coroutine's frames are still there: trace them. */
  luaL_traceback(L, p->co, msg, 0);
  finish(p, status, 0, lua_tostring(L, -1));
  lua_pop(L, 1);
}

/*
 * Hook on every process coroutine (and, by inheritance, on coroutines its
 * code creates). Only the process's own coroutine may yield to the loop:
 * yielding a nested coroutine would return early into the script's own
 * coroutine.resume. A killed process whose code cannot yield here gets an
 * error instead, again at every check, until its frames unwind to a point
 * where it can.
 */
static void hook(lua_State *L, lua_Debug *ar) {
  process_t *p = sched.running;
  int64_t now;
  (void)ar;
  if (p == NULL)
    return;
  now = clock_mono_ns();
  if (!p->killed && p->timeout_ns > 0 &&
      p->cpu_ns + (now - p->slice_start_ns) > p->timeout_ns) {
    p->killed = 1;
    snprintf(p->kill_reason, sizeof(p->kill_reason),
             "%s %s: timed out after %g s", type_label(p), p->name,
             (double)p->timeout_ns / 1e9);
  }
  if (p->killed) {
    /* In a hook, lua_yield returns and Lua yields once the hook ends. */
    if (L == p->co && lua_isyieldable(L)) {
      lua_yield(L, 0);
      return;
    }
    luaL_error(L, "%s", p->kill_reason);
  }
  if (L == p->co && now - p->slice_start_ns > SLICE_NS && lua_isyieldable(L))
    lua_yield(L, 0);
}

/* Runs p until it ends, yields its slice or delays. */
static void step(process_t *p) {
  int status, nres = 0, nargs = p->nargs, enforcing;
  process_t *outer = sched.running; /* a process may start another */
  int64_t end;

  if (p->killed) {
    finish(p, LUA_ERRRUN, 0, p->kill_reason);
    return;
  }
  p->nargs = 0;
  p->state = PROCESS_EXECUTING;
  p->slice_start_ns = clock_mono_ns();
  sched.running = p;
  enforcing = vm_enforce_limit(sched.L, 1);
  status = lua_resume(p->co, sched.L, nargs, &nres);
  vm_enforce_limit(sched.L, enforcing);
  sched.running = outer;
  end = clock_mono_ns();
  p->cpu_ns += end - p->slice_start_ns;
  if (p->killed) {
    finish(p, LUA_ERRRUN, 0, p->kill_reason);
  } else if (status == LUA_YIELD) {
    lua_pop(p->co, nres);
    if (p->delaying)
      p->state = PROCESS_DELAYED;
    else
      make_ready(p);
  } else if (status == LUA_OK) {
    finish(p, LUA_OK, nres, NULL);
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
  snprintf(p->name, sizeof(p->name), "%s", o->name ? o->name : "");
  snprintf(p->session_id, sizeof(p->session_id), "%s",
           o->session_id ? o->session_id : "");
  p->type = o->type;
  p->created_ms = clock_wall_ms();
  p->started_ns = clock_mono_ns();
  p->timeout_ns = (int64_t)(o->timeout * 1e9);
  p->opts = *o;
  p->opts.name = p->opts.session_id = NULL; /* copied above */
  if (sched.nspare > 0) {
    p->co_ref = sched.spare[--sched.nspare];
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->co_ref);
    p->co = lua_tothread(L, -1);
    lua_pop(L, 1);
  } else {
    p->co = lua_newthread(L);
    p->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_sethook(p->co, hook, LUA_MASKCOUNT, HOOK_INSTRUCTIONS);
  /* lua_xmove does not grow the coroutine's stack by itself. */
  if (!lua_checkstack(p->co, nargs + 1 + LUA_MINSTACK)) {
    luaL_unref(L, LUA_REGISTRYINDEX, p->co_ref);
    free(p);
    lua_pop(L, nargs + 1);
    return -1;
  }
  lua_xmove(L, p->co, nargs + 1);
  p->nargs = nargs;
  p->index = sched.count;
  sched.all[sched.count++] = p;
  number = p->number;
  step(p); /* may end and free p */
  return number;
}

static void on_delay_done(uv_timer_t *t) {
  process_t *p = t->data;
  p->delaying = 0;
  step(p);
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
