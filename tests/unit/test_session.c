/*
 * Unit tests for runtime/session.c: the session table (IDs, lookup,
 * removal with backward-shift deletion, the dense array), the pending
 * ring (growth, wrap-around, acks, limits, outbuf references), the states
 * and the token comparison.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session.h"

#define MANY 10000

static const session_fields_t fields = {
    .user_name = "Vanessa",
    .machine_name = "vanessa-laptop",
    .system_user_name = "vanessa",
    .host_type = "linux",
    .ip = "127.0.0.1",
};

/* A deterministic generator (xorshift64), so a failure can be replayed. */
static uint64_t rng_state;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static int is_upper_hex(const char *s, size_t len) {
  if (strlen(s) != len)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F')))
      return 0;
  return 1;
}

static void lower(char *dst, const char *src) {
  size_t i;
  for (i = 0; src[i] != '\0'; i++)
    dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] + 32) : src[i];
  dst[i] = '\0';
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Checks the dense array against the table: every entry's index is its
 * position, every entry is found by its ID, and the count matches. */
static void check_table(session_table_t *t, size_t want) {
  session_t *const *all = session_all(t);
  assert_int_equal(session_count(t), want);
  for (size_t i = 0; i < want; i++) {
    assert_non_null(all[i]);
    assert_int_equal(all[i]->index, i);
    assert_ptr_equal(session_find(t, all[i]->id), all[i]);
  }
}

/* ---- the table ------------------------------------------------------- */

static void test_create_fields(void **state) {
  session_table_t *t = session_table_new();
  session_fields_t empty = {0};
  session_t *s, *e;
  (void)state;
  assert_non_null(t);
  assert_int_equal(session_count(t), 0);
  s = session_create(t, &fields);
  assert_non_null(s);
  assert_string_equal(s->user_name, "Vanessa");
  assert_string_equal(s->machine_name, "vanessa-laptop");
  assert_string_equal(s->system_user_name, "vanessa");
  assert_string_equal(s->host_type, "linux");
  assert_string_equal(s->ip, "127.0.0.1");
  assert_true(is_upper_hex(s->id, SESSION_ID_LEN));
  assert_true(is_upper_hex(s->persistent_id, SESSION_ID_LEN));
  assert_true(is_upper_hex(s->token, SESSION_ID_LEN));
  assert_string_not_equal(s->id, s->persistent_id);
  assert_string_not_equal(s->id, s->token);
  assert_true(s->created_ms > 1600000000000LL); /* a wall clock, in ms */
  assert_null(s->conn);
  assert_int_equal(s->pend_count, 0);
  assert_int_equal(s->pend_bytes, 0);
  /* Missing names become empty strings, not NULL. */
  e = session_create(t, &empty);
  assert_non_null(e);
  assert_string_equal(e->user_name, "");
  assert_string_equal(e->machine_name, "");
  assert_string_equal(e->system_user_name, "");
  assert_string_equal(e->host_type, "");
  assert_string_equal(e->ip, "");
  check_table(t, 2);
  session_table_free(t);
}

/* Many sessions: IDs well formed (version 4 UUIDs, upper-case hex),
 * unique, and each found in either case. */
static void test_many_sessions(void **state) {
  session_table_t *t = session_table_new();
  char **ids = malloc(MANY * sizeof(*ids));
  char low[SESSION_ID_LEN + 1];
  (void)state;
  assert_non_null(t);
  assert_non_null(ids);
  for (int i = 0; i < MANY; i++) {
    session_t *s = session_create(t, &fields);
    assert_non_null(s);
    assert_int_equal(s->index, (uint32_t)i);
    assert_true(is_upper_hex(s->id, SESSION_ID_LEN));
    assert_int_equal(s->id[12], '4');
    assert_non_null(strchr("89AB", s->id[16]));
    assert_int_equal(s->persistent_id[12], '4');
    assert_non_null(strchr("89AB", s->persistent_id[16]));
    ids[i] = s->id;
  }
  check_table(t, MANY);
  for (int i = 0; i < MANY; i++) {
    session_t *s = session_all(t)[i];
    lower(low, s->id);
    assert_ptr_equal(session_find(t, low), s);
  }
  qsort(ids, MANY, sizeof(*ids), cmp_str);
  for (int i = 1; i < MANY; i++)
    assert_string_not_equal(ids[i - 1], ids[i]);
  free(ids);
  session_table_free(t);
}

