/*
 * process: every piece of Lua that runs (a method called by a client, a
 * console line, a `herald run` script, a scheduled job) is a process: a
 * coroutine with a number, a name, an owner session, a type and a state.
 *
 * A count hook checks the clock every few thousand instructions: a process
 * that has used its time slice yields back to the loop (and is resumed on
 * the next turn), so a long script never freezes the network; one that
 * passes its timeout is ended in a way pcall inside the script cannot
 * swallow. delay_process suspends only the calling process, on a timer.
 */
#ifndef HERALD_PROCESS_H
#define HERALD_PROCESS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "session.h"
#include "vm.h"

typedef enum process_type {
  PROCESS_METHOD = 1, /* a method called by a remote client */
  PROCESS_EVAL = 3,   /* a console line or a `herald run` script */
  PROCESS_JOB = 5,    /* a scheduled job */
} process_type_t;

typedef enum process_state {
  PROCESS_EXECUTING = 0,
  PROCESS_DELAYED = 1,
  PROCESS_WAITING = 3,
} process_state_t;

typedef struct process process_t;

/* Output of print() inside the process: one line, without newline. */
typedef void (*process_print_fn)(process_t *p, const char *text, size_t len,
                                 void *data);
/*
 * The process ended. status is LUA_OK with its nres results on top of co's
 * stack, or an error status with the message (and, for a runtime error, the
 * traceback) in err. The coroutine is released after the call.
 */
typedef void (*process_done_fn)(process_t *p, int status, lua_State *co,
                                int nres, const char *err, void *data);

typedef struct process_opts {
  process_type_t type;
  const char *name;
  const char *session_id; /* owner, or NULL for the server */
  double timeout;         /* seconds of run time; 0: none */
  vm_account_t *account;  /* its memory is charged to; NULL: none */
  process_print_fn on_print;
  process_done_fn on_done;
  void *data;
} process_opts_t;

struct process {
  int number; /* never reused, so it is also the process's unique ID */
  char name[128];
  char session_id[SESSION_ID_LEN + 1];
  process_type_t type;
  process_state_t state;
  int64_t created_ms;  /* wall clock */
  int64_t started_ns;  /* monotonic */
  int64_t cpu_ns;      /* time spent running */
  /* fields below are process.c's own */
  lua_State *co;
  int co_ref;
  int64_t timeout_ns, slice_start_ns;
  int nargs;
  char kill_reason[512];
  unsigned killed : 1, delaying : 1, queued : 1, finished : 1;
  uv_timer_t *timer;
  process_opts_t opts;
  vm_account_t *account;
  process_t *next_ready;
  size_t index;
};

/* Sets up the scheduler on loop for the state L. */
void process_init(uv_loop_t *loop, lua_State *L);
/* max_blocking: how long Lua may hold the loop where it cannot yield. */
void process_set_limits(double max_blocking);
/* Since when Lua has held the loop without a return to polling (monotonic
 * ns), or 0. Safe to call from any thread. */
int64_t process_busy_since(void);
/* The loop's turn: how many times it has waited for the network. What
 * was read in one turn came in together, after what the turn before
 * sent. */
uint64_t process_loop_turn(void);
/* From a signal handler: every Lua code running or about to run stops at
 * its next instructions (the shutdown follows on the loop). */
void process_request_stop(void);
/* Ends every process (status "server shutting down") and stops. */
void process_shutdown(void);

/*
 * Starts a process running the function below nargs arguments on L's
 * stack (both are popped). It runs at once until it ends, yields its slice
 * or delays. Returns its number (on_done is called exactly once, maybe
 * before this returns: process_find tells whether it still runs), or -1
 * when the process could not be created (on_done is not called).
 */
int process_spawn(lua_State *L, int nargs, const process_opts_t *o);

/* The process whose code is running now, or NULL. */
process_t *process_running(void);
/* The process with that number, or NULL. */
process_t *process_find(int number);
size_t process_count(void);
process_t *process_at(size_t i);

/* Ends p with the error message why at its next chance (now if it is not
 * running). on_done is still called. */
void process_kill(process_t *p, const char *why);
/* Kills every process of that session (it ended). */
void process_kill_session(const char *session_id, const char *why);
/* Forgets p's callbacks: its output and result go nowhere (its requester
 * went away). */
void process_detach(process_t *p);

/* The Lua function delay_process(seconds). */
int process_lua_delay(lua_State *L);
/* The Lua function print, routed to the running process's on_print. */
int process_lua_print(lua_State *L);

#endif
