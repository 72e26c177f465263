/*
 * schedule: the Lua face of the scheduler (runtime/sched.h): schedule,
 * unschedule, get_schedule and run_job, for the console, `herald run`
 * scripts, server methods and jobs.
 */
#ifndef HERALD_SCHEDULE_H
#define HERALD_SCHEDULE_H

#include <lua.h>

struct sched;

/*
 * Registers the four functions as globals of L bound to s, and adds them
 * to the registry's herald.natives (herald_open must have run) so that the
 * sandbox offers them too: call it before the first sandbox is made. s
 * must outlive every call of them (serve frees it once the loop is over).
 */
void schedule_open(lua_State *L, struct sched *s);

#endif
