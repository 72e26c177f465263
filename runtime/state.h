/*
 * state: the SQLite state database (`state`, default herald.db beside the
 * configuration), herald's memory across restarts: the sessions (their
 * fields, a hash of the resume token, never the token), which messages
 * each still owes an ack for, the messages themselves and their counters,
 * the message id counter, the schedule's last runs, and the audit log.
 *
 * One server holds the file at a time (a lock file beside it names the
 * holder). WAL mode; synchronous=NORMAL by default (nothing is lost when
 * the process dies), FULL with durability = "full" (nor on power loss).
 *
 * What must never be lost is written at once, in its own small
 * transaction, before anyone can see it: a message before it is sent, a
 * session before its welcome. What only saves work (acks, counters, ended
 * sessions) is gathered and written once a second in one transaction: if
 * it is lost, a message is sent again after the restart, and the client
 * shows it once (it de-duplicates by id).
 */
#ifndef HERALD_STATE_H
#define HERALD_STATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct state state_t;

#define STATE_SCHEMA 1

typedef struct state_session {
  const char *id, *persistent_id, *token_hash, *user_name, *machine_name,
      *system_user_name, *host_type, *ip, *groups;
  int authenticated;
  int64_t created_ms;   /* wall clock */
  int64_t first_msg_id; /* messages to everyone from this id on are its */
  /* Pending messages: these ids, and every message for it above as_of. */
  const char *pending;  /* comma-separated ids */
  int64_t pending_as_of;
  int64_t postponed_at; /* wall clock when it lost its client; 0: live */
} state_session_t;

typedef struct state_message {
  int64_t id, sent_ms;
  const char *target; /* a session ID, or NULL for everyone */
  const char *text;
  size_t len;
  long queued, delivered, acknowledged;
} state_message_t;

typedef struct state_audit {
  int64_t time_ms;
  const char *actor, *action, *target, *detail, *outcome;
  long count;
} state_audit_t;

/*
 * Opens (or creates) the database at path: takes its lock, checks and
 * migrates its schema. fresh: a database that exists is moved aside first
 * (PATH.old-TIMESTAMP). Returns NULL with the reason and the path in err
 * (held by another server, written by a newer herald, not a database).
 */
state_t *state_open(const char *path, int full_durability, int fresh,
                    char *err, size_t errlen);
/* Writes what is gathered and closes. */
void state_close(state_t *st);
const char *state_path(const state_t *st);

int64_t state_last_msg_id(state_t *st);

/* --- at once (0, or -1: logged; the server goes on) --- */
int state_put_session(state_t *st, const state_session_t *s);
int state_put_message(state_t *st, const state_message_t *m);
int state_put_job(state_t *st, const char *name, int64_t last_run_ms,
                  const char *result);
int state_put_audit(state_t *st, const state_audit_t *a);

/* --- gathered, written by state_flush --- */
void state_set_pending(state_t *st, const char *id, const char *pending,
                       int64_t as_of);
void state_del_session(state_t *st, const char *id);
/* When s lost its client (wall clock ms), or 0 when it has one again:
 * its resume_timeout runs from there, across restarts. */
void state_set_postponed(state_t *st, const char *id, int64_t wall_ms);
void state_set_counts(state_t *st, int64_t id, long queued, long delivered,
                      long acknowledged);
/* Forgets the messages below forget_below (no session owes an ack for
 * them and they are older than message_history), and writes what was
 * gathered, in one transaction. 0 or -1 (logged). */
int state_flush(state_t *st, int64_t forget_below);

/* --- reading --- */
typedef void (*state_session_fn)(void *data, const state_session_t *s);
typedef void (*state_message_fn)(void *data, const state_message_t *m);
typedef void (*state_audit_fn)(void *data, const state_audit_t *a);
int state_each_session(state_t *st, state_session_fn fn, void *data);
/* The messages with id >= from, in id order. */
int state_each_message(state_t *st, int64_t from, state_message_fn fn,
                       void *data);
/* One message, or 0 when forgotten. */
int state_get_message(state_t *st, int64_t id, state_message_t *out);
int state_each_job(state_t *st,
                   void (*fn)(void *data, const char *name, int64_t last_ms,
                              const char *result),
                   void *data);
/* Audit entries since since_ms (wall clock), newest first. */
int state_each_audit(state_t *st, int64_t since_ms, state_audit_fn fn,
                     void *data);
/* Forgets the audit entries older than before_ms. */
int state_prune_audit(state_t *st, int64_t before_ms);

#endif
