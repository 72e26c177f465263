#include "message.h"

#include <string.h>

static message_t *slot_of(message_log_t *log, int64_t id) {
  return &log->slots[(uint64_t)id % MESSAGE_HISTORY];
}

message_t *message_put(message_log_t *log, outbuf_t *frame, uint32_t queued,
                       uint32_t delivered, uint32_t acked) {
  message_t *m = slot_of(log, frame->msg_id);
  outbuf_unref(m->frame);
  m->id = frame->msg_id;
  m->frame = frame;
  m->queued = queued;
  m->delivered = delivered;
  m->acked = acked;
  message_saved(m);
  return m;
}

message_t *message_find(message_log_t *log, int64_t id) {
  message_t *m;
  if (id <= 0)
    return NULL;
  m = slot_of(log, id);
  return m->id == id ? m : NULL;
}

size_t message_recent(message_log_t *log, int64_t last, message_t **out,
                      size_t max) {
  size_t n = 0;
  for (int64_t id = last; id > 0 && n < max; id--) {
    message_t *m = message_find(log, id);
    if (m == NULL)
      break; /* older ones are gone too */
    out[n++] = m;
  }
  return n;
}

void message_clear(message_log_t *log) {
  for (size_t i = 0; i < MESSAGE_HISTORY; i++)
    outbuf_unref(log->slots[i].frame);
  memset(log, 0, sizeof(*log));
}
