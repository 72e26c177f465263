#include "ws.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct ws {
  wslay_event_context_ptr ctx;
  ws_callbacks_t cb;
  void *data;
  const uint8_t *in; /* what ws_input was given and wslay has not read */
  size_t in_len;
  int bad_close;     /* the client broke the protocol where wslay sends a
                        close without a code: it goes out as 1002 */
};

/* A close frame without a code, as wslay sends it: see send_cb. */
static const uint8_t empty_close[2] = {0x88, 0x00};
static const uint8_t protocol_error_close[4] = {0x88, 0x02, 0x03, 0xEA};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user) {
  ws_t *w = user;
  (void)flags;
  if (w->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > w->in_len)
    len = w->in_len;
  memcpy(buf, w->in, len);
  w->in += len;
  w->in_len -= len;
  return (ssize_t)len;
}

/*
 * conn takes every byte at once (it queues what the socket does not).
 *
 * wslay answers a frame its frame layer refuses (a control frame over 125
 * bytes or fragmented, a length with its top bit set) with a close that
 * has no code, and a client's close with a one-byte body (RFC 6455 5.5.1:
 * malformed) with an empty close as if it were a clean one. The client
 * must hear 1002 (protocol error) in both cases: such a close is sent as
 * that. A close is sent whole in one call, as conn takes every byte.
 */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user) {
  ws_t *w = user;
  (void)flags;
  if (len == sizeof(empty_close) &&
      memcmp(data, empty_close, sizeof(empty_close)) == 0 &&
      (w->bad_close || !wslay_event_get_close_received(ctx))) {
    w->bad_close = 1;
    w->cb.on_output(w->data, protocol_error_close,
                    sizeof(protocol_error_close));
    return (ssize_t)len;
  }
  w->cb.on_output(w->data, data, len);
  return (ssize_t)len;
}

static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg, void *user) {
  ws_t *w = user;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1) {
    w->bad_close = 1; /* its echo, already queued, goes out as 1002 */
  } else if (arg->opcode == WSLAY_TEXT_FRAME) {
    w->cb.on_message(w->data, (const char *)arg->msg, arg->msg_length);
  } else if (arg->opcode == WSLAY_BINARY_FRAME) {
    /* The protocol is JSON text; a binary message is a broken client. */
    static const char why[] = "binary messages are not used";
    wslay_event_queue_close(ctx, WS_CLOSE_PROTOCOL_ERROR,
                            (const uint8_t *)why, sizeof(why) - 1);
    wslay_event_shutdown_read(ctx);
  }
}

ws_t *ws_new(size_t max_message, const ws_callbacks_t *cb, void *data) {
  static const struct wslay_event_callbacks callbacks = {
      recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg};
  ws_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return NULL;
  if (wslay_event_context_server_init(&w->ctx, &callbacks, w) != 0) {
    free(w);
    return NULL;
  }
  wslay_event_config_set_max_recv_msg_length(w->ctx, max_message);
  w->cb = *cb;
  w->data = data;
  return w;
}

void ws_free(ws_t *w) {
  if (w == NULL)
    return;
  wslay_event_context_free(w->ctx);
  free(w);
}

ws_status_t ws_input(ws_t *w, const uint8_t *data, size_t len) {
  w->in = data;
  w->in_len = len;
  if (wslay_event_get_read_enabled(w->ctx))
    wslay_event_recv(w->ctx);
  w->in_len = 0;
  wslay_event_send(w->ctx);
  if (wslay_event_get_read_enabled(w->ctx))
    return WS_OPEN;
  if (wslay_event_get_close_received(w->ctx) && !w->bad_close)
    return WS_PEER_CLOSED;
  return WS_FAILED;
}

unsigned ws_close_code(const ws_t *w) {
  if (!wslay_event_get_close_sent(w->ctx))
    return 0;
  return w->bad_close ? WS_CLOSE_PROTOCOL_ERROR
                      : wslay_event_get_status_code_sent(w->ctx);
}

int ws_close_sent(const ws_t *w) {
  return wslay_event_get_close_sent(w->ctx);
}

void ws_close(ws_t *w, unsigned code) {
  if (!wslay_event_get_close_sent(w->ctx)) {
    wslay_event_queue_close(w->ctx, (uint16_t)code, NULL, 0);
    wslay_event_send(w->ctx);
  }
}

size_t ws_header(uint8_t out[WS_MAX_HEADER], uint64_t len) {
  size_t n = 2;
  out[0] = 0x80 | WSLAY_TEXT_FRAME; /* FIN, text */
  if (len < 126) {
    out[1] = (uint8_t)len;
  } else if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = 127;
    for (int i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  return n;
}

int ws_accept_key(const char *key, char out[29]) {
  unsigned char raw[20], md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  char joined[64];
  size_t klen = strlen(key);
  EVP_MD_CTX *md_ctx;

  /* A 16-byte nonce in base64 is 24 characters, ending "==". */
  if (klen != 24 || EVP_DecodeBlock(raw, (const unsigned char *)key, 24) !=
                        18 ||
      key[22] != '=' || key[23] != '=')
    return -1;
  memcpy(joined, key, klen);
  memcpy(joined + klen, WS_GUID, sizeof(WS_GUID));
  md_ctx = EVP_MD_CTX_new();
  if (md_ctx == NULL ||
      EVP_DigestInit_ex(md_ctx, EVP_sha1(), NULL) != 1 ||
      EVP_DigestUpdate(md_ctx, joined, strlen(joined)) != 1 ||
      EVP_DigestFinal_ex(md_ctx, md, &mdlen) != 1) {
    EVP_MD_CTX_free(md_ctx);
    return -1;
  }
  EVP_MD_CTX_free(md_ctx);
  EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
  return 0;
}
