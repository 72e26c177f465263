#include "http.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "clock.h"
#include "conn.h"
#include "log.h"
#include "web.h"
#include "ws.h"
#include "text.h"

/* A request's line and headers together; a browser's are far smaller. */
#define HTTP_MAX_HEAD (8 * 1024)
#define HTTP_URL_MAX 1024
#define HTTP_VALUE_MAX 256
#define HTTP_LISTEN_BACKLOG 511
/* Where the pages' scripts and styles are (pages have their own paths). */
#define STATIC_PREFIX "/static/"

/* Every answer: only the page's own scripts, styles and WebSocket. */
#define SECURITY_HEADERS                                                     \
  "Content-Security-Policy: default-src 'none'; script-src 'self'; "        \
  "style-src 'self'; img-src 'self' data:; connect-src 'self'; "            \
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"         \
  "X-Content-Type-Options: nosniff\r\n"                                     \
  "Referrer-Policy: no-referrer\r\n"

/* The headers a request is judged by; the others are skipped. */
enum header_slot {
  H_NONE = -1,
  H_HOST,
  H_ORIGIN,
  H_UPGRADE,
  H_CONNECTION,
  H_WS_KEY,
  H_WS_VERSION,
  H_COUNT
};

static const char *const header_names[H_COUNT] = {
    "host", "origin", "upgrade", "connection", "sec-websocket-key",
    "sec-websocket-version"};

typedef struct request request_t;

struct http {
  server_t *srv;
  webadmin_t *admin;
  uv_tcp_t listener;
  int port;
  request_t *requests; /* in progress, for http_stop */
};

struct request {
  http_t *http;
  conn_t *conn; /* NULL once handed over or closed */
  http_parser parser;
  uv_timer_t deadline;
  char url[HTTP_URL_MAX + 1];
  size_t url_len;
  char field[32]; /* the header name being read (cut: it is not one of
                     ours then) */
  size_t field_len;
  int field_done, slot;
  char values[H_COUNT][HTTP_VALUE_MAX + 1];
  size_t value_len[H_COUNT];
  unsigned complete : 1, has_body : 1, too_long : 1;
  request_t *prev, *next;
};

/* --- parsing ------------------------------------------------------------ */

static int on_url(http_parser *p, const char *at, size_t len) {
  request_t *r = p->data;
  if (r->url_len + len > HTTP_URL_MAX) {
    r->too_long = 1;
    return 0;
  }
  memcpy(r->url + r->url_len, at, len);
  r->url_len += len;
  r->url[r->url_len] = '\0';
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  request_t *r = p->data;
  if (r->field_done) { /* a new header begins */
    r->field_len = 0;
    r->field_done = 0;
  }
  if (r->field_len + len < sizeof(r->field)) {
    memcpy(r->field + r->field_len, at, len);
    r->field_len += len;
  } else {
    r->field_len = sizeof(r->field); /* too long to be ours */
  }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  request_t *r = p->data;
  if (!r->field_done) {
    r->field_done = 1;
    r->slot = H_NONE;
    for (int i = 0; i < H_COUNT && r->field_len < sizeof(r->field); i++)
      if (strlen(header_names[i]) == r->field_len &&
          strncasecmp(header_names[i], r->field, r->field_len) == 0)
        r->slot = i;
  }
  if (r->slot != H_NONE) {
    size_t *n = &r->value_len[r->slot];
    if (*n + len > HTTP_VALUE_MAX) {
      r->too_long = 1;
      return 0;
    }
    memcpy(r->values[r->slot] + *n, at, len);
    *n += len;
    r->values[r->slot][*n] = '\0';
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  request_t *r = p->data;
  r->has_body = (p->flags & F_CHUNKED) != 0 ||
                (p->content_length > 0 && p->content_length != ULLONG_MAX);
  return 1; /* no body is read: one is refused */
}

static int on_message_complete(http_parser *p) {
  request_t *r = p->data;
  r->complete = 1;
  http_parser_pause(p, 1); /* one request per connection */
  return 0;
}

/* --- answers ------------------------------------------------------------ */

/* Sends an answer, then ends the connection. */
static void answer(request_t *r, int status, const char *extra_headers,
                   const char *type, const char *cache, const char *body,
                   size_t body_len) {
  char head[1024];
  int head_only = r->parser.method == HTTP_HEAD;
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %zu\r\n"
                   "Cache-Control: %s\r\n"
                   SECURITY_HEADERS
                   "%s"
                   "Connection: close\r\n\r\n",
                   status, http_status_str((enum http_status)status), type,
                   body_len, cache, extra_headers);
  size_t len = (size_t)n + (head_only ? 0 : body_len);
  outbuf_t *b = outbuf_new(len);
  conn_t *c = r->conn;

  uv_timer_stop(&r->deadline);
  if (b != NULL) {
    memcpy(b->data, head, (size_t)n);
    if (!head_only)
      memcpy(b->data + n, body, body_len);
    conn_send_raw(c, b);
    outbuf_unref(b);
  }
  conn_end(c);
}

