/*
 * audit: herald's audit log. Every administrative action on remote users
 * (a message sent, a session dropped, new connections refused or let in
 * again, a job scheduled, unscheduled or run on demand) and every refused
 * login is one entry:
 *
 *   time     wall clock, milliseconds since the epoch
 *   actor    who: derived from the process running now (audit_record):
 *              a method (type 1)        method:<name>@<userName>
 *              a console line (type 3)  console:<os user>
 *              the administrators' page admin:<userName>
 *              a `herald run` script    run:<script name>
 *              a job (type 5)           job:<name>
 *              no process               server
 *            or given (audit_record_as): remote:<ip> for a refused login
 *   action   send, drop, reject, schedule, unschedule, run_job,
 *            login_failed, admin_login
 *   target   a session ID, `all`, a job ID, the user name of a login
 *   count    how many sessions the action reached
 *   detail   the message text (cut to AUDIT_DETAIL_MAX bytes, on a UTF-8
 *            character boundary) or the reason
 *   outcome  "ok", or why not
 *
 * With a state database the entries go to its audit table, written at once
 * (state_put_audit), and the entries older than keep_days are pruned when
 * the log opens and then at the first entry written or read a day after
 * the last pruning (an idle server writes nothing to prune). Without one,
 * the newest AUDIT_MEMORY_MAX entries are kept in memory.
 *
 * Everything runs on the loop thread. Before audit_init (herald run
 * --local, the unit tests of other modules) recording does nothing.
 */
#ifndef HERALD_AUDIT_H
#define HERALD_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "session.h"
#include "state.h"

#define AUDIT_DETAIL_MAX 1024
#define AUDIT_MEMORY_MAX 10000

/*
 * Opens the log: into st's audit table (pruning what is older than
 * keep_days now), or into memory when st is NULL. sessions is where a
 * method's caller is found by its session ID (for its userName); NULL
 * leaves the session ID in its place. st and sessions must stay valid as
 * long as anything may be recorded. Calling it again starts over (the
 * memory log is emptied).
 */
void audit_init(state_t *st, long keep_days,
                const session_table_t *sessions);

/* Records an entry by the process running now (see above). detail and
 * outcome may be NULL ("" and "ok"). */
void audit_record(const char *action, const char *target, long count,
                  const char *detail, const char *outcome);
/* The same, for an event no process caused: the actor is given. */
void audit_record_as(const char *actor, const char *action,
                     const char *target, long count, const char *detail,
                     const char *outcome);
/* audit_record_as with the actor remote:<ip>, for a remote peer. */
void audit_record_remote(const char *ip, const char *action,
                         const char *target, const char *detail,
                         const char *outcome);

/* Writes the actor audit_record would give now into out (at most len
 * bytes, NUL included); returns out. */
const char *audit_actor(char *out, size_t len);

/*
 * Calls fn for each entry whose time is at least since_ms, newest first.
 * The entry's strings are valid during the call only; fn must not record.
 * 0, or -1 when the state database could not be read (logged).
 */
int audit_each(int64_t since_ms, state_audit_fn fn, void *data);

#endif
