#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char schema_v1[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT INTO meta VALUES('last_msg_id', 0);"
    "CREATE TABLE sessions("
    "  id TEXT PRIMARY KEY, persistent_id TEXT NOT NULL,"
    "  token_hash TEXT NOT NULL, user_name TEXT NOT NULL,"
    "  machine_name TEXT NOT NULL, system_user_name TEXT NOT NULL,"
    "  host_type TEXT NOT NULL, ip TEXT NOT NULL, groups TEXT NOT NULL,"
    "  authenticated INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
    "  first_msg_id INTEGER NOT NULL, pending TEXT NOT NULL DEFAULT '',"
    "  pending_as_of INTEGER NOT NULL,"
    "  postponed_at INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE messages("
    "  id INTEGER PRIMARY KEY, target TEXT, text TEXT NOT NULL,"
    "  sent_ms INTEGER NOT NULL, queued INTEGER NOT NULL DEFAULT 0,"
    "  delivered INTEGER NOT NULL DEFAULT 0,"
    "  acknowledged INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE jobs("
    "  name TEXT PRIMARY KEY, last_run_ms INTEGER, last_result TEXT);"
    "CREATE TABLE audit("
    "  id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,"
    "  actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,"
    "  count INTEGER NOT NULL, detail TEXT NOT NULL, outcome TEXT NOT NULL);"
    "CREATE INDEX audit_time ON audit(time_ms);"
    "PRAGMA user_version = 1;";

/* The statements, prepared once. */
enum {
  S_PUT_SESSION, S_DEL_SESSION, S_SET_PENDING, S_SET_POSTPONED,
  S_PUT_MESSAGE, S_LAST_ID,
  S_SET_COUNTS, S_FORGET, S_PUT_JOB, S_PUT_AUDIT, S_PRUNE_AUDIT, S_COUNT
};
static const char *const sql[S_COUNT] = {
    "INSERT OR REPLACE INTO sessions VALUES"
    "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,0)",
    "DELETE FROM sessions WHERE id = ?1",
    "UPDATE sessions SET pending = ?2, pending_as_of = ?3 WHERE id = ?1",
    "UPDATE sessions SET postponed_at = ?2 WHERE id = ?1",
    "INSERT OR REPLACE INTO messages VALUES(?1,?2,?3,?4,?5,?6,?7)",
    "UPDATE meta SET value = max(value, ?1) WHERE key = 'last_msg_id'",
    "UPDATE messages SET queued = ?2, delivered = ?3, acknowledged = ?4 "
    "WHERE id = ?1",
    "DELETE FROM messages WHERE id < ?1",
    "INSERT OR REPLACE INTO jobs VALUES(?1,?2,?3)",
    "INSERT INTO audit(time_ms, actor, action, target, count, detail, "
    "outcome) VALUES(?1,?2,?3,?4,?5,?6,?7)",
    "DELETE FROM audit WHERE time_ms < ?1",
};

struct state {
  sqlite3 *db;
  sqlite3_stmt *stmt[S_COUNT];
  char *path, *lock_path;
  int lock_fd;
  int in_tx;
};

const char *state_path(const state_t *st) { return st->path; }

/* --- the lock ---------------------------------------------------------- */

