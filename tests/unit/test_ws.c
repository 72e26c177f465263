/*
 * Unit tests for runtime/ws.c: the upgrade's accept key (RFC 6455's own
 * example), the header of the frames the server writes, and what the
 * server makes of a client's frames through wslay: whole messages out of
 * fragments, pings answered, and a close with the right code for each
 * broken frame.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ws.h"

/* What a ws_t gave back: the messages and the bytes written. */
typedef struct seen {
  char messages[8][256];
  int nmessages;
  uint8_t out[1024];
  size_t out_len;
} seen_t;

static void on_message(void *data, const char *msg, size_t len) {
  seen_t *s = data;
  if (s->nmessages < 8)
    snprintf(s->messages[s->nmessages++], 256, "%.*s", (int)len, msg);
}

static void on_output(void *data, const uint8_t *bytes, size_t len) {
  seen_t *s = data;
  assert_true(s->out_len + len <= sizeof(s->out));
  memcpy(s->out + s->out_len, bytes, len);
  s->out_len += len;
}

static const ws_callbacks_t callbacks = {on_message, on_output};

/* A client frame: masked (unless mask is 0) with a fixed key. */
static size_t client_frame(uint8_t *out, int fin, int opcode,
                           const char *payload, size_t len, int mask) {
  static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  size_t n = 0;
  out[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  if (len < 126) {
    out[n++] = (uint8_t)((mask ? 0x80 : 0) | len);
  } else {
    out[n++] = (uint8_t)((mask ? 0x80 : 0) | 126);
    out[n++] = (uint8_t)(len >> 8);
    out[n++] = (uint8_t)len;
  }
  if (mask) {
    memcpy(out + n, key, 4);
    n += 4;
  }
  for (size_t i = 0; i < len; i++)
    out[n + i] = (uint8_t)payload[i] ^ (mask ? key[i % 4] : 0);
  return n + len;
}

static void accept_key_is_rfc_6455s_example(void **state) {
  char out[29];
  (void)state;
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
  assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void accept_key_refuses_what_is_not_a_nonce(void **state) {
  char out[29];
  (void)state;
  assert_int_equal(ws_accept_key("", out), -1);
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", out), -1);
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ===", out), -1);
  assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQAA", out), -1);
  assert_int_equal(ws_accept_key("!!!!!!!!!!!!!!!!!!!!!!==", out), -1);
}

static void header_uses_the_shortest_length(void **state) {
  uint8_t h[WS_MAX_HEADER];
  (void)state;
  assert_int_equal(ws_header(h, 0), 2);
  assert_int_equal(h[0], 0x81);
  assert_int_equal(h[1], 0);
  assert_int_equal(ws_header(h, 125), 2);
  assert_int_equal(h[1], 125);
  assert_int_equal(ws_header(h, 126), 4);
  assert_int_equal(h[1], 126);
  assert_int_equal(h[2], 0);
  assert_int_equal(h[3], 126);
  assert_int_equal(ws_header(h, 65535), 4);
  assert_int_equal(ws_header(h, 65536), 10);
  assert_int_equal(h[1], 127);
  assert_int_equal(h[7], 1); /* 65536 = 0x10000, big-endian */
  assert_int_equal(h[8], 0);
  assert_int_equal(h[9], 0);
}

static void fragments_make_one_message(void **state) {
  seen_t s = {0};
  uint8_t buf[256];
  size_t n = 0;
  ws_t *w = ws_new(1024, &callbacks, &s);
  (void)state;
  n += client_frame(buf + n, 0, 0x1, "{\"type\":", 8, 1);
  n += client_frame(buf + n, 0, 0x0, "\"pi", 3, 1);
  n += client_frame(buf + n, 1, 0x0, "ng\"}", 4, 1);
  n += client_frame(buf + n, 1, 0x1, "second", 6, 1);
  /* byte by byte: wslay keeps what it has */
  for (size_t i = 0; i < n; i++)
    assert_int_equal(ws_input(w, buf + i, 1), WS_OPEN);
  assert_int_equal(s.nmessages, 2);
  assert_string_equal(s.messages[0], "{\"type\":\"ping\"}");
  assert_string_equal(s.messages[1], "second");
  ws_free(w);
}

static void a_ping_gets_its_pong(void **state) {
  seen_t s = {0};
  uint8_t buf[64];
  size_t n = client_frame(buf, 1, 0x9, "hi", 2, 1);
  ws_t *w = ws_new(1024, &callbacks, &s);
  (void)state;
  assert_int_equal(ws_input(w, buf, n), WS_OPEN);
  assert_int_equal(s.out_len, 4);
  assert_int_equal(s.out[0], 0x8A); /* FIN, pong, unmasked */
  assert_int_equal(s.out[1], 2);
  assert_memory_equal(s.out + 2, "hi", 2);
  ws_free(w);
}

/* Feeds one client frame; returns the status and the close code sent. */
static ws_status_t feed(const uint8_t *buf, size_t n, size_t max,
                        unsigned *code, seen_t *s) {
  ws_t *w = ws_new(max, &callbacks, s);
  ws_status_t st = ws_input(w, buf, n);
  *code = ws_close_code(w);
  ws_free(w);
  return st;
}

static void broken_frames_close_with_their_code(void **state) {
  uint8_t buf[512];
  char big[300];
  unsigned code;
  seen_t s = {0};
  (void)state;
  memset(big, 'x', sizeof(big));

  assert_int_equal(feed(buf, client_frame(buf, 1, 0x2, "{}", 2, 1), 1024,
                        &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR); /* binary */
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x1, "{}", 2, 0), 1024,
                        &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR); /* unmasked */
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x1, "\xff\xfe", 2, 1),
                        1024, &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_BAD_DATA); /* not UTF-8 */
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x1, big, sizeof(big), 1),
                        256, &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_TOO_BIG);
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x0, "x", 1, 1), 1024,
                        &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR); /* stray continuation */
  assert_int_equal(s.nmessages, 0);
}

