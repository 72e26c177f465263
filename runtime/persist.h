/*
 * persist: the server's side of the state database (state.h). What each
 * event writes (a session when it opens, a message before it is sent,
 * the acks of a session once a second), and the restore at start: every
 * session comes back postponed, with the messages it still owes an ack
 * for, in id order.
 */
#ifndef HERALD_PERSIST_H
#define HERALD_PERSIST_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include "outbuf.h"
#include "session.h"
#include "state.h"

/* Writes session s, just opened (first_msg_id set), at once. */
int persist_session(state_t *st, const session_t *s);
/* Writes message b (its text, for whom) at once, before it is sent (so
 * with no delivery counted). target: a session ID, or NULL for
 * everyone. */
int persist_message(state_t *st, const outbuf_t *b, const char *target,
                    const char *text, size_t len, int64_t sent_ms);
/* Gathers which messages s still owes an ack for, as of last_msg_id. */
void persist_pending(state_t *st, const session_t *s, int64_t last_msg_id);

/*
 * Restores every session of st into t, postponed, with its pending
 * messages (their frames made again, one per message however many
 * sessions owe it), within max_pending and max_bytes each. keep(data, b,
 * m) is handed each frame made (it takes the reference) with its row,
 * whose counters it keeps. Returns the number
 * of sessions, or -1 with the reason in err.
 */
long persist_restore(state_t *st, session_table_t *t, lua_State *L,
                     size_t max_pending, size_t max_bytes,
                     void (*keep)(void *data, outbuf_t *b,
                                  const state_message_t *m),
                     void *data,
                     char *err, size_t errlen);

#endif