static void answer_error(request_t *r, int status, const char *extra,
                         const char *why) {
  char body[256];
  int n = snprintf(body, sizeof(body), "%d %s: %s\n", status,
                   http_status_str((enum http_status)status), why);
  answer(r, status, extra, "text/plain; charset=utf-8", "no-store", body,
         (size_t)n);
}

static void answer_file(request_t *r, const char *name, int page) {
  const web_asset_t *a = web_find(name);
  if (a == NULL) {
    answer_error(r, 404, "", "no such page");
    return;
  }
  /* Pages are checked on every visit (they name the scripts); scripts and
   * styles may be kept a while. */
  answer(r, 200, "", web_content_type(name),
         page ? "no-cache" : "max-age=3600", a->data, a->len);
}

/* --- the upgrade -------------------------------------------------------- */

/* Whether the comma-separated list holds token (any case). */
static int has_token(const char *list, const char *token) {
  size_t tl = strlen(token);
  const char *p = list;
  while (*p != '\0') {
    size_t n;
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    n = strcspn(p, ", \t");
    if (n == tl && strncasecmp(p, token, tl) == 0)
      return 1;
    p += n;
  }
  return 0;
}

/* A page from another site may not use a visitor's browser to reach us:
 * the Origin (when a browser sends one) must name the host asked. */
static int same_origin(const request_t *r) {
  const char *origin = r->values[H_ORIGIN], *host = r->values[H_HOST];
  const char *sep;
  if (r->value_len[H_ORIGIN] == 0)
    return 1; /* not a browser: nothing to protect */
  sep = strstr(origin, "://");
  return sep != NULL && r->value_len[H_HOST] > 0 &&
         strcasecmp(sep + 3, host) == 0;
}

static void free_data(uv_handle_t *h) { free(h->data); }

/* The request is done with its connection: forget it. */
static void release(request_t *r) {
  http_t *h = r->http;
  if (r->prev != NULL)
    r->prev->next = r->next;
  else
    h->requests = r->next;
  if (r->next != NULL)
    r->next->prev = r->prev;
  r->conn = NULL;
  uv_close((uv_handle_t *)&r->deadline, free_data);
}

static void upgrade(request_t *r, int admin, char *rest, size_t rest_len) {
  char accept[29], reply[256];
  http_t *h = r->http;
  conn_t *c = r->conn;
  outbuf_t *b;
  int n;

  /* RFC 6455 4.2.1: an HTTP/1.1 (or later) GET. */
  if (!r->parser.upgrade || r->parser.method != HTTP_GET ||
      r->parser.http_major < 1 ||
      (r->parser.http_major == 1 && r->parser.http_minor < 1) ||
      !has_token(r->values[H_UPGRADE], "websocket") ||
      !has_token(r->values[H_CONNECTION], "upgrade") ||
      strcmp(r->values[H_WS_VERSION], "13") != 0 ||
      ws_accept_key(r->values[H_WS_KEY], accept) < 0) {
    answer_error(r, 400, "Sec-WebSocket-Version: 13\r\n",
                 "a WebSocket upgrade (RFC 6455, version 13) expected");
    return;
  }
  if (!same_origin(r)) {
    log_info("WebSocket from a page of another site refused (Origin %s, "
             "Host %s)", r->values[H_ORIGIN], r->values[H_HOST]);
    answer_error(r, 403, "", "this page's origin may not connect here");
    return;
  }
  n = snprintf(reply, sizeof(reply),
               "HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n", accept);
  b = outbuf_copy(reply, (size_t)n);
  if (b == NULL || conn_use_websocket(c) < 0) {
    if (b != NULL)
      outbuf_unref(b);
    conn_close(c);
    return;
  }
  conn_send_raw(c, b);
  outbuf_unref(b);
  if (admin)
    webadmin_adopt(h->admin, c);
  else
    server_adopt(h->srv, c);
  release(r); /* r is freed after this returns */
  conn_feed(c, rest, rest_len);
}