/* Takes PATH.lock, writing our pid in it; -1 with the holder in err. */
static int take_lock(state_t *st, char *err, size_t errlen) {
  char holder[64] = "";
  ssize_t n;
  st->lock_fd = open(st->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (st->lock_fd < 0) {
    snprintf(err, errlen, "%s: cannot open the lock %s: %s", st->path,
             st->lock_path, strerror(errno));
    return -1;
  }
  if (flock(st->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    n = pread(st->lock_fd, holder, sizeof(holder) - 1, 0);
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    snprintf(err, errlen, "%s is in use by another herald server (%s); "
             "give this one another state file", st->path,
             holder[0] != '\0' ? holder : "its pid is unknown");
    close(st->lock_fd);
    st->lock_fd = -1;
    return -1;
  }
  n = snprintf(holder, sizeof(holder), "pid %ld\n", (long)getpid());
  if (ftruncate(st->lock_fd, 0) != 0 ||
      pwrite(st->lock_fd, holder, (size_t)n, 0) != n) {
    /* The lock holds; only the name of its holder is missing. */
  }
  return 0;
}

/* --- opening ------------------------------------------------------------ */

static int exec(state_t *st, const char *text) {
  char *msg = NULL;
  if (sqlite3_exec(st->db, text, NULL, NULL, &msg) != SQLITE_OK) {
    log_error("state database %s: %s", st->path, msg ? msg : "error");
    sqlite3_free(msg);
    return -1;
  }
  return 0;
}

/* Moves the database and its WAL aside: --fresh-state. */
static int move_aside(const char *path, char *err, size_t errlen) {
  static const char *const suffixes[] = {"", "-wal", "-shm"};
  char stamp[32], from[4200], to[4300];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
  for (size_t i = 0; i < 3; i++) {
    snprintf(from, sizeof(from), "%s%s", path, suffixes[i]);
    snprintf(to, sizeof(to), "%s.old-%s%s", path, stamp, suffixes[i]);
    if (rename(from, to) != 0 && errno != ENOENT) {
      snprintf(err, errlen, "%s: cannot move it aside: %s", from,
               strerror(errno));
      return -1;
    }
    if (i == 0 && access(to, F_OK) == 0)
      log_warn("state database %s moved aside to %s (--fresh-state)", path,
               to);
  }
  return 0;
}

/* Checks the schema: creates it in a new file, refuses a newer one or a
 * file of something else. */
static int check_schema(state_t *st, char *err, size_t errlen) {
  sqlite3_stmt *q = NULL;
  int version = -1, tables = 0, rc;
  rc = sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &q, NULL);
  if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    version = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(st->db, "SELECT count(*) FROM sqlite_master",
                            -1, &q, NULL);
  if (rc == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
    tables = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  if (rc != SQLITE_OK || version < 0) {
    snprintf(err, errlen, "%s: cannot read it: %s; move it aside, or start "
             "with --fresh-state", st->path, sqlite3_errmsg(st->db));
    return -1;
  }
  if (version > STATE_SCHEMA) {
    snprintf(err, errlen, "%s was written by a newer herald (schema %d; "
             "this one knows %d): upgrade herald, or start with "
             "--fresh-state", st->path, version, STATE_SCHEMA);
    return -1;
  }
  if (version == 0 && tables > 0) {
    snprintf(err, errlen, "%s is a database of something else, not a "
             "herald state file", st->path);
    return -1;
  }
  if (version == 0) {
    /* New: the first schema. Later versions migrate here, one step at a
     * time, in a transaction each. */
    if (exec(st, "BEGIN") < 0 || exec(st, schema_v1) < 0 ||
        exec(st, "COMMIT") < 0) {
      snprintf(err, errlen, "%s: cannot create its tables: %s", st->path,
               sqlite3_errmsg(st->db));
      return -1;
    }
  }
  return 0;
}

state_t *state_open(const char *path, int full_durability, int fresh,
                    char *err, size_t errlen) {
  state_t *st = calloc(1, sizeof(*st));
  char pragmas[160];
  if (st == NULL || (st->path = strdup(path)) == NULL ||
      (st->lock_path = malloc(strlen(path) + 6)) == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    goto fail;
  }
  sprintf(st->lock_path, "%s.lock", path);
  st->lock_fd = -1;
  if (take_lock(st, err, errlen) < 0)
    goto fail;
  if (fresh && move_aside(path, err, errlen) < 0)
    goto fail;
  if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE |
                      SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      NULL) != SQLITE_OK) {
    snprintf(err, errlen, "%s: cannot open it: %s", path,
             st->db ? sqlite3_errmsg(st->db) : "out of memory");
    goto fail;
  }
  sqlite3_busy_timeout(st->db, 2000);
  /* The schema first: a file to refuse is left as it was. */
  if (check_schema(st, err, errlen) < 0)
    goto fail;
  snprintf(pragmas, sizeof(pragmas),
           "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s;",
           full_durability ? "FULL" : "NORMAL");
  if (sqlite3_exec(st->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "%s: %s; move it aside, or start with "
             "--fresh-state", path, sqlite3_errmsg(st->db));
    goto fail;
  }
  for (int i = 0; i < S_COUNT; i++) {
    if (sqlite3_prepare_v3(st->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                           &st->stmt[i], NULL) != SQLITE_OK) {
      snprintf(err, errlen, "%s: %s (is it a herald state database?)",
               path, sqlite3_errmsg(st->db));
      goto fail;
    }
  }
  return st;
fail:
  state_close(st);
  return NULL;
}

void state_close(state_t *st) {
  if (st == NULL)
    return;
  if (st->in_tx)
    exec(st, "COMMIT");
  for (int i = 0; i < S_COUNT; i++)
    sqlite3_finalize(st->stmt[i]);
  sqlite3_close(st->db);
  if (st->lock_fd >= 0)
    close(st->lock_fd); /* the lock goes with it */
  free(st->lock_path);
  free(st->path);
  free(st);
}

/* --- writing ------------------------------------------------------------- */