static void test_find_malformed(void **state) {
  session_table_t *t = session_table_new();
  session_t *s = session_create(t, &fields);
  char id[80];
  (void)state;
  assert_non_null(s);
  assert_ptr_equal(session_find(t, s->id), s);
  assert_null(session_find(t, NULL));
  assert_null(session_find(t, ""));
  /* 31 characters: the ID without its last digit. */
  snprintf(id, sizeof(id), "%.31s", s->id);
  assert_null(session_find(t, id));
  /* 33 characters: the ID and one more digit. */
  snprintf(id, sizeof(id), "%s0", s->id);
  assert_null(session_find(t, id));
  /* A non-hex character in the first half (the hash) or the second. */
  snprintf(id, sizeof(id), "%s", s->id);
  id[3] = 'G';
  assert_null(session_find(t, id));
  snprintf(id, sizeof(id), "%s", s->id);
  id[30] = 'z';
  assert_null(session_find(t, id));
  snprintf(id, sizeof(id), "%s", s->id);
  id[20] = '-';
  assert_null(session_find(t, id));
  /* The dashed UUID form is not an ID. */
  snprintf(id, sizeof(id), "%.8s-%.4s-%.4s-%.4s-%.12s", s->id, s->id + 8,
           s->id + 12, s->id + 16, s->id + 20);
  assert_null(session_find(t, id));
  /* A well-formed but unknown ID. */
  snprintf(id, sizeof(id), "%s", s->id);
  id[31] = id[31] == '0' ? '1' : '0';
  assert_null(session_find(t, id));
  session_table_free(t);
}

static void test_remove_first_middle_last(void **state) {
  session_table_t *t = session_table_new();
  session_t *s[5];
  char gone[3][SESSION_ID_LEN + 1];
  (void)state;
  for (int i = 0; i < 5; i++) {
    s[i] = session_create(t, &fields);
    assert_non_null(s[i]);
  }
  /* Middle. */
  snprintf(gone[0], sizeof(gone[0]), "%s", s[2]->id);
  session_remove(t, s[2]);
  assert_null(session_find(t, gone[0]));
  check_table(t, 4);
  /* The last entry moved into the hole. */
  assert_ptr_equal(session_all(t)[2], s[4]);
  assert_int_equal(s[4]->index, 2);
  /* First. */
  snprintf(gone[1], sizeof(gone[1]), "%s", s[0]->id);
  session_remove(t, s[0]);
  assert_null(session_find(t, gone[1]));
  check_table(t, 3);
  /* Last of the dense array. */
  {
    session_t *last = session_all(t)[session_count(t) - 1];
    snprintf(gone[2], sizeof(gone[2]), "%s", last->id);
    session_remove(t, last);
  }
  assert_null(session_find(t, gone[2]));
  check_table(t, 2);
  /* Down to empty, then usable again. */
  session_remove(t, session_all(t)[0]);
  session_remove(t, session_all(t)[0]);
  check_table(t, 0);
  for (int i = 0; i < 3; i++)
    assert_null(session_find(t, gone[i]));
  assert_non_null(session_create(t, &fields));
  check_table(t, 1);
  session_table_free(t);
}

/* Removes half of many sessions in a random order (fixed seed), checking
 * that the survivors stay findable: this walks the backward shift of the
 * open-addressing table through every kind of cluster. */
static void test_remove_half_random(void **state) {
  session_table_t *t = session_table_new();
  char (*ids)[SESSION_ID_LEN + 1] = malloc(MANY * sizeof(*ids));
  char *removed = calloc(MANY, 1);
  size_t left = MANY;
  (void)state;
  assert_non_null(ids);
  assert_non_null(removed);
  for (int i = 0; i < MANY; i++) {
    session_t *s = session_create(t, &fields);
    assert_non_null(s);
    memcpy(ids[i], s->id, sizeof(ids[i]));
  }
  rng_state = 0x9E3779B97F4A7C15ULL;
  while (left > MANY / 2) {
    size_t k = (size_t)(rng() % MANY);
    session_t *s;
    if (removed[k])
      continue;
    s = session_find(t, ids[k]);
    assert_non_null(s);
    session_remove(t, s);
    removed[k] = 1;
    left--;
    if (left % 1000 == 0)
      check_table(t, left);
  }
  check_table(t, MANY / 2);
  for (int i = 0; i < MANY; i++) {
    session_t *s = session_find(t, ids[i]);
    if (removed[i]) {
      assert_null(s);
    } else {
      assert_non_null(s);
      assert_string_equal(s->id, ids[i]);
    }
  }
  /* New sessions after the removals are found as well. */
  for (int i = 0; i < 100; i++)
    assert_non_null(session_create(t, &fields));
  check_table(t, MANY / 2 + 100);
  free(ids);
  free(removed);
  session_table_free(t);
}

