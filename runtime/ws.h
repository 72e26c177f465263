/*
 * ws: the WebSocket framing of one server-side connection (RFC 6455), with
 * wslay's event API: wslay reads the client's frames (masking, fragments,
 * control frames, UTF-8 of text, close codes) out of the bytes conn hands
 * in, answers pings and closes, and gives each whole text message back.
 *
 * Frames the server sends are written by conn itself, from the frame it
 * already encoded once for every recipient: only the header (2 to 10
 * bytes, ws_header) differs per length, so a broadcast to WebSocket
 * sessions still shares one buffer.
 */
#ifndef HERALD_WS_H
#define HERALD_WS_H

#include <stddef.h>
#include <stdint.h>

#define WS_MAX_HEADER 10
/* RFC 6455's close codes that herald sends. */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_PROTOCOL_ERROR 1002
#define WS_CLOSE_BAD_DATA 1007
#define WS_CLOSE_TOO_BIG 1009

typedef struct ws ws_t;

typedef struct ws_callbacks {
  /* One whole text message. */
  void (*on_message)(void *data, const char *msg, size_t len);
  /* Bytes wslay wants on the wire (pongs, closes), in order. */
  void (*on_output)(void *data, const uint8_t *bytes, size_t len);
} ws_callbacks_t;

/* A server side WebSocket of messages up to max_message bytes; NULL when
 * memory runs out. */
ws_t *ws_new(size_t max_message, const ws_callbacks_t *cb, void *data);
void ws_free(ws_t *w);

typedef enum ws_status {
  WS_OPEN,        /* more may come */
  WS_PEER_CLOSED, /* the client closed; our close has been answered */
  WS_FAILED,      /* the client broke the protocol; a close was sent */
} ws_status_t;

/* Feeds bytes read from the client; messages and output follow through
 * the callbacks. After WS_PEER_CLOSED or WS_FAILED, nothing more is read. */
ws_status_t ws_input(ws_t *w, const uint8_t *data, size_t len);
/* The close code sent (WS_FAILED: why), or 0. */
unsigned ws_close_code(const ws_t *w);
/* Sends a close with code (once); output follows. */
void ws_close(ws_t *w, unsigned code);
/* Whether a close went out: nothing may follow it. */
int ws_close_sent(const ws_t *w);

/* The header of an unmasked, final text frame of len payload bytes, into
 * out; returns its length. */
size_t ws_header(uint8_t out[WS_MAX_HEADER], uint64_t len);

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64 of the
 * SHA-1 of key and RFC 6455's GUID, into out (29 bytes with the NUL).
 * -1 when key is not 16 bytes in base64. */
int ws_accept_key(const char *key, char out[29]);

#endif
