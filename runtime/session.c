#include "session.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"

struct session_table {
  session_t **all;  /* dense, in no particular order */
  size_t count, cap;
  session_t **slots; /* open addressing, linear probing; NULL is empty */
  size_t nslots;     /* a power of two, at least twice count */
};

session_table_t *session_table_new(void) {
  session_table_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  t->nslots = 64;
  t->slots = calloc(t->nslots, sizeof(*t->slots));
  if (t->slots == NULL) {
    free(t);
    return NULL;
  }
  return t;
}

static void session_free(session_t *s) {
  while (s->pend_count > 0)
    session_pend_ack(s, session_pend_at(s, 0)->id);
  if (s->pend != s->pend_inline)
    free(s->pend);
  free(s->strings);
  free(s);
}

void session_table_free(session_table_t *t) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->count; i++)
    session_free(t->all[i]);
  free(t->all);
  free(t->slots);
  free(t);
}

size_t session_count(const session_table_t *t) { return t->count; }

session_t *const *session_all(const session_table_t *t) { return t->all; }

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* The hash of an ID: its first 16 hex digits, already uniformly random. */
static int id_key(const char *id, uint64_t *key) {
  uint64_t k = 0;
  for (int i = 0; i < SESSION_ID_LEN; i++) {
    int v = hexval(id[i]);
    if (v < 0)
      return -1;
    if (i < 16)
      k = (k << 4) | (uint64_t)v;
  }
  if (id[SESSION_ID_LEN] != '\0')
    return -1;
  *key = k;
  return 0;
}

static void slot_insert(session_t **slots, size_t nslots, session_t *s) {
  size_t i = s->key & (nslots - 1);
  while (slots[i] != NULL)
    i = (i + 1) & (nslots - 1);
  slots[i] = s;
}

static int grow(session_table_t *t) {
  if (t->count == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    session_t **all = realloc(t->all, cap * sizeof(*all));
    if (all == NULL)
      return -1;
    t->all = all;
    t->cap = cap;
  }
  if ((t->count + 1) * 2 > t->nslots) {
    size_t n = t->nslots * 2;
    session_t **slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
      return -1;
    for (size_t i = 0; i < t->count; i++)
      slot_insert(slots, n, t->all[i]);
    free(t->slots);
    t->slots = slots;
    t->nslots = n;
  }
  return 0;
}

int session_random_hex(char *out, size_t nbytes) {
  static const char digits[] = "0123456789ABCDEF";
  unsigned char raw[64];
  size_t got = 0;

  if (nbytes > sizeof(raw))
    return -1;
  while (got < nbytes) {
    ssize_t n = getrandom(raw + got, nbytes - got, 0);
    if (n <= 0)
      return -1;
    got += (size_t)n;
  }
  for (size_t i = 0; i < nbytes; i++) {
    out[2 * i] = digits[raw[i] >> 4];
    out[2 * i + 1] = digits[raw[i] & 15];
  }
  out[2 * nbytes] = '\0';
  return 0;
}

/* SHA-256 of text, in hex. */
static void hash_hex(const char *text, char out[SESSION_HASH_LEN + 1]) {
  static const char digits[] = "0123456789abcdef";
  unsigned char raw[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(raw, (const unsigned char *)text, strlen(text));
  for (size_t i = 0; i < sizeof(raw); i++) {
    out[2 * i] = digits[raw[i] >> 4];
    out[2 * i + 1] = digits[raw[i] & 15];
  }
  out[SESSION_HASH_LEN] = '\0';
}

int session_token_matches(session_t *s, const char *token) {
  char h[SESSION_HASH_LEN + 1];
  if (strlen(token) != SESSION_ID_LEN)
    return 0;
  hash_hex(token, h);
  if (!session_token_equal(h, s->token_hash))
    return 0;
  if (s->token[0] == '\0')
    memcpy(s->token, token, SESSION_ID_LEN + 1);
  return 1;
}

int session_token_equal(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < la && i < lb; i++)
    diff |= (unsigned char)(a[i] ^ b[i]);
  return diff == 0;
}

/* Copies the four names into one block, so a session costs two
 * allocations. */
