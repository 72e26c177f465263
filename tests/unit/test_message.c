/*
 * Unit tests for runtime/message.c: the log of recent messages, by id,
 * with their counters; a message leaves it when the one MESSAGE_HISTORY
 * ids later takes its slot, and its frame's reference goes with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "message.h"

static outbuf_t *frame(int64_t id) {
  outbuf_t *b = outbuf_copy("{}\n", 3);
  assert_non_null(b);
  b->msg_id = id;
  return b;
}

static void put_find_and_count(void **state) {
  message_log_t *log = calloc(1, sizeof(*log));
  message_t *m;
  (void)state;
  assert_null(message_find(log, 1));
  assert_null(message_find(log, 0));
  m = message_put(log, frame(1), 0, 0, 0);
  assert_ptr_equal(message_find(log, 1), m);
  assert_false(message_unsaved(m));
  m->queued += 2;
  m->delivered++;
  assert_true(message_unsaved(m));
  message_saved(m);
  assert_false(message_unsaved(m));
  /* restored with its counters: nothing new to save */
  m = message_put(log, frame(2), 5, 4, 3);
  assert_int_equal(m->acked, 3);
  assert_false(message_unsaved(m));
  message_clear(log);
  assert_null(message_find(log, 1));
  free(log);
}

static void the_ring_forgets_the_oldest(void **state) {
  message_log_t *log = calloc(1, sizeof(*log));
  outbuf_t *first = frame(1);
  message_t *recent[8];
  (void)state;
  outbuf_ref(first); /* to see the log let go of it */
  message_put(log, first, 0, 0, 0);
  for (int64_t id = 2; id <= MESSAGE_HISTORY; id++)
    message_put(log, frame(id), 0, 0, 0);
  assert_non_null(message_find(log, 1));
  assert_int_equal(first->refs, 2);
  message_put(log, frame(MESSAGE_HISTORY + 1), 0, 0, 0);
  assert_null(message_find(log, 1));
  assert_int_equal(first->refs, 1);
  outbuf_unref(first);
  /* newest first, and no further than the log remembers */
  assert_int_equal(message_recent(log, MESSAGE_HISTORY + 1, recent, 3), 3);
  assert_int_equal(recent[0]->id, MESSAGE_HISTORY + 1);
  assert_int_equal(recent[2]->id, MESSAGE_HISTORY - 1);
  assert_int_equal(message_recent(log, 3, recent, 8), 2);
  message_clear(log);
  free(log);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(put_find_and_count),
      cmocka_unit_test(the_ring_forgets_the_oldest),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