/* A whole request (or its head, for an upgrade): answers it. rest is what
 * came after it (the first WebSocket frames). */
static void route(request_t *r, char *rest, size_t rest_len) {
  struct http_parser_url u;
  char path[HTTP_URL_MAX + 1];
  unsigned method = r->parser.method;

  if (r->too_long) {
    answer_error(r, 413, "", "request line or header too long");
    return;
  }
  if (method != HTTP_GET && method != HTTP_HEAD) {
    answer_error(r, 405, "Allow: GET, HEAD\r\n", "only GET and HEAD");
    return;
  }
  if (r->has_body) {
    answer_error(r, 413, "", "a request with a body");
    return;
  }
  http_parser_url_init(&u);
  if (http_parser_parse_url(r->url, r->url_len, 0, &u) != 0 ||
      !(u.field_set & (1 << UF_PATH))) {
    answer_error(r, 400, "", "bad request target");
    return;
  }
  snprintf(path, sizeof(path), "%.*s", (int)u.field_data[UF_PATH].len,
           r->url + u.field_data[UF_PATH].off);
  if (strcmp(path, "/ws") == 0 || strcmp(path, "/admin/ws") == 0) {
    upgrade(r, path[1] == 'a', rest, rest_len);
  } else if (strcmp(path, "/") == 0 || strcmp(path, "/index.html") == 0) {
    answer_file(r, "index.html", 1);
  } else if (strcmp(path, "/admin") == 0) {
    answer_file(r, "admin.html", 1);
  } else if (TEXT_STARTS_WITH(path, STATIC_PREFIX) &&
             strchr(path + strlen(STATIC_PREFIX), '/') == NULL &&
             strstr(path, ".html") == NULL) {
    answer_file(r, path + strlen(STATIC_PREFIX), 0);
  } else {
    answer_error(r, 404, "", "no such page");
  }
}

static void on_request_data(conn_t *c, char *data, size_t len) {
  static const http_parser_settings settings = {
      .on_url = on_url,
      .on_header_field = on_header_field,
      .on_header_value = on_header_value,
      .on_headers_complete = on_headers_complete,
      .on_message_complete = on_message_complete,
  };
  request_t *r = conn_owner(c);
  size_t used;

  if (r == NULL || r->complete)
    return; /* answered: the rest is ignored */
  used = http_parser_execute(&r->parser, &settings, data, len);
  if (!r->parser.upgrade && !r->complete) {
    if (HTTP_PARSER_ERRNO(&r->parser) == HPE_HEADER_OVERFLOW) {
      r->complete = 1;
      answer_error(r, 413, "", "request head over 8 KiB");
    } else if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK) {
      r->complete = 1;
      answer_error(r, 400, "",
                   http_errno_description(HTTP_PARSER_ERRNO(&r->parser)));
    }
    return;
  }
  r->complete = 1;
  route(r, data + used, len - used);
}

static void on_request_close(conn_t *c) {
  request_t *r = conn_owner(c);
  if (r != NULL)
    release(r);
}

static void on_request_too_large(conn_t *c) { conn_close(c); }

/* Only TLS tells of an end before the request: say why in the log. */
static void on_request_eof(conn_t *c, int status) {
  char ip[48];
  if (status == UV_EPROTO && conn_error(c) != NULL) {
    conn_peer_ip(c, ip, sizeof(ip));
    log_info("connection from %s to the pages closed: %s", ip,
             conn_error(c));
  }
}

static const conn_handler_t request_handler = {
    .on_too_large = on_request_too_large,
    .on_eof = on_request_eof,
    .on_close = on_request_close,
    .on_data = on_request_data,
};