static int copy_names(session_t *s, const session_fields_t *f) {
  const char *src[5] = {f->user_name, f->machine_name, f->system_user_name,
                        f->host_type, f->groups};
  const char **dst[5] = {&s->user_name, &s->machine_name,
                         &s->system_user_name, &s->host_type, &s->groups};
  size_t len[5], total = 0;
  char *p;

  for (int i = 0; i < 5; i++) {
    len[i] = src[i] ? strlen(src[i]) : 0;
    total += len[i] + 1;
  }
  p = s->strings = malloc(total);
  if (p == NULL)
    return -1;
  for (int i = 0; i < 5; i++) {
    memcpy(p, src[i] ? src[i] : "", len[i] + 1);
    *dst[i] = p;
    p += len[i] + 1;
  }
  return 0;
}

int session_in_group(const session_t *s, const char *group) {
  size_t n = strlen(group);
  for (const char *p = s->groups; *p != '\0';) {
    const char *comma = strchr(p, ',');
    size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
    if (len == n && memcmp(p, group, n) == 0)
      return 1;
    if (comma == NULL)
      break;
    p = comma + 1;
  }
  return 0;
}

/* A random (version 4) UUID as 32 upper-case hex digits, no dashes. */
static int random_uuid(char *out) {
  if (session_random_hex(out, 16) < 0)
    return -1;
  out[12] = '4';
  out[16] = "89AB"[hexval(out[16]) & 3];
  return 0;
}

/* Puts s in the table with the rest of its fields. */
static void add(session_table_t *t, session_t *s, const session_fields_t *f,
                int64_t created_ms) {
  snprintf(s->ip, sizeof(s->ip), "%s", f->ip ? f->ip : "");
  s->authenticated = f->authenticated;
  s->created_ms = created_ms;
  clock_format_iso8601(s->created_ms, s->created_iso, sizeof(s->created_iso));
  s->last_heard_ms = s->last_user_ms = clock_mono_ms();
  s->pend = s->pend_inline;
  s->pend_cap = SESSION_INLINE_PENDING;
  s->index = (uint32_t)t->count;
  t->all[t->count++] = s;
  slot_insert(t->slots, t->nslots, s);
}

session_t *session_create(session_table_t *t, const session_fields_t *f) {
  session_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return NULL;
  do {
    if (random_uuid(s->id) < 0)
      goto fail;
    id_key(s->id, &s->key);
  } while (session_find(t, s->id) != NULL);
  if (random_uuid(s->persistent_id) < 0 ||
      session_random_hex(s->token, 16) < 0 || copy_names(s, f) < 0 ||
      grow(t) < 0)
    goto fail;
  hash_hex(s->token, s->token_hash);
  add(t, s, f, clock_wall_ms());
  return s;
fail:
  free(s->strings);
  free(s);
  return NULL;
}

session_t *session_restore(session_table_t *t, const session_fields_t *f,
                           const char *id, const char *persistent_id,
                           const char *token_hash, int64_t created_ms) {
  session_t *s;
  uint64_t key;
  if (strlen(id) != SESSION_ID_LEN || id_key(id, &key) < 0 ||
      session_find(t, id) != NULL ||
      strlen(token_hash) != SESSION_HASH_LEN || (s = calloc(1, sizeof(*s)))
      == NULL)
    return NULL;
  memcpy(s->id, id, SESSION_ID_LEN + 1);
  id_key(s->id, &s->key);
  snprintf(s->persistent_id, sizeof(s->persistent_id), "%s", persistent_id);
  memcpy(s->token_hash, token_hash, SESSION_HASH_LEN + 1);
  if (copy_names(s, f) < 0 || grow(t) < 0) {
    free(s->strings);
    free(s);
    return NULL;
  }
  add(t, s, f, created_ms);
  s->postponed_ms = clock_mono_ms();
  return s;
}

/* The hash of an ID to look up: its first 16 hex digits only. The rest
 * of it is checked by the comparison with a session's own ID, which a
 * string that is not one never equals. Every call looks up its session
 * several times: this is on the hot path. */
static int lookup_key(const char *id, uint64_t *key) {
  uint64_t k = 0;
  for (int i = 0; i < SESSION_ID_LEN / 2; i++) {
    int v = hexval(id[i]);
    if (v < 0)
      return -1;
    k = (k << 4) | (uint64_t)v;
  }
  *key = k;
  return 0;
}

