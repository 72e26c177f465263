/*
 * watchdog: SIGINT and SIGTERM for `herald serve`, and the last resort when
 * the loop is stuck.
 *
 * The signals are caught here rather than through libuv's uv_signal_t,
 * whose handler only wakes the loop: a loop held by Lua would never see
 * them. The handler asks every running Lua code to stop at its next
 * instructions (process_request_stop), then wakes the loop, where the
 * server shuts down as usual. A thread watches from outside: it says in
 * the log when Lua has held the loop for seconds (one call into C that no
 * hook can interrupt, such as a pathological pattern match), and when a
 * stop was asked and the server is still there after STOP_GRACE, it exits
 * the process, so SIGTERM works whatever runs.
 */
#ifndef HERALD_WATCHDOG_H
#define HERALD_WATCHDOG_H

#include <uv.h>

/* Called on the loop for each signal caught (SIGINT or SIGTERM). */
typedef void (*watchdog_signal_fn)(int signum, void *data);

/* Catches SIGINT and SIGTERM and starts the watching thread. Returns 0 or
 * a libuv error code. */
int watchdog_start(uv_loop_t *loop, watchdog_signal_fn fn, void *data);
/* With flag set, SIGINT only interrupts (the console's Ctrl-C), and asks
 * no Lua code to stop; SIGTERM always does. */
void watchdog_sigint_interrupts(int flag);
/* The loop is shutting down: the signal handle closes (the thread keeps
 * watching until watchdog_stop). */
void watchdog_close(void);
/* Stops the thread and gives the signals back to their defaults. */
void watchdog_stop(void);

#endif
