#include "sched.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"
#include "cron.h"
#include "jobspec.h"
#include "log.h"
#include "process.h"
#include "vm.h"

/* A cron job looks at the wall clock at least this often while it waits:
 * libuv's timers follow the monotonic clock, so a change of the system
 * clock (not daylight saving, which cron_next handles) is noticed within a
 * minute instead of being waited out. */
#define CRON_RECHECK_MS 60000
/* A cron job starts this long after its minute begins: time() (hence
 * os.time and os.date in the job) reads a coarse clock that may lag a few
 * milliseconds, and a job due at 21:45 should not see 21:44:59. */
#define CRON_LATE_MS 20
/* The longest period and run time a job may ask for. */

typedef struct job {
  sched_t *sched;
  int id;
  char *name, *spec, *script; /* script NULL: fn_ref */
  int fn_ref, args_ref;
  double timeout;
  int is_cron;
  cron_t cron;
  int has_next;        /* cron: next_wall is set */
  time_t next_wall;    /* cron: the next run, wall clock */
  double period_ms;    /* every: the period */
  double start_mono;   /* every: the grid's origin, loop time */
  double next_mono;    /* every: the next run, loop time */
  uv_timer_t *timer;   /* NULL until started, and once closed */
  int64_t last_ms;     /* wall clock of the last start; -1: never */
  char *last_result;
  int process;         /* the running process's number, once known */
  unsigned active : 1; /* a run is in progress */
  unsigned run_now : 1;
  unsigned busy : 1;   /* inside its timer callback: not to be freed */
  unsigned removed : 1;
} job_t;

struct sched {
  uv_loop_t *loop;
  lua_State *L;
  const config_t *cfg;
  job_t **jobs; /* in ID order; removed ones stay until their run ends */
  size_t count, cap;
  int next_id;
  int started, stopped;
  state_t *state; /* remembers each job's last run; NULL: none */
};

static void on_timer(uv_timer_t *t);

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void close_timer(job_t *j) {
  if (j->timer == NULL)
    return;
  uv_timer_stop(j->timer);
  uv_close((uv_handle_t *)j->timer, on_timer_closed);
  j->timer = NULL;
}

/* Unlinks j from s, closes its timer and releases its Lua references. */
static void free_job(sched_t *s, job_t *j) {
  for (size_t i = 0; i < s->count; i++) {
    if (s->jobs[i] == j) {
      memmove(&s->jobs[i], &s->jobs[i + 1],
              (s->count - i - 1) * sizeof(*s->jobs));
      s->count--;
      break;
    }
  }
  close_timer(j);
  luaL_unref(s->L, LUA_REGISTRYINDEX, j->fn_ref);
  luaL_unref(s->L, LUA_REGISTRYINDEX, j->args_ref);
  free(j->name);
  free(j->spec);
  free(j->script);
  free(j->last_result);
  free(j);
}

/* Frees j once nothing refers to it any more: removed, not running, and
 * not inside its own timer callback. */
static void release_if_done(sched_t *s, job_t *j) {
  if (j->removed && !j->active && !j->busy)
    free_job(s, j);
}

static job_t *find_job(const sched_t *s, int id) {
  for (size_t i = 0; i < s->count; i++)
    if (s->jobs[i]->id == id && !s->jobs[i]->removed)
      return s->jobs[i];
  return NULL;
}

/* 1 when script is a relative path with no ".." component: a job stays
 * inside the scripts folder. */
static int inside_folder(const char *script) {
  const char *p = script;
  if (script[0] == '\0' || script[0] == '/')
    return 0;
  while (*p != '\0') {
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return 0;
    p += n;
    if (*p == '/')
      p++;
  }
  return 1;
}

static int check_script(const sched_t *s, const char *script, char *err,
                        size_t errlen) {
  char path[4096];
  struct stat st;
  if (!inside_folder(script)) {
    snprintf(err, errlen, "script '%s' must be a path inside the scripts "
             "folder (relative, without '..')", script);
    return -1;
  }
  snprintf(path, sizeof(path), "%s/%s", s->cfg->scripts, script);
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "script %s not found in scripts folder '%s'",
             script, s->cfg->scripts);
    return -1;
  }
  return 0;
}