static void text(sqlite3_stmt *q, int i, const char *v) {
  if (v != NULL)
    sqlite3_bind_text(q, i, v, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(q, i);
}

/* Runs a bound statement; 0 or -1 (logged). */
static int run(state_t *st, int which) {
  sqlite3_stmt *q = st->stmt[which];
  int rc = sqlite3_step(q);
  sqlite3_reset(q);
  sqlite3_clear_bindings(q);
  if (rc != SQLITE_DONE) {
    log_error("state database %s: %s", st->path, sqlite3_errmsg(st->db));
    return -1;
  }
  return 0;
}

static int begin(state_t *st) {
  if (st->in_tx)
    return 0;
  if (exec(st, "BEGIN") < 0)
    return -1;
  st->in_tx = 1;
  return 0;
}

static int commit(state_t *st) {
  if (!st->in_tx)
    return 0;
  st->in_tx = 0;
  return exec(st, "COMMIT");
}

/* Runs one statement and commits it at once, with whatever was gathered. */
static int now(state_t *st, int which) {
  int r = begin(st);
  if (r == 0)
    r = run(st, which);
  return commit(st) < 0 ? -1 : r;
}

int state_put_session(state_t *st, const state_session_t *s) {
  sqlite3_stmt *q = st->stmt[S_PUT_SESSION];
  text(q, 1, s->id);
  text(q, 2, s->persistent_id);
  text(q, 3, s->token_hash);
  text(q, 4, s->user_name);
  text(q, 5, s->machine_name);
  text(q, 6, s->system_user_name);
  text(q, 7, s->host_type);
  text(q, 8, s->ip);
  text(q, 9, s->groups);
  sqlite3_bind_int(q, 10, s->authenticated);
  sqlite3_bind_int64(q, 11, s->created_ms);
  sqlite3_bind_int64(q, 12, s->first_msg_id);
  text(q, 13, s->pending != NULL ? s->pending : "");
  sqlite3_bind_int64(q, 14, s->pending_as_of);
  return now(st, S_PUT_SESSION);
}

int state_put_message(state_t *st, const state_message_t *m) {
  sqlite3_stmt *q = st->stmt[S_PUT_MESSAGE];
  int r = begin(st);
  sqlite3_bind_int64(q, 1, m->id);
  text(q, 2, m->target);
  sqlite3_bind_text(q, 3, m->text, (int)m->len, SQLITE_STATIC);
  sqlite3_bind_int64(q, 4, m->sent_ms);
  sqlite3_bind_int64(q, 5, m->queued);
  sqlite3_bind_int64(q, 6, m->delivered);
  sqlite3_bind_int64(q, 7, m->acknowledged);
  if (r == 0)
    r = run(st, S_PUT_MESSAGE);
  sqlite3_bind_int64(st->stmt[S_LAST_ID], 1, m->id);
  if (r == 0)
    r = run(st, S_LAST_ID);
  return commit(st) < 0 ? -1 : r;
}

int state_put_job(state_t *st, const char *name, int64_t last_run_ms,
                  const char *result) {
  sqlite3_stmt *q = st->stmt[S_PUT_JOB];
  text(q, 1, name);
  sqlite3_bind_int64(q, 2, last_run_ms);
  text(q, 3, result);
  return now(st, S_PUT_JOB);
}

int state_put_audit(state_t *st, const state_audit_t *a) {
  sqlite3_stmt *q = st->stmt[S_PUT_AUDIT];
  sqlite3_bind_int64(q, 1, a->time_ms);
  text(q, 2, a->actor);
  text(q, 3, a->action);
  text(q, 4, a->target);
  sqlite3_bind_int64(q, 5, a->count);
  text(q, 6, a->detail);
  text(q, 7, a->outcome);
  return now(st, S_PUT_AUDIT);
}

void state_set_pending(state_t *st, const char *id, const char *pending,
                       int64_t as_of) {
  sqlite3_stmt *q = st->stmt[S_SET_PENDING];
  if (begin(st) < 0)
    return;
  text(q, 1, id);
  text(q, 2, pending);
  sqlite3_bind_int64(q, 3, as_of);
  run(st, S_SET_PENDING);
}

void state_set_postponed(state_t *st, const char *id, int64_t wall_ms) {
  sqlite3_stmt *q = st->stmt[S_SET_POSTPONED];
  if (begin(st) < 0)
    return;
  text(q, 1, id);
  sqlite3_bind_int64(q, 2, wall_ms);
  run(st, S_SET_POSTPONED);
}

void state_del_session(state_t *st, const char *id) {
  if (begin(st) < 0)
    return;
  text(st->stmt[S_DEL_SESSION], 1, id);
  run(st, S_DEL_SESSION);
}

void state_set_counts(state_t *st, int64_t id, long queued, long delivered,
                      long acknowledged) {
  sqlite3_stmt *q = st->stmt[S_SET_COUNTS];
  if (begin(st) < 0)
    return;
  sqlite3_bind_int64(q, 1, id);
  sqlite3_bind_int64(q, 2, queued);
  sqlite3_bind_int64(q, 3, delivered);
  sqlite3_bind_int64(q, 4, acknowledged);
  run(st, S_SET_COUNTS);
}

int state_flush(state_t *st, int64_t forget_below) {
  if (forget_below > 0 && begin(st) == 0) {
    sqlite3_bind_int64(st->stmt[S_FORGET], 1, forget_below);
    run(st, S_FORGET);
  }
  return commit(st);
}

int state_prune_audit(state_t *st, int64_t before_ms) {
  sqlite3_bind_int64(st->stmt[S_PRUNE_AUDIT], 1, before_ms);
  return now(st, S_PRUNE_AUDIT);
}

/* --- reading ------------------------------------------------------------- */

static const char *col(sqlite3_stmt *q, int i) {
  const unsigned char *v = sqlite3_column_text(q, i);
  return v != NULL ? (const char *)v : "";
}

int64_t state_last_msg_id(state_t *st) {
  sqlite3_stmt *q;
  int64_t id = 0;
  if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = "
                         "'last_msg_id'", -1, &q, NULL) != SQLITE_OK)
    return 0;
  if (sqlite3_step(q) == SQLITE_ROW)
    id = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  return id;
}

