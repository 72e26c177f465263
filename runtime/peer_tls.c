/*
 * peer_tls: OpenSSL for herald client and herald call (peer.c). The
 * socket stays non-blocking and every wait goes through peer_wait_fd, so
 * SIGINT and SIGTERM interrupt a TLS connection as they do a plain one.
 */
#include "peer_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "peer.h"

struct peer_tls {
  SSL_CTX *ctx;
};

struct peer_tls_conn {
  SSL *ssl;
  int broken; /* a fatal error happened: no close_notify (OpenSSL's rule) */
};

/* The reason of OpenSSL's last queued error, or `fallback`. */
static const char *ssl_reason(const char *fallback) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
  return r != NULL ? r : fallback;
}

peer_tls_t *peer_tls_new(const char *ca, char *err, size_t errlen) {
  peer_tls_t *t = calloc(1, sizeof(*t));
  FILE *f;
  if (t == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ERR_clear_error();
  t->ctx = SSL_CTX_new(TLS_client_method());
  if (t->ctx == NULL) {
    snprintf(err, errlen, "cannot set up TLS: %s", ssl_reason("unknown"));
    goto fail;
  }
  SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
  /* A server that closes without close_notify has closed: lines carry
   * their own end, so a cut one is never taken for a whole one. */
  SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                   SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (ca == NULL) {
    if (SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
      snprintf(err, errlen, "cannot load the system's CA certificates: %s",
               ssl_reason("unknown"));
      goto fail;
    }
    return t;
  }
  /* fopen first: OpenSSL's own message would not say which errno */
  f = fopen(ca, "r");
  if (f == NULL) {
    snprintf(err, errlen, "cannot read %s: %s", ca, strerror(errno));
    goto fail;
  }
  fclose(f);
  if (SSL_CTX_load_verify_locations(t->ctx, ca, NULL) != 1) {
    snprintf(err, errlen, "%s holds no certificate (PEM expected): %s", ca,
             ssl_reason("unknown"));
    goto fail;
  }
  /* What the user names in --ca is trusted as it is, a server's own
   * certificate included (as curl does): herald cert makes self-signed
   * ones, and one may be given instead of a CA. */
  X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(t->ctx),
                              X509_V_FLAG_PARTIAL_CHAIN);
  return t;

fail:
  peer_tls_free(t);
  return NULL;
}

void peer_tls_free(peer_tls_t *t) {
  if (t == NULL) return;
  SSL_CTX_free(t->ctx);
  free(t);
}

/* Whether the handshake error in OpenSSL's queue means that the other end
 * answered with something that is not TLS (a plaintext herald). */
static int not_tls(void) {
  unsigned long e = ERR_peek_last_error();
  if (ERR_GET_LIB(e) != ERR_LIB_SSL) return 0;
  switch (ERR_GET_REASON(e)) {
  case SSL_R_WRONG_VERSION_NUMBER:
  case SSL_R_PACKET_LENGTH_TOO_LONG:
  case SSL_R_RECORD_LENGTH_MISMATCH:
  case SSL_R_UNKNOWN_PROTOCOL:
    return 1;
  default:
    return 0;
  }
}