/* The default name of a function job: where the function is defined. */
static char *function_place(lua_State *L, int fn_ref) {
  lua_Debug ar;
  char place[128];
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  if (lua_getinfo(L, ">S", &ar) && ar.linedefined > 0)
    snprintf(place, sizeof(place), "%s:%d", ar.short_src, ar.linedefined);
  else
    snprintf(place, sizeof(place), "function");
  return strdup(place);
}

/* The wall-clock time of the next run, or -1. */
static int64_t next_wall_ms(const sched_t *s, const job_t *j) {
  if (j->is_cron)
    return j->has_next ? (int64_t)j->next_wall * 1000 : -1;
  if (j->timer == NULL)
    return -1;
  return clock_wall_ms() +
         (int64_t)ceil(j->next_mono - (double)uv_now(s->loop));
}

/* Sets the cron job's next run to the first time after now. */
static void cron_advance(job_t *j) {
  time_t next;
  int r = cron_next(&j->cron, (time_t)(clock_wall_ms() / 1000), &next);
  j->has_next = r == 0;
  if (r == 0)
    j->next_wall = next;
  else if (r != CRON_EREBOOT)
    log_warn("job %s: cron '%s' has no next time (code %d); it now runs "
             "only through run_job", j->name, j->spec, r);
}

/* Moves an every job to the first point of its grid after now: a run
 * that the loop was too busy to start on time is not made up. */
static void every_advance(sched_t *s, job_t *j) {
  double now = (double)uv_now(s->loop);
  double k = floor((now - j->start_mono) / j->period_ms) + 1;
  j->next_mono = j->start_mono + k * j->period_ms;
}

/* (Re)arms j's timer for its next event: a run on demand, the next cron
 * time (at most CRON_RECHECK_MS away) or the next point of its grid. */
static void arm(sched_t *s, job_t *j) {
  uint64_t delay;
  if (j->timer == NULL || j->removed)
    return;
  if (j->run_now) {
    delay = 0;
  } else if (j->is_cron) {
    int64_t left;
    if (!j->has_next) {
      uv_timer_stop(j->timer);
      return;
    }
    left = (int64_t)j->next_wall * 1000 + CRON_LATE_MS - clock_wall_ms();
    delay = left <= 0 ? 0
                      : (uint64_t)(left > CRON_RECHECK_MS ? CRON_RECHECK_MS
                                                          : left);
  } else {
    double left = j->next_mono - (double)uv_now(s->loop);
    delay = left <= 0 ? 0 : (uint64_t)ceil(left);
  }
  uv_timer_start(j->timer, on_timer, delay, 0);
}

/* Gives j its timer and its first time: @reboot jobs run at once. */
static int start_job(sched_t *s, job_t *j) {
  char when[32];
  j->timer = malloc(sizeof(*j->timer));
  if (j->timer == NULL)
    return -1;
  uv_timer_init(s->loop, j->timer);
  j->timer->data = j;
  if (j->is_cron && cron_is_reboot(&j->cron)) {
    j->run_now = 1;
  } else if (j->is_cron) {
    cron_advance(j);
  } else {
    j->start_mono = (double)uv_now(s->loop);
    j->next_mono = j->start_mono + j->period_ms;
  }
  if (next_wall_ms(s, j) >= 0) {
    clock_format_iso8601(next_wall_ms(s, j), when, sizeof(when));
    log_info("job %s (%s): next run %s", j->name, j->spec, when);
  } else {
    log_info("job %s (%s): scheduled", j->name, j->spec);
  }
  arm(s, j);
  return 0;
}

static void set_result(job_t *j, const char *text, size_t len) {
  free(j->last_result);
  j->last_result = strndup(text, len);
  if (j->sched->state != NULL && j->last_result != NULL)
    state_put_job(j->sched->state, j->name, j->last_ms, j->last_result);
}

/* A job of the configuration takes back its last run from before the
 * restart. */
static void on_job_row(void *data, const char *name, int64_t last_ms,
                       const char *result) {
  sched_t *s = data;
  for (size_t i = 0; i < s->count; i++) {
    job_t *j = s->jobs[i];
    if (strcmp(j->name, name) == 0 && j->last_ms < 0) {
      j->last_ms = last_ms;
      free(j->last_result);
      j->last_result = strdup(result);
    }
  }
}

void sched_use_state(sched_t *s, state_t *st) {
  s->state = st;
  state_each_job(st, on_job_row, s);
}

/* Records and logs a failed run; err may carry a traceback, which goes to
 * the log but not into lastResult. */
