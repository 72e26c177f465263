/*
 * sched: the scheduler of API.md's `schedule` configuration and of the Lua
 * function schedule(). A job runs a script of the scripts folder (in the
 * sandbox, with a fresh environment on every run) or a Lua function, as a
 * process of type 5 named after the job, at cron times (cron.h, local time)
 * or every N seconds (a fixed grid from the job's start, so runs do not
 * drift). A job still running when it is due again is not started twice:
 * that run is skipped and logged. A failing run is logged with its
 * traceback and the job keeps its schedule.
 *
 * Each job owns one libuv timer: libuv already keeps its timers in a heap,
 * so one timer per job costs O(log n) per arm and lets jobs be added and
 * removed without a second bookkeeping of "which job is next".
 */
#ifndef HERALD_SCHED_H
#define HERALD_SCHED_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "state.h"

typedef struct sched sched_t;

/* A job to add. Strings are copied. */
typedef struct sched_spec {
  const char *name;   /* NULL: the script, or where the function is defined */
  const char *cron;   /* a cron expression, or NULL for every */
  double every;       /* seconds (at least 0.01), when cron is NULL */
  const char *script; /* relative to the scripts folder, or NULL */
  int fn_ref;         /* registry ref of the function when script is NULL */
  int args_ref;       /* registry ref of an array of arguments (its length
                         in field n, else its border), or LUA_NOREF */
  double timeout;     /* seconds; 0: method_timeout */
} sched_spec_t;

/* What get_schedule shows of a job. The pointers stay valid until the
 * scheduler next changes (a run, an add or a removal). */
typedef struct sched_info {
  int id;
  const char *name;
  const char *spec;        /* the cron text, or "every N s" */
  const char *script;      /* NULL for a function */
  int64_t next_ms;         /* wall clock of the next run; -1: none */
  int64_t last_ms;         /* wall clock of the last start; -1: never */
  const char *last_result; /* "ok", the error, or NULL before a run */
  int running;             /* a run is in progress or about to start */
  int process;             /* the running process's number, or 0 */
} sched_info_t;

/*
 * Checks cfg's schedule (cron expressions, scripts inside and present in
 * the scripts folder, arguments) and builds its jobs, numbered 1..n in
 * order; nothing runs before sched_start. Returns NULL with a message that
 * names the entry in err ("schedule entry 2 (nightly): minute field: 61 is
 * out of range 0-59"). cfg, loop and L must outlive the scheduler.
 */
sched_t *sched_new(uv_loop_t *loop, lua_State *L, const config_t *cfg,
                   char *err, size_t errlen);
/* Arms every job's timer and starts the @reboot jobs. */
void sched_start(sched_t *s);
/* The jobs' last runs and results are kept in st, and taken back from it
 * (a job of the configuration is known by its name). */
void sched_use_state(sched_t *s, state_t *st);
/*
 * Stops every timer and forgets the running jobs' processes (they are left
 * to process_shutdown). Idempotent. After it, the loop must run once for
 * the timers to close before sched_free.
 */
void sched_stop(sched_t *s);
/* Frees the scheduler and its Lua references (L must still be open). */
void sched_free(sched_t *s);

/*
 * Adds a job, armed at once when the scheduler runs; a @reboot job then
 * runs once, on the next turn of the loop. Takes ownership of spec's
 * registry refs, also on failure. Returns the job's ID (> 0), or -1 with
 * the reason in err.
 */
int sched_add(sched_t *s, const sched_spec_t *spec, char *err,
              size_t errlen);
/* Removes job id; a run in progress goes on to its end. Returns 1, or 0
 * for an unknown ID. */
int sched_remove(sched_t *s, int id);
/* Starts a run of job id on the next turn of the loop, outside its
 * schedule. Returns 1, or 0 when id is unknown or the job is running. */
int sched_run_now(sched_t *s, int id);
/* Fills *out with the job at *cursor (start at 0) and advances it; returns
 * 1, or 0 past the last job. Jobs come in ID order. */
int sched_info_next(const sched_t *s, size_t *cursor, sched_info_t *out);

#endif