/* Small tables (at most 31 sessions in 64 slots, just under the load that
 * doubles it) filled and emptied in random order, many times over: with
 * random IDs, clusters that wrap around the end of the slot array turn up
 * in most rounds, and removals inside them must shift entries across the
 * wrap. */
static void test_remove_wrapping_clusters(void **state) {
  (void)state;
  rng_state = 0x2545F4914F6CDD1DULL;
  for (int round = 0; round < 500; round++) {
    session_table_t *t = session_table_new();
    char ids[31][SESSION_ID_LEN + 1];
    int alive[31], left = 31;
    assert_non_null(t);
    for (int i = 0; i < 31; i++) {
      session_t *s = session_create(t, &fields);
      assert_non_null(s);
      memcpy(ids[i], s->id, sizeof(ids[i]));
      alive[i] = 1;
    }
    while (left > 0) {
      int k = (int)(rng() % 31);
      if (!alive[k])
        continue;
      session_remove(t, session_find(t, ids[k]));
      alive[k] = 0;
      left--;
      for (int i = 0; i < 31; i++) {
        session_t *s = session_find(t, ids[i]);
        if (alive[i])
          assert_non_null(s);
        else
          assert_null(s);
      }
      check_table(t, (size_t)left);
    }
    session_table_free(t);
  }
}

/* ---- the pending ring ------------------------------------------------ */

static outbuf_t *buf(const char *s) {
  outbuf_t *b = outbuf_copy(s, strlen(s));
  assert_non_null(b);
  return b;
}

/* Checks the ring's ids, oldest first. */
static void check_ring(session_t *s, const int64_t *want, uint32_t n) {
  assert_int_equal(s->pend_count, n);
  for (uint32_t i = 0; i < n; i++)
    assert_int_equal(session_pend_at(s, i)->id, want[i]);
}

static void test_pend_grow_and_ack(void **state) {
  session_table_t *t = session_table_new();
  session_t *s = session_create(t, &fields);
  outbuf_t *b[10];
  (void)state;
  assert_non_null(s);
  for (int i = 0; i < 10; i++) {
    b[i] = buf("0123456789");
    assert_int_equal(session_pend_push(s, 100 + i, b[i], 1000, 1 << 20), 0);
    assert_int_equal(b[i]->refs, 2);
  }
  assert_true(s->pend_cap >= 10);
  assert_ptr_not_equal(s->pend, s->pend_inline);
  assert_int_equal(s->pend_bytes, 100);
  {
    const int64_t want[] = {100, 101, 102, 103, 104,
                            105, 106, 107, 108, 109};
    check_ring(s, want, 10);
  }
  for (int i = 0; i < 10; i++) {
    assert_true(session_pend_has(s, 100 + i));
    assert_ptr_equal(session_pend_at(s, (uint32_t)i)->buf, b[i]);
  }
  assert_false(session_pend_has(s, 99));
  assert_false(session_pend_has(s, 110));
  /* In order. */
  assert_int_equal(session_pend_ack(s, 100), 0);
  assert_int_equal(b[0]->refs, 1);
  assert_int_equal(session_pend_ack(s, 101), 0);
  assert_int_equal(b[1]->refs, 1);
  assert_false(session_pend_has(s, 100));
  {
    const int64_t want[] = {102, 103, 104, 105, 106, 107, 108, 109};
    check_ring(s, want, 8);
  }
  /* Out of order: from the middle, then the newest. */
  assert_int_equal(session_pend_ack(s, 105), 0);
  assert_int_equal(b[5]->refs, 1);
  assert_int_equal(session_pend_ack(s, 109), 0);
  assert_int_equal(b[9]->refs, 1);
  {
    const int64_t want[] = {102, 103, 104, 106, 107, 108};
    check_ring(s, want, 6);
  }
  assert_int_equal(s->pend_bytes, 60);
  assert_false(session_pend_has(s, 105));
  assert_true(session_pend_has(s, 106));
  /* Unknown and already acknowledged ids. */
  assert_int_equal(session_pend_ack(s, 105), -1);
  assert_int_equal(session_pend_ack(s, 100), -1);
  assert_int_equal(session_pend_ack(s, 12345), -1);
  assert_int_equal(s->pend_count, 6);
  assert_int_equal(s->pend_bytes, 60);
  /* Removing the session releases what it still holds. */
  session_remove(t, s);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(b[i]->refs, 1);
    outbuf_unref(b[i]);
  }
  session_table_free(t);
}

