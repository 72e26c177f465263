/*
 * session: the session manager. Sessions with 4D's fields, found by ID in
 * O(1) (an open-addressing table keyed by the random 128-bit ID), and kept
 * in one dense array so that a broadcast is a linear walk. Each session
 * holds its pending (unacknowledged) messages, released by ack.
 *
 * The struct is public so the server and the Lua bindings can read its
 * fields; only session.c changes the table, the ring and the strings.
 */
#ifndef HERALD_SESSION_H
#define HERALD_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "outbuf.h"

#define SESSION_ID_LEN 32
#define SESSION_HASH_LEN 64 /* SHA-256 in hex */
#define SESSION_INLINE_PENDING 4

struct conn;
struct vm_account;

typedef struct session_pending {
  int64_t id;
  outbuf_t *buf;
  int written; /* counted as delivered (a re-send on resume is not) */
} session_pending_t;

typedef struct session {
  char id[SESSION_ID_LEN + 1];
  char persistent_id[SESSION_ID_LEN + 1];
  char token[SESSION_ID_LEN + 1]; /* resume token, shown in welcome; "" in
                                    a session restored from the state
                                    database until its client resumes */
  char token_hash[SESSION_HASH_LEN + 1]; /* what a resume is checked by */
  char ip[48];
  const char *user_name, *machine_name, *system_user_name, *host_type;
  const char *groups;    /* the user's groups, comma-separated; "" */
  int authenticated;     /* it logged in with a password */
  int64_t created_ms;    /* wall clock */
  char created_iso[32];  /* the same as creationDateTime shows it */
  int64_t last_heard_ms; /* monotonic: any frame */
  int64_t last_user_ms;  /* monotonic: any frame but pong (for sleeping) */
  int64_t postponed_ms;  /* monotonic: when the connection was lost; 0 */
  int ping_sent;
  int closing;           /* bye, drop or expiry: removed, not postponed */
  struct conn *conn;     /* NULL while postponed */
  int calls;             /* its method calls running now */
  int64_t first_msg_id;  /* messages to everyone from this id on are its */
  int acks_unsaved;      /* acks the state database has not seen yet */
  struct vm_account *account; /* its processes' Lua memory; NULL until
                                 its first call */
  /* Pending messages: a ring, inline until it needs more room. */
  session_pending_t *pend;
  uint32_t pend_head, pend_count, pend_cap;
  size_t pend_bytes;
  session_pending_t pend_inline[SESSION_INLINE_PENDING];
  uint32_t admin_look;    /* state, calls and pending as the
                             administrators' page last saw them */
  uint32_t admin_version; /* when that changed (webadmin.c); 0: new */
  uint32_t index; /* in the dense array */
  uint64_t key;   /* the ID's first 64 bits, its hash */
  char *strings;  /* one block for the names and the groups */
} session_t;

typedef struct session_fields {
  const char *user_name, *machine_name, *system_user_name, *host_type;
  const char *ip;
  const char *groups; /* comma-separated, or NULL */
  int authenticated;
} session_fields_t;

/* Whether group is one of s's groups. */
int session_in_group(const session_t *s, const char *group);

typedef struct session_table session_table_t;

session_table_t *session_table_new(void);
/* Frees the table and every session left in it. */
void session_table_free(session_table_t *t);

/*
 * Creates a session with a fresh random ID, persistent ID and resume token
 * (from getrandom), copies the fields, stamps creationDateTime, and adds
 * it. Returns NULL when memory or randomness fails.
 */
session_t *session_create(session_table_t *t, const session_fields_t *f);
/*
 * Adds a session from the state database as it was: its ID, persistent
 * ID, hash of the resume token and creation time; postponed (no
 * connection). NULL when memory runs out or the ID is taken.
 */
session_t *session_restore(session_table_t *t, const session_fields_t *f,
                           const char *id, const char *persistent_id,
                           const char *token_hash, int64_t created_ms);
/* The session with that ID (32 hex digits, any case), or NULL. */
session_t *session_find(const session_table_t *t, const char *id);
/* Removes s from the table, releases its pending messages and frees it. */
void session_remove(session_table_t *t, session_t *s);
size_t session_count(const session_table_t *t);
/* The dense array: valid until the next create or remove. */
session_t *const *session_all(const session_table_t *t);

/*
 * Adds a reference to message b (id) to s's pending ring. Returns 0, or -1
 * when s would then hold more than max_count messages or max_bytes bytes
 * (nothing is added: the caller drops the session as a slow consumer).
 */
int session_pend_push(session_t *s, int64_t id, outbuf_t *b,
                      size_t max_count, size_t max_bytes);
/* Releases pending message id; returns 0, or -1 when s has no such one. */
int session_pend_ack(session_t *s, int64_t id);
/* The i-th oldest pending message, for re-sending on resume. */
session_pending_t *session_pend_at(session_t *s, uint32_t i);
/* Pending message id, or NULL. */
session_pending_t *session_pend_find(session_t *s, int64_t id);
int session_pend_has(const session_t *s, int64_t id);

/* "active", "sleeping" or "postponed", from the times above. */
const char *session_state(const session_t *s, int64_t now_mono_ms,
                          int64_t sleep_after_ms);

/* Fills out with n random bytes as 2n upper-case hex digits; 0 or -1. */
int session_random_hex(char *out, size_t nbytes);
/* Compares two strings in time independent of where they differ. */
int session_token_equal(const char *a, const char *b);
/* Whether token is s's resume token (checked by its hash, in constant
 * time). A restored session learns its token here. */
int session_token_matches(session_t *s, const char *token);

#endif