static void record_failure(job_t *j, const char *err) {
  const char *trace = strstr(err, "\nstack traceback:");
  size_t len = trace != NULL ? (size_t)(trace - err) : strlen(err);
  size_t prefix = strlen("job ") + strlen(j->name) + 2;
  char own[256];

  /* A timeout's message already says "job NAME: ..."; say it once. */
  snprintf(own, sizeof(own), "job %s: ", j->name);
  if (strncmp(err, own, prefix) == 0 && strlen(err) > prefix) {
    err += prefix;
    len -= prefix;
  }
  log_error("job %s failed: %s", j->name, err);
  set_result(j, err, len);
}

/* A run ended: its result becomes lastResult; a job unscheduled during the
 * run is freed now. */
static void on_job_done(process_t *p, int status, lua_State *co, int nres,
                        const char *err, void *data) {
  job_t *j = data;
  sched_t *s = j->sched;
  (void)co;
  (void)nres;
  j->active = 0;
  j->process = 0;
  if (status == LUA_OK) {
    set_result(j, "ok", 2);
    log_debug("job %s: done in %.3f s", j->name,
              (double)(clock_mono_ns() - p->started_ns) / 1e9);
  } else {
    record_failure(j, err != NULL ? err : "unknown error");
  }
  release_if_done(s, j);
}

/* Pushes the elements of the job's argument array (JSON null as nil);
 * returns how many. */
static int push_args(lua_State *L, const job_t *j) {
  lua_Integer n;
  int idx;
  if (j->args_ref == LUA_NOREF)
    return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, j->args_ref);
  idx = lua_gettop(L);
  if (lua_getfield(L, idx, "n") == LUA_TNUMBER && lua_isinteger(L, -1))
    n = lua_tointeger(L, -1);
  else
    n = (lua_Integer)lua_rawlen(L, idx);
  lua_pop(L, 1);
  luaL_checkstack(L, (int)n + 1, "too many arguments");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (lua_islightuserdata(L, -1)) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
  }
  lua_remove(L, idx);
  return (int)n;
}

/*
 * lua_CFunction, run protected: the job (light userdata at 1) → its
 * function and arguments. A script is read afresh on every run, so an edit
 * takes effect at the next run; it gets a sandboxed environment of its own
 * with its arguments as ... and as arg[1..n] (arg[0] is the script).
 */
static int prepare_run(lua_State *L) {
  const job_t *j = lua_touserdata(L, 1);
  int nargs;
  lua_settop(L, 0);
  if (j->script != NULL) {
    char path[4096], chunkname[1024];
    snprintf(path, sizeof(path), "%s/%s", j->sched->cfg->scripts, j->script);
    /* A relative chunk name keeps the server's own paths out of
     * messages. */
    snprintf(chunkname, sizeof(chunkname), "@%s", j->script);
    if (vm_load_file(L, path, chunkname) != LUA_OK)
      return lua_error(L);
    vm_push_sandbox_env(L);
    nargs = push_args(L, j);
    lua_createtable(L, nargs, 1);
    lua_pushstring(L, j->script);
    lua_rawseti(L, -2, 0);
    for (int i = 1; i <= nargs; i++) {
      lua_pushvalue(L, 2 + i);
      lua_rawseti(L, -2, i);
    }
    lua_setfield(L, 2, "arg");
    lua_pushvalue(L, 2);
    lua_setupvalue(L, 1, 1);
    lua_remove(L, 2);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->fn_ref);
    nargs = push_args(L, j);
  }
  return 1 + nargs;
}

/* Starts a run of j as a process of type 5, unless one is in progress. */
static void start_run(sched_t *s, job_t *j, int on_demand) {
  lua_State *L = s->L;
  int top = lua_gettop(L), number;
  process_opts_t opts;

  if (j->active) {
    if (on_demand)
      log_info("job %s: already running (process %d); run_job skipped",
               j->name, j->process);
    else
      log_warn("job %s: still running (process %d) when due again; this "
               "run is skipped", j->name, j->process);
    return;
  }
  j->last_ms = clock_wall_ms();
  lua_pushcfunction(L, prepare_run);
  lua_pushlightuserdata(L, j);
  if (lua_pcall(L, 1, LUA_MULTRET, 0) != LUA_OK) {
    const char *err = lua_tostring(L, -1);
    record_failure(j, err != NULL ? err : "cannot prepare the run");
    lua_settop(L, top);
    return;
  }
  memset(&opts, 0, sizeof(opts));
  opts.type = PROCESS_JOB;
  opts.name = j->name;
  opts.timeout = j->timeout > 0 ? j->timeout : j->sched->cfg->method_timeout;
  opts.on_done = on_job_done;
  opts.data = j;
  log_debug("job %s: starting%s", j->name, on_demand ? " (run_job)" : "");
  j->active = 1;
  /* The process may end (and on_done run) before process_spawn returns. */
  number = process_spawn(L, lua_gettop(L) - top - 1, &opts);
  if (number < 0) {
    j->active = 0;
    record_failure(j, "the server cannot start a process now");
  } else if (j->active) {
    j->process = number;
  }
  lua_settop(L, top);
}

