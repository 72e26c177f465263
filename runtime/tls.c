#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

struct tls_ctx {
  SSL_CTX *ssl;
};

struct tls_conn {
  SSL *ssl;
  BIO *in, *out; /* owned by ssl */
};

/* OpenSSL's last error as text, after what. */
static void describe(const char *what, char *err, size_t errlen) {
  unsigned long e = ERR_get_error();
  char why[256] = "unknown error";
  if (e != 0)
    ERR_error_string_n(e, why, sizeof(why));
  ERR_clear_error();
  snprintf(err, errlen, "%s: %s", what, why);
}

tls_ctx_t *tls_ctx_new_server(const char *cert, const char *key, char *err,
                              size_t errlen) {
  tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
  char what[600];
  if (ctx == NULL || (ctx->ssl = SSL_CTX_new(TLS_server_method())) == NULL) {
    snprintf(err, errlen, "out of memory");
    free(ctx);
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_2_VERSION);
  /* An idle connection keeps no read or write buffer. */
  SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_use_certificate_chain_file(ctx->ssl, cert) != 1) {
    snprintf(what, sizeof(what), "cannot load the certificate %s", cert);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx->ssl, key, SSL_FILETYPE_PEM) != 1) {
    snprintf(what, sizeof(what), "cannot load the key %s", key);
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
    snprintf(what, sizeof(what), "the key %s does not match the "
             "certificate %s", key, cert);
    goto fail;
  }
  return ctx;
fail:
  describe(what, err, errlen);
  tls_ctx_free(ctx);
  return NULL;
}

void tls_ctx_free(tls_ctx_t *ctx) {
  if (ctx == NULL)
    return;
  SSL_CTX_free(ctx->ssl);
  free(ctx);
}

tls_conn_t *tls_conn_new(tls_ctx_t *ctx) {
  tls_conn_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  t->ssl = SSL_new(ctx->ssl);
  t->in = BIO_new(BIO_s_mem());
  t->out = BIO_new(BIO_s_mem());
  if (t->ssl == NULL || t->in == NULL || t->out == NULL) {
    BIO_free(t->in);
    BIO_free(t->out);
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  SSL_set_bio(t->ssl, t->in, t->out);
  SSL_set_accept_state(t->ssl);
  return t;
}

void tls_conn_free(tls_conn_t *t) {
  if (t == NULL)
    return;
  SSL_free(t->ssl);
  free(t);
}

int tls_conn_feed(tls_conn_t *t, const char *data, size_t len) {
  return BIO_write(t->in, data, (int)len) == (int)len ? 0 : -1;
}

ssize_t tls_conn_read(tls_conn_t *t, char *out, size_t cap, char *err,
                      size_t errlen) {
  int n = SSL_read(t->ssl, out, (int)cap);
  if (n > 0)
    return n;
  switch (SSL_get_error(t->ssl, n)) {
  case SSL_ERROR_WANT_READ:
  case SSL_ERROR_WANT_WRITE: /* a memory BIO always takes the write */
    return 0;
  case SSL_ERROR_ZERO_RETURN:
    snprintf(err, errlen, "closed by the client");
    return -1;
  default:
    describe(SSL_is_init_finished(t->ssl) ? "TLS failed"
                                          : "TLS handshake failed",
             err, errlen);
    return -1;
  }
}

int tls_conn_write(tls_conn_t *t, const char *data, size_t len) {
  if (len == 0)
    return 0;
  if (SSL_write(t->ssl, data, (int)len) != (int)len) {
    ERR_clear_error();
    return -1;
  }
  return 0;
}

void tls_conn_shutdown(tls_conn_t *t) {
  if (SSL_is_init_finished(t->ssl))
    SSL_shutdown(t->ssl);
  ERR_clear_error();
}

size_t tls_conn_pending(tls_conn_t *t) { return BIO_ctrl_pending(t->out); }

size_t tls_conn_take(tls_conn_t *t, char *out, size_t cap) {
  int n = BIO_read(t->out, out, (int)cap);
  return n > 0 ? (size_t)n : 0;
}