session_t *session_find(const session_table_t *t, const char *id) {
  uint64_t key;
  size_t i;
  if (id == NULL || lookup_key(id, &key) < 0)
    return NULL;
  for (i = key & (t->nslots - 1); t->slots[i] != NULL;
       i = (i + 1) & (t->nslots - 1)) {
    if (t->slots[i]->key == key && strcasecmp(t->slots[i]->id, id) == 0)
      return t->slots[i];
  }
  return NULL;
}

/* Deletion with backward shift keeps linear probing free of tombstones. */
static void slot_delete(session_table_t *t, session_t *s) {
  size_t mask = t->nslots - 1, i = s->key & mask, j;
  while (t->slots[i] != s)
    i = (i + 1) & mask;
  t->slots[i] = NULL;
  for (j = (i + 1) & mask; t->slots[j] != NULL; j = (j + 1) & mask) {
    size_t home = t->slots[j]->key & mask;
    /* Move slots[j] into the hole when its home is not in (i, j]. */
    if ((j > i && (home <= i || home > j)) ||
        (j < i && (home <= i && home > j))) {
      t->slots[i] = t->slots[j];
      t->slots[j] = NULL;
      i = j;
    }
  }
}

void session_remove(session_table_t *t, session_t *s) {
  session_t *last = t->all[t->count - 1];
  slot_delete(t, s);
  t->all[s->index] = last;
  last->index = s->index;
  t->count--;
  session_free(s);
}

session_pending_t *session_pend_at(session_t *s, uint32_t i) {
  return &s->pend[(s->pend_head + i) % s->pend_cap];
}

session_pending_t *session_pend_find(session_t *s, int64_t id) {
  /* Newest first: a write completes soon after the message was queued. */
  for (uint32_t i = s->pend_count; i-- > 0;)
    if (session_pend_at(s, i)->id == id)
      return session_pend_at(s, i);
  return NULL;
}

int session_pend_has(const session_t *s, int64_t id) {
  for (uint32_t i = 0; i < s->pend_count; i++)
    if (s->pend[(s->pend_head + i) % s->pend_cap].id == id)
      return 1;
  return 0;
}

static int pend_grow(session_t *s) {
  uint32_t cap = s->pend_cap * 2;
  session_pending_t *p = malloc(cap * sizeof(*p));
  if (p == NULL)
    return -1;
  for (uint32_t i = 0; i < s->pend_count; i++)
    p[i] = *session_pend_at(s, i);
  if (s->pend != s->pend_inline)
    free(s->pend);
  s->pend = p;
  s->pend_cap = cap;
  s->pend_head = 0;
  return 0;
}

int session_pend_push(session_t *s, int64_t id, outbuf_t *b,
                      size_t max_count, size_t max_bytes) {
  session_pending_t *e;
  if (s->pend_count + 1 > max_count || s->pend_bytes + b->len > max_bytes)
    return -1;
  if (s->pend_count == s->pend_cap && pend_grow(s) < 0)
    return -1;
  e = session_pend_at(s, s->pend_count++);
  e->id = id;
  e->buf = outbuf_ref(b);
  e->written = 0;
  s->pend_bytes += b->len;
  return 0;
}

/* Acks nearly always name the oldest pending message; any other is found
 * by a scan of the (bounded) ring and the hole closed up. */
int session_pend_ack(session_t *s, int64_t id) {
  uint32_t i;
  for (i = 0; i < s->pend_count; i++)
    if (session_pend_at(s, i)->id == id)
      break;
  if (i == s->pend_count)
    return -1;
  s->pend_bytes -= session_pend_at(s, i)->buf->len;
  outbuf_unref(session_pend_at(s, i)->buf);
  if (i == 0) {
    s->pend_head = (s->pend_head + 1) % s->pend_cap;
  } else {
    for (; i + 1 < s->pend_count; i++)
      *session_pend_at(s, i) = *session_pend_at(s, i + 1);
  }
  s->pend_count--;
  if (s->pend_count == 0)
    s->pend_head = 0;
  return 0;
}

const char *session_state(const session_t *s, int64_t now_mono_ms,
                          int64_t sleep_after_ms) {
  if (s->conn == NULL)
    return "postponed";
  if (now_mono_ms - s->last_user_ms >= sleep_after_ms)
    return "sleeping";
  return "active";
}
