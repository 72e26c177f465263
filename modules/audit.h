/*
 * audit (natives): the Lua face of the audit log (runtime/audit.h):
 * audit_log([queryString, ...]) for the console, `herald run` scripts and
 * jobs (not for methods called by remote users: the log holds every
 * message's text), and the hook the schedule natives use.
 *
 * This header also brings runtime/audit.h, for the other natives' hooks.
 */
#ifndef HERALD_MODULES_AUDIT_H
#define HERALD_MODULES_AUDIT_H

#include <lua.h>

#include "../runtime/audit.h"

struct sched;

/*
 * Registers audit_log as a global of L and adds it to the registry's
 * herald.natives (herald_open must have run), like schedule_open: call it
 * before the first sandbox is made.
 */
void audit_open(lua_State *L);

/*
 * Records action (schedule, unschedule, run_job) on job id of s: target
 * the ID, detail the job's name and spec as s knows them now. ok > 0: the
 * outcome is "ok"; ok == 0: it is why when given, else "no such job" or
 * "already running", as s says; ok < 0 (a call before the action, which
 * can only fail for an unknown ID): "ok" when s knows the job, else "no
 * such job".
 */
void audit_job(struct sched *s, const char *action, lua_Integer id, int ok,
               const char *why);

#endif