int peer_tls_connect(peer_tls_t *t, int fd, const char *host,
                     int64_t deadline, peer_tls_conn_t **out, char *err,
                     size_t errlen) {
  peer_tls_conn_t *c = calloc(1, sizeof(*c));
  unsigned char ip[16];
  int rc = PEER_TLS_REFUSED;

  *out = NULL;
  ERR_clear_error();
  if (c == NULL || (c->ssl = SSL_new(t->ctx)) == NULL ||
      SSL_set_fd(c->ssl, fd) != 1) {
    snprintf(err, errlen, "cannot set up TLS: %s",
             ssl_reason("out of memory"));
    goto fail;
  }
  if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
    /* an address: checked against the certificate's IP entries; SNI
     * carries names only (RFC 6066) */
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1) {
      snprintf(err, errlen, "cannot check the address %s", host);
      goto fail;
    }
  } else if (SSL_set_tlsext_host_name(c->ssl, host) != 1 ||
             SSL_set1_host(c->ssl, host) != 1) {
    snprintf(err, errlen, "cannot check the name %s: %s", host,
             ssl_reason("invalid"));
    goto fail;
  }

  for (;;) {
    int r, e, w;
    long v;
    ERR_clear_error();
    r = SSL_connect(c->ssl);
    if (r == 1) break;
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      w = peer_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                       deadline, 1);
      if (w == PEER_WAIT_SIGNAL) {
        rc = PEER_TLS_SIGNAL;
        goto fail;
      }
      if (w == 0) {
        snprintf(err, errlen, "the server did not finish the TLS handshake "
                 "in time");
        rc = PEER_TLS_FAILED;
        goto fail;
      }
      if (w < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        rc = PEER_TLS_FAILED;
        goto fail;
      }
      continue;
    }
    c->broken = 1;
    v = SSL_get_verify_result(c->ssl);
    if (e == SSL_ERROR_SSL && v != X509_V_OK) {
      snprintf(err, errlen, "certificate verify failed (%s)",
               X509_verify_cert_error_string(v));
    } else if (e == SSL_ERROR_SSL && not_tls()) {
      snprintf(err, errlen, "the server does not speak TLS (%s)",
               ssl_reason("unknown"));
    } else if (e == SSL_ERROR_SSL) {
      snprintf(err, errlen, "%s", ssl_reason("handshake failed"));
    } else {
      /* SSL_ERROR_SYSCALL or ZERO_RETURN: the network, not TLS */
      snprintf(err, errlen, "%s",
               e == SSL_ERROR_SYSCALL && errno != 0 && r < 0
                   ? strerror(errno)
                   : "the server closed the connection");
      rc = PEER_TLS_FAILED;
    }
    goto fail;
  }
  *out = c;
  return PEER_TLS_OK;

fail:
  peer_tls_close(c);
  return rc;
}

/* Turns SSL_read's or SSL_write's result r into peer_tls_read's. */
static ssize_t io_result(peer_tls_conn_t *c, int r, short *want, char *err,
                         size_t errlen) {
  int e;
  if (r > 0) return r;
  e = SSL_get_error(c->ssl, r);
  switch (e) {
  case SSL_ERROR_WANT_READ:
    *want = POLLIN;
    return PEER_TLS_AGAIN;
  case SSL_ERROR_WANT_WRITE:
    *want = POLLOUT;
    return PEER_TLS_AGAIN;
  case SSL_ERROR_ZERO_RETURN:
    return 0;
  case SSL_ERROR_SYSCALL:
    c->broken = 1;
    if (r == 0 || errno == 0) return 0; /* end of stream */
    snprintf(err, errlen, "%s", strerror(errno));
    return -1;
  default:
    c->broken = 1;
    snprintf(err, errlen, "TLS: %s", ssl_reason("protocol error"));
    return -1;
  }
}

ssize_t peer_tls_read(peer_tls_conn_t *c, char *buf, size_t n, short *want,
                      char *err, size_t errlen) {
  int r;
  ERR_clear_error();
  errno = 0;
  r = SSL_read(c->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
  return io_result(c, r, want, err, errlen);
}

ssize_t peer_tls_write(peer_tls_conn_t *c, const char *buf, size_t n,
                       short *want, char *err, size_t errlen) {
  ssize_t r;
  ERR_clear_error();
  errno = 0;
  r = io_result(c, SSL_write(c->ssl, buf, n > INT_MAX ? INT_MAX : (int)n),
                want, err, errlen);
  if (r == 0) { /* no end of stream for a write: the server went away */
    snprintf(err, errlen, "the server closed the connection");
    return -1;
  }
  return r;
}

int peer_tls_pending(const peer_tls_conn_t *c) {
  return SSL_has_pending(c->ssl);
}

void peer_tls_close(peer_tls_conn_t *c) {
  if (c == NULL) return;
  if (c->ssl != NULL) {
    /* one try, no wait: the server need not answer, only learn that
     * the end is deliberate */
    if (!c->broken && SSL_is_init_finished(c->ssl)) SSL_shutdown(c->ssl);
    SSL_free(c->ssl);
  }
  free(c);
  ERR_clear_error();
}
