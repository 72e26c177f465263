/*
 * tls: TLS for the server's connections, with OpenSSL over memory BIOs:
 * conn reads ciphertext from the socket and feeds it in, takes plaintext
 * out; it hands plaintext in and writes the ciphertext that comes out.
 * libuv keeps owning the socket, so a TLS connection lives on the loop
 * like any other.
 */
#ifndef HERALD_TLS_H
#define HERALD_TLS_H

#include <stddef.h>
#include <sys/types.h>

typedef struct tls_ctx tls_ctx_t;
typedef struct tls_conn tls_conn_t;

/*
 * A server context: TLS 1.2 or later with OpenSSL's secure defaults, the
 * certificate chain and key from the PEM files. NULL with the reason (and
 * the path) in err.
 */
tls_ctx_t *tls_ctx_new_server(const char *cert, const char *key, char *err,
                              size_t errlen);
void tls_ctx_free(tls_ctx_t *ctx);

/* A server side connection of ctx; NULL when memory runs out. */
tls_conn_t *tls_conn_new(tls_ctx_t *ctx);
void tls_conn_free(tls_conn_t *t);

/* Ciphertext read from the socket. 0, or -1 when memory runs out. */
int tls_conn_feed(tls_conn_t *t, const char *data, size_t len);
/*
 * Plaintext out: > 0 bytes read into out, 0 when more ciphertext is
 * needed, -1 when the connection failed (why in err: a plaintext client, a
 * bad handshake) or the peer closed it.
 */
ssize_t tls_conn_read(tls_conn_t *t, char *out, size_t cap, char *err,
                      size_t errlen);
/* Plaintext in: encrypted at once into the ciphertext waiting to go out.
 * 0, or -1 (the connection failed). */
int tls_conn_write(tls_conn_t *t, const char *data, size_t len);
/* Starts the TLS close (close_notify), to go out with the rest. */
void tls_conn_shutdown(tls_conn_t *t);
/* Ciphertext waiting to be written to the socket, and taking it: up to cap
 * bytes into out, returns how many. */
size_t tls_conn_pending(tls_conn_t *t);
size_t tls_conn_take(tls_conn_t *t, char *out, size_t cap);

#endif