static void fragments_past_the_limit_are_too_big(void **state) {
  uint8_t buf[512];
  char part[200];
  size_t n = 0;
  unsigned code;
  seen_t s = {0};
  (void)state;
  memset(part, 'x', sizeof(part));
  n += client_frame(buf + n, 0, 0x1, part, sizeof(part), 1);
  n += client_frame(buf + n, 1, 0x0, part, sizeof(part), 1);
  assert_int_equal(feed(buf, n, 256, &code, &s), WS_FAILED);
  assert_int_equal(code, WS_CLOSE_TOO_BIG);
  assert_int_equal(s.nmessages, 0);
}

/* What wslay's frame layer refuses, and a close with a one-byte body, get
 * 1002 too (wslay itself would send a close without a code). */
static void malformed_control_frames_close_1002(void **state) {
  uint8_t buf[512];
  char big[200];
  unsigned code;
  seen_t s = {0};
  (void)state;
  memset(big, 'p', sizeof(big));
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x9, big, sizeof(big), 1),
                        1024, &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR); /* ping over 125 */
  assert_int_equal(s.out_len, 4);
  assert_int_equal(s.out[2], 0x03);
  assert_int_equal(s.out[3], 0xEA);
  memset(&s, 0, sizeof(s));
  assert_int_equal(feed(buf, client_frame(buf, 0, 0x9, "x", 1, 1), 1024,
                        &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR); /* fragmented ping */
  memset(&s, 0, sizeof(s));
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x8, "\x03", 1, 1), 1024,
                        &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR); /* one-byte close */
  assert_int_equal(s.out_len, 4);
  assert_int_equal(s.out[3], 0xEA);
  /* a close without a body is a clean one, answered without a code */
  memset(&s, 0, sizeof(s));
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x8, "", 0, 1), 1024,
                        &code, &s),
                   WS_PEER_CLOSED);
  assert_int_equal(s.out_len, 2);
}

static void a_close_is_answered(void **state) {
  uint8_t buf[64];
  unsigned code;
  seen_t s = {0};
  (void)state;
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x8, "\x03\xe8", 2, 1),
                        1024, &code, &s),
                   WS_PEER_CLOSED);
  assert_int_equal(code, 1000);
  assert_int_equal(s.out[0], 0x88);
  /* a close code no one may send (999) is a protocol error */
  memset(&s, 0, sizeof(s));
  assert_int_equal(feed(buf, client_frame(buf, 1, 0x8, "\x03\xe7", 2, 1),
                        1024, &code, &s),
                   WS_FAILED);
  assert_int_equal(code, WS_CLOSE_PROTOCOL_ERROR);
}

static void ws_close_goes_out_once(void **state) {
  seen_t s = {0};
  ws_t *w = ws_new(1024, &callbacks, &s);
  (void)state;
  assert_false(ws_close_sent(w));
  ws_close(w, WS_CLOSE_NORMAL);
  assert_true(ws_close_sent(w));
  assert_int_equal(s.out_len, 4);
  assert_int_equal(s.out[0], 0x88);
  assert_int_equal(s.out[2], 0x03);
  assert_int_equal(s.out[3], 0xE8);
  ws_close(w, WS_CLOSE_NORMAL);
  assert_int_equal(s.out_len, 4);
  ws_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accept_key_is_rfc_6455s_example),
      cmocka_unit_test(accept_key_refuses_what_is_not_a_nonce),
      cmocka_unit_test(header_uses_the_shortest_length),
      cmocka_unit_test(fragments_make_one_message),
      cmocka_unit_test(a_ping_gets_its_pong),
      cmocka_unit_test(broken_frames_close_with_their_code),
      cmocka_unit_test(fragments_past_the_limit_are_too_big),
      cmocka_unit_test(malformed_control_frames_close_1002),
      cmocka_unit_test(a_close_is_answered),
      cmocka_unit_test(ws_close_goes_out_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