static int is_due(const sched_t *s, const job_t *j) {
  if (j->is_cron)
    return j->has_next &&
           clock_wall_ms() >= (int64_t)j->next_wall * 1000 + CRON_LATE_MS;
  return (double)uv_now(s->loop) >= j->next_mono;
}

/* The job's timer: a run on demand, or a run at its time (skipped when the
 * previous one still runs), then the timer is armed for what comes next.
 * j is marked busy meanwhile, since the run's first slice may unschedule
 * it. */
static void on_timer(uv_timer_t *t) {
  job_t *j = t->data;
  sched_t *s = j->sched;

  j->busy = 1;
  if (j->run_now) {
    j->run_now = 0;
    start_run(s, j, 1);
  } else if (is_due(s, j)) {
    start_run(s, j, 0);
    if (!j->removed) {
      if (j->is_cron)
        cron_advance(j);
      else
        every_advance(s, j);
    }
  }
  j->busy = 0;
  if (j->removed)
    release_if_done(s, j);
  else
    arm(s, j);
}

/* lua_CFunction, run protected: decodes the JSON array at 1 with the
 * state's cjson and returns it. cjson reads every number as a float; a
 * whole one becomes an integer again, so `args = { 2 }` reaches the job
 * as 2, not 2.0. */
static int decode_args(lua_State *L) {
  lua_Integer n = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, "cjson");
  lua_getfield(L, -1, "decode");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      n++;
      lua_pop(L, 1);
    }
  }
  if (!lua_istable(L, -1) || (lua_Unsigned)n != lua_rawlen(L, -1))
    return luaL_error(L, "'args' must be an array");
  for (lua_Integer i = 1; i <= n; i++) {
    int whole;
    lua_Integer v;
    if (lua_rawgeti(L, -1, i) == LUA_TNUMBER && !lua_isinteger(L, -1) &&
        (v = lua_tointegerx(L, -1, &whole), whole)) {
      lua_pushinteger(L, v);
      lua_rawseti(L, -3, i);
    }
    lua_pop(L, 1);
  }
  return 1;
}

