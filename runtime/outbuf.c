#include "outbuf.h"

#include <stdlib.h>
#include <string.h>

outbuf_t *outbuf_new(size_t len) {
  outbuf_t *b = malloc(sizeof(*b) + len);
  if (b == NULL)
    return NULL;
  memset(b, 0, sizeof(*b));
  b->refs = 1;
  b->len = (uint32_t)len;
  return b;
}

outbuf_t *outbuf_copy(const char *s, size_t len) {
  outbuf_t *b = outbuf_new(len);
  if (b != NULL)
    memcpy(b->data, s, len);
  return b;
}

void outbuf_unref(outbuf_t *b) {
  if (b != NULL && --b->refs == 0)
    free(b);
}
