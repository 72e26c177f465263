/*
 * peer_tls: the TLS side of a command-line connection (herald client and
 * herald call, through peer.c): OpenSSL 3 over a non-blocking socket that
 * peer.c opened, TLS 1.2 at least, the server's certificate verified
 * against the system's CA store or a CA file, and its name or IP address
 * against the host the user gave. OpenSSL stays behind this interface.
 */
#ifndef HERALD_PEER_TLS_H
#define HERALD_PEER_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The settings every connection of one command shares (an SSL_CTX). */
typedef struct peer_tls peer_tls_t;
/* One TLS connection over a socket it does not own. */
typedef struct peer_tls_conn peer_tls_conn_t;

/* peer_tls_connect's results */
enum { PEER_TLS_OK = 0, PEER_TLS_FAILED = -1, PEER_TLS_REFUSED = -2,
       PEER_TLS_SIGNAL = -3 };
/* peer_tls_read and peer_tls_write: nothing now, wait for *want */
enum { PEER_TLS_AGAIN = -2 };

/*
 * The settings: certificates verified against the CA file `ca`, or the
 * system's store when ca is NULL. Returns NULL with the reason in err
 * ("cannot read FILE: why", "FILE holds no certificate").
 */
peer_tls_t *peer_tls_new(const char *ca, char *err, size_t errlen);
void peer_tls_free(peer_tls_t *t);

/*
 * Runs the TLS handshake on fd (connected, non-blocking) with the server
 * named `host` (a name, or an IPv4 or IPv6 address, without brackets),
 * until the monotonic deadline (ms); SIGINT and SIGTERM interrupt it
 * (peer_wait_fd). PEER_TLS_OK: *out is the connection. PEER_TLS_REFUSED:
 * retrying cannot help (the certificate failed verification, the server
 * does not speak TLS, no common protocol); PEER_TLS_FAILED: the network
 * failed (closed, reset, too slow). Both say why in err.
 */
int peer_tls_connect(peer_tls_t *t, int fd, const char *host,
                     int64_t deadline, peer_tls_conn_t **out, char *err,
                     size_t errlen);

/*
 * Reads or writes at most n bytes: the count (> 0), 0 at the end of the
 * stream (read only), PEER_TLS_AGAIN when the socket must first be ready
 * for *want (POLLIN or POLLOUT: TLS may need to write to read, and the
 * reverse), -1 with the reason in err. A write retried after
 * PEER_TLS_AGAIN must offer the same bytes again.
 */
ssize_t peer_tls_read(peer_tls_conn_t *c, char *buf, size_t n, short *want,
                      char *err, size_t errlen);
ssize_t peer_tls_write(peer_tls_conn_t *c, const char *buf, size_t n,
                       short *want, char *err, size_t errlen);

/*
 * Whether TLS holds bytes it already took from the socket (a decrypted
 * record, or the start of the next one): poll cannot see those, so the
 * reader tries peer_tls_read before it waits on the socket.
 */
int peer_tls_pending(const peer_tls_conn_t *c);

/* Sends close_notify when the connection is still sound (without waiting)
 * and frees c (NULL is fine); the socket stays open. */
void peer_tls_close(peer_tls_conn_t *c);

#endif
