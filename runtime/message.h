/*
 * message: the messages the server sent lately, by id: each one's frame
 * (the outbuf every recipient shares) and its delivery counters, which
 * message_status() and the administrators' page read and the state
 * database keeps. A ring of MESSAGE_HISTORY slots: a message leaves it
 * when the one MESSAGE_HISTORY ids later is sent (the state database,
 * when there is one, remembers message_history of them).
 */
#ifndef HERALD_MESSAGE_H
#define HERALD_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include "outbuf.h"

#define MESSAGE_HISTORY 1024

typedef struct message {
  int64_t id;         /* 0: an empty slot */
  outbuf_t *frame;    /* one reference */
  uint32_t queued;    /* sessions it was queued for */
  uint32_t delivered; /* ... whose socket took every byte of it */
  uint32_t acked;     /* ... whose client acknowledged it */
  uint32_t saved;     /* the three summed, as the state database last got
                         them */
} message_t;

typedef struct message_log {
  message_t slots[MESSAGE_HISTORY];
} message_log_t;

/* Keeps frame (a message frame: its msg_id set) in the log, taking the
 * reference, with the given counters; the message that held its slot is
 * forgotten. Returns its entry. */
message_t *message_put(message_log_t *log, outbuf_t *frame, uint32_t queued,
                       uint32_t delivered, uint32_t acked);
/* Message id, or NULL when it has left the log (or never was). */
message_t *message_find(message_log_t *log, int64_t id);
/* The messages still in the log from id last down, newest first, at most
 * max; returns how many. */
size_t message_recent(message_log_t *log, int64_t last, message_t **out,
                       size_t max);
/* Whether m's counters changed since message_saved. */
static inline int message_unsaved(const message_t *m) {
  return m->queued + m->delivered + m->acked != m->saved;
}
static inline void message_saved(message_t *m) {
  m->saved = m->queued + m->delivered + m->acked;
}
/* Forgets every message. */
void message_clear(message_log_t *log);

#endif