static void on_deadline(uv_timer_t *t) {
  request_t *r = t->data;
  if (r->conn != NULL && !r->complete) {
    r->complete = 1;
    answer_error(r, 408, "", "the request did not come in time");
  }
}

/* --- the listener -------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status) {
  http_t *h = listener->data;
  const config_t *cfg = server_config(h->srv);
  tls_ctx_t *tls = server_tls(h->srv);
  request_t *r;
  conn_t *c;

  if (status < 0) {
    server_accept_failed(h->srv, status);
    return;
  }
  c = conn_new(listener->loop, CONN_TCP, &request_handler,
               (size_t)cfg->max_frame);
  if (c == NULL)
    return;
  r = calloc(1, sizeof(*r));
  if (r == NULL || uv_accept(listener, conn_stream(c)) != 0 ||
      (tls != NULL && conn_use_tls(c, tls) < 0)) {
    free(r);
    conn_close(c);
    return;
  }
  conn_set_raw(c);
  conn_set_max_queued(c, (size_t)cfg->max_outbound_bytes);
  r->http = h;
  r->conn = c;
  http_parser_init(&r->parser, HTTP_REQUEST);
  r->parser.data = r;
  uv_timer_init(listener->loop, &r->deadline);
  r->deadline.data = r;
  uv_timer_start(&r->deadline, on_deadline,
                 (uint64_t)(cfg->handshake_timeout * 1000), 0);
  r->next = h->requests;
  if (h->requests != NULL)
    h->requests->prev = r;
  h->requests = r;
  conn_set_owner(c, r);
  uv_tcp_nodelay((uv_tcp_t *)conn_stream(c), 1);
  if (conn_start(c) < 0)
    conn_close(c);
}

http_t *http_start(server_t *srv, webadmin_t *admin, char *err,
                   size_t errlen) {
  const netaddr_t *a = &server_config(srv)->http_listen;
  struct sockaddr_storage addr;
  int namelen = sizeof(addr), r;
  const char *host = strcmp(a->host, "localhost") == 0 ? "127.0.0.1"
                                                        : a->host;
  http_t *h = calloc(1, sizeof(*h));

  if (h == NULL) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (uv_ip4_addr(host, a->port, (struct sockaddr_in *)&addr) != 0 &&
      uv_ip6_addr(host, a->port, (struct sockaddr_in6 *)&addr) != 0) {
    snprintf(err, errlen, "http_listen address '%s' is not an IP address "
             "(or localhost)", a->host);
    free(h);
    return NULL;
  }
  h->srv = srv;
  h->admin = admin;
  /* The request line and headers together, counted across reads. */
  http_parser_set_max_header_size(HTTP_MAX_HEAD);
  uv_tcp_init(server_loop(srv), &h->listener);
  h->listener.data = h;
  r = uv_tcp_bind(&h->listener, (struct sockaddr *)&addr, 0);
  if (r == 0)
    r = uv_listen((uv_stream_t *)&h->listener, HTTP_LISTEN_BACKLOG,
                  on_connection);
  if (r != 0) {
    snprintf(err, errlen, "cannot listen on %s:%d (http_listen): %s; choose "
             "another with http_listen or --http-listen", a->host, a->port,
             uv_strerror(r));
    uv_close((uv_handle_t *)&h->listener, free_data);
    return NULL;
  }
  uv_tcp_getsockname(&h->listener, (struct sockaddr *)&addr, &namelen);
  h->port = ntohs(addr.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&addr)->sin6_port
                      : ((struct sockaddr_in *)&addr)->sin_port);
  return h;
}

void http_announce(const http_t *h) {
  const config_t *cfg = server_config(h->srv);
  const char *scheme = server_tls(h->srv) != NULL ? "https" : "http";
  int v6 = strchr(cfg->http_listen.host, ':') != NULL;
  log_info("pages at %s://%s%s%s:%d/ (administration at /admin)", scheme,
           v6 ? "[" : "", cfg->http_listen.host, v6 ? "]" : "", h->port);
}

void http_stop(http_t *h) {
  if (h == NULL)
    return;
  while (h->requests != NULL) {
    conn_t *c = h->requests->conn;
    conn_set_owner(c, NULL);
    release(h->requests);
    conn_close(c);
  }
  uv_close((uv_handle_t *)&h->listener, free_data);
}