sched_t *sched_new(uv_loop_t *loop, lua_State *L, const config_t *cfg,
                   char *err, size_t errlen) {
  sched_t *s = calloc(1, sizeof(*s));
  char why[512];

  if (s == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  s->loop = loop;
  s->L = L;
  s->cfg = cfg;
  s->next_id = 1;
  for (size_t i = 0; i < cfg->njobs; i++) {
    const config_job_t *cj = &cfg->jobs[i];
    sched_spec_t spec = {.name = cj->name,
                         .cron = cj->cron,
                         .every = cj->every,
                         .script = cj->script,
                         .fn_ref = LUA_NOREF,
                         .args_ref = LUA_NOREF,
                         .timeout = cj->timeout};
    int r = 0;
    if (cj->args_json != NULL) {
      lua_pushcfunction(L, decode_args);
      lua_pushstring(L, cj->args_json);
      if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        snprintf(why, sizeof(why), "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        r = -1;
      } else {
        spec.args_ref = luaL_ref(L, LUA_REGISTRYINDEX);
      }
    }
    if (r == 0)
      r = sched_add(s, &spec, why, sizeof(why));
    if (r < 0) {
      snprintf(err, errlen, "schedule entry %zu (%s): %s", i + 1, cj->name,
               why);
      sched_free(s);
      return NULL;
    }
  }
  return s;
}

void sched_start(sched_t *s) {
  if (s->started || s->stopped)
    return;
  s->started = 1;
  uv_update_time(s->loop);
  for (size_t i = 0; i < s->count; i++)
    if (start_job(s, s->jobs[i]) < 0)
      log_error("job %s: out of memory; it will not run", s->jobs[i]->name);
}

void sched_stop(sched_t *s) {
  if (s == NULL || s->stopped)
    return;
  s->stopped = 1;
  for (size_t i = s->count; i-- > 0;) {
    job_t *j = s->jobs[i];
    if (j->active && j->process > 0) {
      process_t *p = process_find(j->process);
      if (p != NULL)
        process_detach(p);
      j->active = 0;
    }
    j->removed = 1;
    close_timer(j);
    release_if_done(s, j);
  }
}

void sched_free(sched_t *s) {
  if (s == NULL)
    return;
  s->stopped = 1;
  while (s->count > 0)
    free_job(s, s->jobs[s->count - 1]);
  free(s->jobs);
  free(s);
}

int sched_add(sched_t *s, const sched_spec_t *spec, char *err,
              size_t errlen) {
  job_t *j = calloc(1, sizeof(*j));
  char text[64];
  int id = -1;

  if (j == NULL) {
    luaL_unref(s->L, LUA_REGISTRYINDEX, spec->fn_ref);
    luaL_unref(s->L, LUA_REGISTRYINDEX, spec->args_ref);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  j->sched = s;
  j->fn_ref = spec->fn_ref;
  j->args_ref = spec->args_ref;
  j->last_ms = -1;
  if (s->stopped) {
    snprintf(err, errlen, "the scheduler is stopped");
    goto done;
  }
  if (jobspec_check(spec->cron, spec->every, spec->timeout, err, errlen) < 0)
    goto done;
  if (spec->cron != NULL) {
    cron_parse(&j->cron, spec->cron, NULL, 0); /* checked just above */
    j->is_cron = 1;
    j->spec = strdup(spec->cron);
  } else {
    j->period_ms = spec->every * 1000;
    snprintf(text, sizeof(text), "every %g s", spec->every);
    j->spec = strdup(text);
  }
  j->timeout = spec->timeout;
  if (spec->script != NULL) {
    if (check_script(s, spec->script, err, errlen) < 0)
      goto done;
    j->script = strdup(spec->script);
  } else if (spec->fn_ref == LUA_NOREF || spec->fn_ref == LUA_REFNIL) {
    snprintf(err, errlen, "a job needs a script or a function");
    goto done;
  }
  if (spec->name != NULL)
    j->name = strdup(spec->name);
  else if (j->script != NULL)
    j->name = strdup(j->script);
  else
    j->name = function_place(s->L, j->fn_ref);
  if (j->spec == NULL || j->name == NULL ||
      (j->script == NULL && spec->script != NULL)) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  if (s->count == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    job_t **jobs = realloc(s->jobs, cap * sizeof(*jobs));
    if (jobs == NULL) {
      snprintf(err, errlen, "out of memory");
      goto done;
    }
    s->jobs = jobs;
    s->cap = cap;
  }
  j->id = s->next_id++;
  s->jobs[s->count++] = j;
  if (s->started && start_job(s, j) < 0) {
    snprintf(err, errlen, "out of memory");
    goto done;
  }
  id = j->id;
done:
  if (id < 0)
    free_job(s, j);
  return id;
}

int sched_remove(sched_t *s, int id) {
  job_t *j = find_job(s, id);
  if (j == NULL)
    return 0;
  j->removed = 1;
  close_timer(j);
  log_info("job %s: unscheduled", j->name);
  release_if_done(s, j);
  return 1;
}

int sched_run_now(sched_t *s, int id) {
  job_t *j = find_job(s, id);
  if (j == NULL || j->timer == NULL || j->active || j->run_now)
    return 0;
  j->run_now = 1;
  uv_timer_start(j->timer, on_timer, 0, 0);
  return 1;
}

int sched_info_next(const sched_t *s, size_t *cursor, sched_info_t *out) {
  while (*cursor < s->count && s->jobs[*cursor]->removed)
    (*cursor)++;
  if (*cursor >= s->count)
    return 0;
  {
    const job_t *j = s->jobs[(*cursor)++];
    out->id = j->id;
    out->name = j->name;
    out->spec = j->spec;
    out->script = j->script;
    out->next_ms = next_wall_ms(s, j);
    out->last_ms = j->last_ms;
    out->last_result = j->last_result;
    out->running = j->active || j->run_now;
    out->process = j->active ? j->process : 0;
  }
  return 1;
}
