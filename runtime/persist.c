#include "persist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "proto.h"

int persist_session(state_t *st, const session_t *s) {
  state_session_t row = {
      s->id, s->persistent_id, s->token_hash, s->user_name, s->machine_name,
      s->system_user_name, s->host_type, s->ip, s->groups, s->authenticated,
      s->created_ms, s->first_msg_id, "", s->first_msg_id - 1, 0};
  return state_put_session(st, &row);
}

int persist_message(state_t *st, const outbuf_t *b, const char *target,
                    const char *text, size_t len, int64_t sent_ms) {
  state_message_t m = {b->msg_id, sent_ms, target, text, len, 0, 0, 0};
  return state_put_message(st, &m);
}

void persist_pending(state_t *st, const session_t *s, int64_t last_msg_id) {
  /* At most max_pending ids of 20 digits, a 'w' and a comma each. */
  size_t cap = (size_t)s->pend_count * 22 + 1, n = 0;
  char *list = malloc(cap);
  if (list == NULL)
    return; /* written next time: a message may be sent twice, never lost */
  list[0] = '\0';
  /* "12w": message 12, already written to the socket (counted as
   * delivered: its re-send after the restart is not counted again). */
  for (uint32_t i = 0; i < s->pend_count; i++) {
    const session_pending_t *e = session_pend_at((session_t *)s, i);
    n += (size_t)snprintf(list + n, cap - n, "%s%lld%s", i > 0 ? "," : "",
                          (long long)e->id, e->written ? "w" : "");
  }
  state_set_pending(st, s->id, list, last_msg_id);
  free(list);
}

/* --- restore ------------------------------------------------------------ */

/* A restored session and what it still owes an ack for. */
typedef struct restored {
  session_t *s;
  int64_t *ids; /* the ids listed when it was written, ascending */
  char *written; /* whether each had been written to its socket */
  size_t nids, cursor;
  int64_t as_of; /* and every message for it above this one */
} restored_t;

typedef struct restore {
  session_table_t *t;
  lua_State *L;
  size_t max_pending, max_bytes;
  void (*keep)(void *data, outbuf_t *b, const state_message_t *m);
  void *data;
  restored_t *all;
  size_t count, cap;
  long skipped;
  int failed;
} restore_t;

/* The pending list "12w,15" into e's ids and written flags. */
static void parse_ids(restored_t *e, const char *list) {
  size_t cap = 1;
  e->nids = 0;
  for (const char *p = list; *p != '\0'; p++)
    cap += *p == ',';
  e->ids = malloc(cap * sizeof(*e->ids));
  e->written = malloc(cap);
  if (e->ids == NULL || e->written == NULL)
    return;
  for (const char *p = list; *p != '\0';) {
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p)
      break;
    if (e->nids == 0 || v > e->ids[e->nids - 1]) {
      e->ids[e->nids] = v;
      e->written[e->nids++] = *end == 'w';
    }
    p = end + (*end == 'w');
    p += *p == ',';
  }
}

static void on_session_row(void *data, const state_session_t *row) {
  restore_t *r = data;
  session_fields_t f = {row->user_name, row->machine_name,
                        row->system_user_name, row->host_type, row->ip,
                        row->groups, row->authenticated};
  restored_t *e;
  session_t *s;
  if (r->failed)
    return;
  if (r->count == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    restored_t *grown = realloc(r->all, cap * sizeof(*grown));
    if (grown == NULL) {
      r->failed = 1;
      return;
    }
    r->all = grown;
    r->cap = cap;
  }
  s = session_restore(r->t, &f, row->id, row->persistent_id,
                      row->token_hash, row->created_ms);
  if (s == NULL) {
    log_warn("state: session %.32s not restored (a bad row, or out of "
             "memory)", row->id);
    return;
  }
  s->first_msg_id = row->first_msg_id;
  /* A session that had already lost its client has only the rest of its
   * resume_timeout, however many restarts come between. */
  if (row->postponed_at > 0) {
    int64_t away = clock_wall_ms() - row->postponed_at;
    s->postponed_ms -= away > 0 ? away : 0;
  }
  e = &r->all[r->count++];
  e->s = s;
  parse_ids(e, row->pending);
  e->cursor = 0;
  e->as_of = row->pending_as_of;
}

/* Whether message m is one restored session e still owes an ack for: 0,
 * 1, or 2 when it had already been written to e's socket. A message
 * newer than e's list is taken as written when the message's counters
 * say every delivery happened (so delivered never passes queued). */
static int owes(restored_t *e, const state_message_t *m) {
  if (m->target != NULL ? strcmp(m->target, e->s->id) != 0
                        : m->id < e->s->first_msg_id)
    return 0;
  if (m->id > e->as_of)
    return m->delivered >= m->queued ? 2 : 1;
  while (e->cursor < e->nids && e->ids[e->cursor] < m->id)
    e->cursor++;
  if (e->cursor >= e->nids || e->ids[e->cursor] != m->id)
    return 0;
  return e->written[e->cursor] ? 2 : 1;
}

static void on_message_row(void *data, const state_message_t *m) {
  restore_t *r = data;
  outbuf_t *b = NULL;
  for (size_t i = 0; i < r->count && !r->failed; i++) {
    restored_t *e = &r->all[i];
    int owed = owes(e, m);
    if (owed == 0)
      continue;
    if (b == NULL) {
      b = proto_message(r->L, m->id, m->text, m->len, m->sent_ms);
      if (b == NULL) {
        r->failed = 1;
        return;
      }
    }
    if (session_pend_push(e->s, m->id, b, r->max_pending, r->max_bytes) < 0)
      r->skipped++;
    else
      session_pend_at(e->s, e->s->pend_count - 1)->written = owed == 2;
  }
  if (b != NULL)
    r->keep(r->data, b, m);
}

long persist_restore(state_t *st, session_table_t *t, lua_State *L,
                     size_t max_pending, size_t max_bytes,
                     void (*keep)(void *data, outbuf_t *b,
                                  const state_message_t *m),
                     void *data,
                     char *err, size_t errlen) {
  restore_t r = {t, L, max_pending, max_bytes, keep, data, NULL, 0, 0, 0,
                 0};
  int64_t from = INT64_MAX;
  long n;
  if (state_each_session(st, on_session_row, &r) < 0 || r.failed) {
    snprintf(err, errlen, "%s: cannot read its sessions", state_path(st));
    n = -1;
    goto done;
  }
  for (size_t i = 0; i < r.count; i++) {
    restored_t *e = &r.all[i];
    int64_t first = e->as_of + 1 > e->s->first_msg_id ? e->as_of + 1
                                                       : e->s->first_msg_id;
    if (e->nids > 0 && e->ids[0] < first)
      first = e->ids[0];
    if (first < from)
      from = first;
  }
  if (r.count > 0 && state_each_message(st, from, on_message_row, &r) < 0) {
    snprintf(err, errlen, "%s: cannot read its messages", state_path(st));
    n = -1;
    goto done;
  }
  if (r.failed) {
    snprintf(err, errlen, "%s: out of memory while restoring",
             state_path(st));
    n = -1;
    goto done;
  }
  if (r.skipped > 0)
    log_warn("state: %ld pending messages past max_pending or "
             "max_outbound_bytes were not restored", r.skipped);
  n = (long)r.count;
done:
  for (size_t i = 0; i < r.count; i++) {
    free(r.all[i].ids);
    free(r.all[i].written);
  }
  free(r.all);
  return n;
}
