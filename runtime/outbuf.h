/*
 * outbuf: a reference-counted, immutable frame ready for the wire.
 *
 * A send encodes its frame once into one outbuf and every target session
 * shares it: each queued write and each pending (unacknowledged) entry holds
 * a reference, and the last outbuf_unref frees it. A message's delivery
 * counters are message.c's, found by the frame's msg_id.
 */
#ifndef HERALD_OUTBUF_H
#define HERALD_OUTBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct outbuf {
  uint32_t refs;
  uint32_t len;        /* bytes in data, the trailing '\n' included */
  int64_t msg_id;      /* message frames: their id; other frames: 0 */
  char data[];
} outbuf_t;

/* A new outbuf of len bytes (contents to be filled in), one reference. */
outbuf_t *outbuf_new(size_t len);
/* A new outbuf holding a copy of s[0..len), one reference. */
outbuf_t *outbuf_copy(const char *s, size_t len);
static inline outbuf_t *outbuf_ref(outbuf_t *b) {
  b->refs++;
  return b;
}
void outbuf_unref(outbuf_t *b);

#endif