/* Pushes and acks that wrap the inline ring before it grows: the order
 * must survive the wrap and the move to the heap. */
static void test_pend_wrap(void **state) {
  session_table_t *t = session_table_new();
  session_t *s = session_create(t, &fields);
  outbuf_t *b = buf("x");
  (void)state;
  for (int i = 1; i <= 4; i++)
    assert_int_equal(session_pend_push(s, i, b, 100, 1000), 0);
  assert_ptr_equal(s->pend, s->pend_inline);
  assert_int_equal(session_pend_ack(s, 1), 0);
  assert_int_equal(session_pend_ack(s, 2), 0);
  assert_int_equal(session_pend_push(s, 5, b, 100, 1000), 0);
  assert_int_equal(session_pend_push(s, 6, b, 100, 1000), 0);
  assert_ptr_equal(s->pend, s->pend_inline); /* wrapped, not grown */
  {
    const int64_t want[] = {3, 4, 5, 6};
    check_ring(s, want, 4);
  }
  /* An out-of-order ack across the wrap. */
  assert_int_equal(session_pend_ack(s, 4), 0);
  {
    const int64_t want[] = {3, 5, 6};
    check_ring(s, want, 3);
  }
  assert_int_equal(session_pend_push(s, 7, b, 100, 1000), 0);
  assert_int_equal(session_pend_push(s, 8, b, 100, 1000), 0);
  assert_int_equal(session_pend_push(s, 9, b, 100, 1000), 0);
  assert_ptr_not_equal(s->pend, s->pend_inline);
  {
    const int64_t want[] = {3, 5, 6, 7, 8, 9};
    check_ring(s, want, 6);
  }
  assert_int_equal(b->refs, 7);
  assert_int_equal(s->pend_bytes, 6);
  /* Drain in order; the ring is empty and reusable. */
  {
    const int64_t order[] = {3, 5, 6, 7, 8, 9};
    for (int i = 0; i < 6; i++)
      assert_int_equal(session_pend_ack(s, order[i]), 0);
  }
  assert_int_equal(s->pend_count, 0);
  assert_int_equal(s->pend_bytes, 0);
  assert_int_equal(b->refs, 1);
  assert_int_equal(session_pend_ack(s, 3), -1);
  assert_int_equal(session_pend_push(s, 10, b, 100, 1000), 0);
  assert_int_equal(session_pend_at(s, 0)->id, 10);
  assert_int_equal(b->refs, 2);
  session_table_free(t);
  assert_int_equal(b->refs, 1); /* the table's free released it too */
  outbuf_unref(b);
}

static void test_pend_limits(void **state) {
  session_table_t *t = session_table_new();
  session_t *s = session_create(t, &fields);
  outbuf_t *small = buf("0123456789"), *big = buf("0123456789abcdefghij");
  (void)state;
  /* max_count: 3 messages. */
  for (int i = 1; i <= 3; i++)
    assert_int_equal(session_pend_push(s, i, small, 3, 1000), 0);
  assert_int_equal(session_pend_push(s, 4, small, 3, 1000), -1);
  assert_int_equal(s->pend_count, 3);
  assert_int_equal(s->pend_bytes, 30);
  assert_int_equal(small->refs, 4);
  assert_false(session_pend_has(s, 4));
  /* max_bytes: 30 held, 20 more would make 50 > 45; reaching exactly the
     limit (40) is allowed. */
  assert_int_equal(session_pend_push(s, 5, big, 100, 45), -1);
  assert_int_equal(s->pend_count, 3);
  assert_int_equal(s->pend_bytes, 30);
  assert_int_equal(big->refs, 1);
  assert_false(session_pend_has(s, 5));
  assert_int_equal(session_pend_push(s, 6, small, 100, 40), 0);
  assert_int_equal(s->pend_bytes, 40);
  assert_int_equal(session_pend_push(s, 7, small, 100, 40), -1);
  assert_int_equal(s->pend_count, 4);
  assert_int_equal(small->refs, 5);
  {
    const int64_t want[] = {1, 2, 3, 6};
    check_ring(s, want, 4);
  }
  /* An ack makes room again. */
  assert_int_equal(session_pend_ack(s, 1), 0);
  assert_int_equal(session_pend_push(s, 7, small, 100, 40), 0);
  assert_int_equal(small->refs, 5);
  session_remove(t, s);
  assert_int_equal(small->refs, 1);
  assert_int_equal(big->refs, 1);
  outbuf_unref(small);
  outbuf_unref(big);
  session_table_free(t);
}