int state_each_session(state_t *st, state_session_fn fn, void *data) {
  sqlite3_stmt *q;
  int rc;
  if (sqlite3_prepare_v2(st->db, "SELECT * FROM sessions ORDER BY "
                         "created_ms", -1, &q, NULL) != SQLITE_OK)
    return -1;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    state_session_t s = {
        col(q, 0), col(q, 1), col(q, 2), col(q, 3), col(q, 4), col(q, 5),
        col(q, 6), col(q, 7), col(q, 8), sqlite3_column_int(q, 9),
        sqlite3_column_int64(q, 10), sqlite3_column_int64(q, 11),
        col(q, 12), sqlite3_column_int64(q, 13),
        sqlite3_column_int64(q, 14)};
    fn(data, &s);
  }
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? 0 : -1;
}

static void read_message(sqlite3_stmt *q, state_message_t *m) {
  m->id = sqlite3_column_int64(q, 0);
  m->target = sqlite3_column_type(q, 1) == SQLITE_NULL ? NULL : col(q, 1);
  m->text = col(q, 2);
  m->len = (size_t)sqlite3_column_bytes(q, 2);
  m->sent_ms = sqlite3_column_int64(q, 3);
  m->queued = (long)sqlite3_column_int64(q, 4);
  m->delivered = (long)sqlite3_column_int64(q, 5);
  m->acknowledged = (long)sqlite3_column_int64(q, 6);
}

int state_each_message(state_t *st, int64_t from, state_message_fn fn,
                       void *data) {
  sqlite3_stmt *q;
  int rc;
  if (sqlite3_prepare_v2(st->db, "SELECT * FROM messages WHERE id >= ?1 "
                         "ORDER BY id", -1, &q, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_int64(q, 1, from);
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    state_message_t m;
    read_message(q, &m);
    fn(data, &m);
  }
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? 0 : -1;
}

int state_get_message(state_t *st, int64_t id, state_message_t *out) {
  sqlite3_stmt *q;
  int found = 0;
  if (sqlite3_prepare_v2(st->db, "SELECT * FROM messages WHERE id = ?1", -1,
                         &q, NULL) != SQLITE_OK)
    return 0;
  sqlite3_bind_int64(q, 1, id);
  if (sqlite3_step(q) == SQLITE_ROW) {
    read_message(q, out);
    out->text = NULL; /* only the counters outlive the statement */
    out->target = NULL;
    found = 1;
  }
  sqlite3_finalize(q);
  return found;
}

int state_each_job(state_t *st,
                   void (*fn)(void *data, const char *name, int64_t last_ms,
                              const char *result),
                   void *data) {
  sqlite3_stmt *q;
  int rc;
  if (sqlite3_prepare_v2(st->db, "SELECT * FROM jobs", -1, &q, NULL) !=
      SQLITE_OK)
    return -1;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW)
    fn(data, col(q, 0), sqlite3_column_int64(q, 1), col(q, 2));
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? 0 : -1;
}

int state_each_audit(state_t *st, int64_t since_ms, state_audit_fn fn,
                     void *data) {
  sqlite3_stmt *q;
  int rc;
  if (sqlite3_prepare_v2(st->db, "SELECT * FROM audit WHERE time_ms >= ?1 "
                         "ORDER BY time_ms DESC, id DESC", -1, &q, NULL) != SQLITE_OK)
    return -1;
  sqlite3_bind_int64(q, 1, since_ms);
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    state_audit_t a = {sqlite3_column_int64(q, 1), col(q, 2), col(q, 3),
                       col(q, 4), col(q, 6), col(q, 7),
                       (long)sqlite3_column_int64(q, 5)};
    fn(data, &a);
  }
  sqlite3_finalize(q);
  return rc == SQLITE_DONE ? 0 : -1;
}