/* One shared message in many sessions' rings: one reference each. */
static void test_pend_shared_refs(void **state) {
  session_table_t *t = session_table_new();
  outbuf_t *b = buf("{\"type\":\"message\"}\n");
  (void)state;
  for (int i = 0; i < 50; i++) {
    session_t *s = session_create(t, &fields);
    assert_int_equal(session_pend_push(s, 42, b, 10, 1000), 0);
  }
  assert_int_equal(b->refs, 51);
  for (int i = 0; i < 20; i++)
    assert_int_equal(session_pend_ack(session_all(t)[i], 42), 0);
  assert_int_equal(b->refs, 31);
  session_remove(t, session_all(t)[40]);
  assert_int_equal(b->refs, 30);
  session_table_free(t);
  assert_int_equal(b->refs, 1);
  outbuf_unref(b);
}

/* ---- states, tokens, randomness -------------------------------------- */

static void test_state(void **state) {
  session_table_t *t = session_table_new();
  session_t *s = session_create(t, &fields);
  int dummy;
  (void)state;
  s->last_user_ms = 1000000;
  s->conn = NULL;
  assert_string_equal(session_state(s, 1000000, 600000), "postponed");
  assert_string_equal(session_state(s, 1000000 + 10000000, 600000),
                      "postponed");
  s->conn = (struct conn *)&dummy;
  assert_string_equal(session_state(s, 1000000, 600000), "active");
  assert_string_equal(session_state(s, 1000000 + 599999, 600000), "active");
  assert_string_equal(session_state(s, 1000000 + 600000, 600000),
                      "sleeping");
  assert_string_equal(session_state(s, 1000000 + 900000, 600000),
                      "sleeping");
  /* A user frame wakes it. */
  s->last_user_ms = 1000000 + 900000;
  assert_string_equal(session_state(s, 1000000 + 900000, 600000), "active");
  s->conn = NULL;
  session_table_free(t);
}

static void test_token_equal(void **state) {
  (void)state;
  assert_true(session_token_equal("", ""));
  assert_true(session_token_equal("3C81A8D7AFE64C2E", "3C81A8D7AFE64C2E"));
  assert_false(session_token_equal("3C81A8D7AFE64C2E", "3C81A8D7AFE64C2F"));
  assert_false(session_token_equal("3C81A8D7AFE64C2E", "4C81A8D7AFE64C2E"));
  assert_false(session_token_equal("ABC", "ABCD"));
  assert_false(session_token_equal("ABCD", "ABC"));
  assert_false(session_token_equal("", "A"));
  assert_false(session_token_equal("A", ""));
  /* Tokens are compared exactly: case matters. */
  assert_false(session_token_equal("abcdef", "ABCDEF"));
}

static void test_random_hex(void **state) {
  char a[2 * 64 + 1], b[2 * 64 + 1];
  (void)state;
  assert_int_equal(session_random_hex(a, 16), 0);
  assert_true(is_upper_hex(a, 32));
  assert_int_equal(session_random_hex(b, 16), 0);
  assert_string_not_equal(a, b);
  assert_int_equal(session_random_hex(a, 1), 0);
  assert_true(is_upper_hex(a, 2));
  assert_int_equal(session_random_hex(a, 0), 0);
  assert_string_equal(a, "");
  assert_int_equal(session_random_hex(a, 64), 0);
  assert_true(is_upper_hex(a, 128));
  /* More than it can draw at once is refused. */
  assert_int_equal(session_random_hex(a, 65), -1);
  /* Every hex digit turns up in a large enough draw. */
  {
    int seen[16] = {0};
    for (int k = 0; k < 20; k++) {
      assert_int_equal(session_random_hex(a, 64), 0);
      for (int i = 0; i < 128; i++)
        seen[a[i] <= '9' ? a[i] - '0' : a[i] - 'A' + 10] = 1;
    }
    for (int i = 0; i < 16; i++)
      assert_true(seen[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_fields),
      cmocka_unit_test(test_many_sessions),
      cmocka_unit_test(test_find_malformed),
      cmocka_unit_test(test_remove_first_middle_last),
      cmocka_unit_test(test_remove_half_random),
      cmocka_unit_test(test_remove_wrapping_clusters),
      cmocka_unit_test(test_pend_grow_and_ack),
      cmocka_unit_test(test_pend_wrap),
      cmocka_unit_test(test_pend_limits),
      cmocka_unit_test(test_pend_shared_refs),
      cmocka_unit_test(test_state),
      cmocka_unit_test(test_token_equal),
      cmocka_unit_test(test_random_hex),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
