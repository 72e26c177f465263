#include "users.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGON2ID_PREFIX "$argon2id$"

struct users {
  users_user_t *v;
  size_t n, cap;
};

int users_init(void) { return sodium_init() < 0 ? -1 : 0; }

users_t *users_new(void) { return calloc(1, sizeof(users_t)); }

static void free_groups(char **groups, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(groups[i]);
  free(groups);
}

void users_free(users_t *u) {
  if (u == NULL)
    return;
  for (size_t i = 0; i < u->n; i++)
    free_groups(u->v[i].groups, u->v[i].ngroups);
  /* The hashes are not secrets, but they are what an offline guesser
   * wants: leave none of them in freed memory. */
  if (u->v != NULL)
    sodium_memzero(u->v, u->cap * sizeof(u->v[0]));
  free(u->v);
  free(u);
}

size_t users_count(const users_t *u) { return u == NULL ? 0 : u->n; }

const users_user_t *users_at(const users_t *u, size_t i) {
  return u == NULL || i >= u->n ? NULL : &u->v[i];
}

static size_t find_index(const users_t *u, const char *name) {
  for (size_t i = 0; i < u->n; i++)
    if (strcmp(u->v[i].name, name) == 0)
      return i;
  return (size_t)-1;
}

const users_user_t *users_find(const users_t *u, const char *name) {
  size_t i;
  if (u == NULL || name == NULL)
    return NULL;
  i = find_index(u, name);
  return i == (size_t)-1 ? NULL : &u->v[i];
}

int users_in_group(const users_user_t *user, const char *group) {
  if (user == NULL || group == NULL)
    return 0;
  for (size_t i = 0; i < user->ngroups; i++)
    if (strcmp(user->groups[i], group) == 0)
      return 1;
  return 0;
}

static int valid_chars(const char *s, size_t max, const char *extra) {
  size_t len = 0;
  if (s == NULL)
    return 0;
  for (; s[len] != '\0'; len++) {
    unsigned char c = (unsigned char)s[len];
    if (len >= max)
      return 0;
    /* Spelled out, not isalnum: a locale must not widen the set. */
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr(extra, c) != NULL))
      return 0;
  }
  return len > 0;
}

/* c == '\0' is never in extra: strchr would find the terminator. */
int users_valid_name(const char *name) {
  return valid_chars(name, USERS_NAME_MAX, "_.@-");
}

int users_valid_group(const char *group) {
  return valid_chars(group, USERS_GROUP_MAX, "_-");
}

/* A copy of s fit to quote in a message: at most 64 bytes, anything not
 * printable ASCII shown as '?', so a hostile file cannot drive the
 * terminal that reads the error. */
static const char *shown(const char *s, size_t len, char *buf,
                         size_t buflen) {
  size_t i;
  for (i = 0; i < len && i < 64 && i + 4 < buflen; i++)
    buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
  if (i < len && i + 4 <= buflen) {
    memcpy(buf + i, "...", 3);
    i += 3;
  }
  buf[i] = '\0';
  return buf;
}

/* Room for one more user. */
static int grow(users_t *u) {
  users_user_t *v;
  size_t cap;
  if (u->n < u->cap)
    return 0;
  cap = u->cap ? u->cap * 2 : 8;
  v = calloc(cap, sizeof(*v));
  if (v == NULL)
    return -1;
  if (u->v != NULL) {
    memcpy(v, u->v, u->n * sizeof(*v));
    sodium_memzero(u->v, u->cap * sizeof(*v));
    free(u->v);
  }
  u->v = v;
  u->cap = cap;
  return 0;
}

/* Copies groups, dropping repeats; NULL (and *n = 0) for none, or on
 * failure with *bad set to the first bad group's index, or -1 for memory. */
static char **copy_groups(const char *const *groups, size_t ngroups,
                          size_t *n, long *bad) {
  char **out;
  *n = 0;
  *bad = -1;
  for (size_t i = 0; i < ngroups; i++)
    if (!users_valid_group(groups[i])) {
      *bad = (long)i;
      return NULL;
    }
  if (ngroups == 0)
    return NULL;
  out = calloc(ngroups, sizeof(*out));
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < ngroups; i++) {
    size_t j;
    for (j = 0; j < *n && strcmp(out[j], groups[i]) != 0; j++)
      ;
    if (j < *n)
      continue;
    out[*n] = strdup(groups[i]);
    if (out[*n] == NULL) {
      free_groups(out, *n);
      *n = 0;
      return NULL;
    }
    (*n)++;
  }
  return out;
}

int users_set(users_t *u, const char *name, const char *password,
              const char *const *groups, size_t ngroups, int replace,
              char *err, size_t errlen) {
  char hash[crypto_pwhash_STRBYTES], q[80];
  char **copy = NULL;
  size_t ncopy = 0, i, len;
  long bad;

  if (!users_valid_name(name)) {
    snprintf(err, errlen, "bad user name '%s': 1 to %d letters, digits, "
             "'_', '.', '@' or '-'",
             name ? shown(name, strlen(name), q, sizeof(q)) : "",
             USERS_NAME_MAX);
    return -1;
  }
  i = find_index(u, name);
  if (i != (size_t)-1 && !replace) {
    snprintf(err, errlen, "user %s already exists", name);
    return -1;
  }
  if (i == (size_t)-1 && replace) {
    snprintf(err, errlen, "no user %s", name);
    return -1;
  }
  len = password == NULL ? 0 : strlen(password);
  if (len == 0) {
    snprintf(err, errlen, "empty password");
    return -1;
  }
  if (len > USERS_PASSWORD_MAX) {
    snprintf(err, errlen, "password longer than %d bytes",
             USERS_PASSWORD_MAX);
    return -1;
  }
  if (groups != NULL) {
    copy = copy_groups(groups, ngroups, &ncopy, &bad);
    if (bad >= 0) {
      snprintf(err, errlen, "bad group '%s': 1 to %d letters, digits, "
               "'_' or '-'",
               shown(groups[bad], strlen(groups[bad]), q, sizeof(q)),
               USERS_GROUP_MAX);
      return -1;
    }
    if (copy == NULL && ngroups > 0)
      goto nomem;
  }
  /* Hashed before anything changes, so a failure leaves u as it was. */
  if (crypto_pwhash_str(hash, password, len,
                        crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
    free_groups(copy, ncopy);
    snprintf(err, errlen, "cannot hash the password: out of memory");
    return -1;
  }
  if (strlen(hash) > USERS_HASH_MAX) {
    free_groups(copy, ncopy);
    snprintf(err, errlen, "the password hash is too long");
    return -1;
  }
  if (i == (size_t)-1) {
    if (grow(u) < 0)
      goto nomem;
    i = u->n++;
    memset(&u->v[i], 0, sizeof(u->v[i]));
    memcpy(u->v[i].name, name, strlen(name) + 1);
  }
  memcpy(u->v[i].hash, hash, strlen(hash) + 1);
  if (groups != NULL) {
    free_groups(u->v[i].groups, u->v[i].ngroups);
    u->v[i].groups = copy;
    u->v[i].ngroups = ncopy;
  }
  return 0;
nomem:
  free_groups(copy, ncopy);
  snprintf(err, errlen, "out of memory");
  return -1;
}

int users_del(users_t *u, const char *name) {
  size_t i;
  if (u == NULL || name == NULL || (i = find_index(u, name)) == (size_t)-1)
    return -1;
  free_groups(u->v[i].groups, u->v[i].ngroups);
  memmove(&u->v[i], &u->v[i + 1], (u->n - i - 1) * sizeof(u->v[0]));
  u->n--;
  memset(&u->v[u->n], 0, sizeof(u->v[0]));
  return 0;
}

/* The dummy hash users_verify checks for an unknown name: made with the
 * same cost as real ones, once, from a random password nobody knows. */
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[crypto_pwhash_STRBYTES];

static void make_dummy(void) {
  unsigned char secret[32];
  if (sodium_init() < 0)
    return;
  randombytes_buf(secret, sizeof(secret));
  if (crypto_pwhash_str(dummy_hash, (const char *)secret, sizeof(secret),
                        crypto_pwhash_OPSLIMIT_INTERACTIVE,
                        crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
    dummy_hash[0] = '\0';
  sodium_memzero(secret, sizeof(secret));
}

int users_verify(const char *hash, const char *password, size_t len) {
  /* Every call goes through the once, not only the unknown names', so the
   * first call pays for the dummy whichever kind it is. */
  pthread_once(&dummy_once, make_dummy);
  if (password == NULL || len > USERS_PASSWORD_MAX ||
      strncmp(hash ? hash : "", ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX))
          != 0) {
    /* The same work as a real check, whose answer is always no. */
    if (dummy_hash[0] != '\0')
      (void)!crypto_pwhash_str_verify(dummy_hash, password ? password : "",
                                      password && len <= USERS_PASSWORD_MAX
                                          ? len : 0);
    return 0;
  }
  return crypto_pwhash_str_verify(hash, password, len) == 0;
}

/* Whether s (NUL-terminated) is an argon2id string libsodium can read. */
static int valid_hash(const char *s, size_t len) {
  if (len > USERS_HASH_MAX ||
      strncmp(s, ARGON2ID_PREFIX, strlen(ARGON2ID_PREFIX)) != 0)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (s[i] <= 0x20 || s[i] >= 0x7f)
      return 0;
  /* needs_rehash parses the parameters, salt and hash: -1 when it cannot.
   * It only reads the string, so it costs nothing. */
  return crypto_pwhash_str_needs_rehash(
             s, crypto_pwhash_OPSLIMIT_INTERACTIVE,
             crypto_pwhash_MEMLIMIT_INTERACTIVE) >= 0;
}

/* One line (NUL-terminated, no newline) into u; -1 with "why" in err. */
static int parse_line(users_t *u, char *line, const size_t *lines,
                      char *err, size_t errlen) {
  char *hash, *groups, *g, *next, q[80];
  users_user_t *user;
  size_t i;

  hash = strchr(line, ':');
  if (hash == NULL) {
    snprintf(err, errlen, "expected NAME:HASH:GROUPS");
    return -1;
  }
  *hash++ = '\0';
  if (!users_valid_name(line)) {
    snprintf(err, errlen, "bad user name '%s': 1 to %d letters, digits, "
             "'_', '.', '@' or '-'", shown(line, strlen(line), q, sizeof(q)),
             USERS_NAME_MAX);
    return -1;
  }
  i = find_index(u, line);
  if (i != (size_t)-1) {
    snprintf(err, errlen, "user %s appears twice (first on line %zu)", line,
             lines[i]);
    return -1;
  }
  groups = strchr(hash, ':');
  if (groups != NULL)
    *groups++ = '\0';
  if (!valid_hash(hash, strlen(hash))) {
    snprintf(err, errlen, "user %s: bad password hash (expected libsodium's "
             "argon2id string, \"" ARGON2ID_PREFIX "...\", as 'herald user "
             "passwd' writes)", line);
    return -1;
  }
  if (grow(u) < 0) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  user = &u->v[u->n];
  memset(user, 0, sizeof(*user));
  memcpy(user->name, line, strlen(line) + 1);
  memcpy(user->hash, hash, strlen(hash) + 1);
  u->n++;
  /* An empty field is no group, but an empty name between commas (or
   * after the last) is a mistake. */
  for (g = groups != NULL && *groups != '\0' ? groups : NULL; g != NULL;
       g = next) {
    char **more;
    next = strchr(g, ',');
    if (next != NULL)
      *next++ = '\0';
    if (!users_valid_group(g)) {
      snprintf(err, errlen, "user %s: bad group '%s': 1 to %d letters, "
               "digits, '_' or '-', separated by ','", user->name,
               shown(g, strlen(g), q, sizeof(q)), USERS_GROUP_MAX);
      return -1;
    }
    more = realloc(user->groups, (user->ngroups + 1) * sizeof(*more));
    if (more == NULL || (more[user->ngroups] = strdup(g)) == NULL) {
      if (more != NULL)
        user->groups = more;
      snprintf(err, errlen, "out of memory");
      return -1;
    }
    user->groups = more;
    user->ngroups++;
  }
  return 0;
}

int users_load(const char *path, users_t **out, char *err, size_t errlen) {
  FILE *f;
  users_t *u;
  char *line = NULL, why[512];
  size_t cap = 0, lineno = 0, *lines = NULL, nlines = 0;
  ssize_t len;
  int r = 0;

  if (sodium_init() < 0) {
    snprintf(err, errlen, "%s: cannot initialise libsodium", path);
    return -1;
  }
  u = users_new();
  if (u == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
  }
  f = fopen(path, "re");
  if (f == NULL) {
    if (errno == ENOENT) {
      *out = u;
      return 0;
    }
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    users_free(u);
    return -1;
  }
  while ((len = getline(&line, &cap, f)) >= 0) {
    char *p;
    lineno++;
    if (len > 0 && line[len - 1] == '\n')
      line[--len] = '\0';
    if (len > 0 && line[len - 1] == '\r')
      line[--len] = '\0';
    if (strlen(line) != (size_t)len) {
      snprintf(err, errlen, "%s:%zu: a NUL byte in the line", path, lineno);
      r = -1;
      break;
    }
    for (p = line; *p == ' ' || *p == '\t'; p++)
      ;
    if (*p == '\0' || *p == '#')
      continue;
    /* The line each user came from, for the message about a repeat. */
    if (u->n >= nlines) {
      size_t n = nlines ? nlines * 2 : 16;
      size_t *more = realloc(lines, n * sizeof(*more));
      if (more == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        r = -1;
        break;
      }
      lines = more;
      nlines = n;
    }
    lines[u->n] = lineno;
    if (parse_line(u, line, lines, why, sizeof(why)) < 0) {
      snprintf(err, errlen, "%s:%zu: %s", path, lineno, why);
      r = -1;
      break;
    }
  }
  if (r == 0 && ferror(f)) {
    snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    r = -1;
  }
  fclose(f);
  if (line != NULL)
    sodium_memzero(line, cap);
  free(line);
  free(lines);
  if (r < 0) {
    users_free(u);
    return -1;
  }
  *out = u;
  return 0;
}

/* The whole file's text, in a buffer the caller frees; NULL for memory. */
static char *format(const users_t *u, size_t *lenp) {
  static const char header[] =
      "# herald users: NAME:HASH:GROUP,GROUP... (written by 'herald user')\n";
  size_t len = sizeof(header) - 1, at;
  char *buf;

  for (size_t i = 0; i < u->n; i++) {
    len += strlen(u->v[i].name) + strlen(u->v[i].hash) + 3;
    for (size_t j = 0; j < u->v[i].ngroups; j++)
      len += strlen(u->v[i].groups[j]) + 1;
  }
  buf = malloc(len + 1);
  if (buf == NULL)
    return NULL;
  at = (size_t)snprintf(buf, len + 1, "%s", header);
  for (size_t i = 0; i < u->n; i++) {
    at += (size_t)snprintf(buf + at, len + 1 - at, "%s:%s:", u->v[i].name,
                           u->v[i].hash);
    for (size_t j = 0; j < u->v[i].ngroups; j++)
      at += (size_t)snprintf(buf + at, len + 1 - at, "%s%s",
                             j ? "," : "", u->v[i].groups[j]);
    buf[at++] = '\n';
  }
  buf[at] = '\0';
  *lenp = at;
  return buf;
}

int users_save(const users_t *u, const char *path, char *err,
               size_t errlen) {
  char tmp[4096], dir[4096];
  const char *slash = strrchr(path, '/');
  char *text;
  size_t len, done = 0;
  struct stat st;
  int fd, dfd;

  if ((size_t)snprintf(tmp, sizeof(tmp), "%.*s.%s.XXXXXX",
                       slash ? (int)(slash - path + 1) : 0, path,
                       slash ? slash + 1 : path) >= sizeof(tmp)) {
    snprintf(err, errlen, "%s: file name too long", path);
    return -1;
  }
  text = format(u, &len);
  if (text == NULL) {
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
  }
  /* The temporary file is in the same folder, so the rename is atomic:
   * a server reloading the file sees the old one or the new one whole. */
  fd = mkstemp(tmp);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot create a temporary file beside it: "
             "%s", path, strerror(errno));
    free(text);
    return -1;
  }
  if (fchmod(fd, 0600) != 0)
    goto fail;
  /* Root editing the server's file must leave it the server's, or the
   * server could no longer read it; anyone else cannot give files away,
   * and then the file is theirs as with any editor. */
  if (stat(path, &st) == 0 && (st.st_uid != geteuid() ||
                               st.st_gid != getegid()))
    (void)!fchown(fd, st.st_uid, st.st_gid);
  while (done < len) {
    ssize_t w = write(fd, text + done, len - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      goto fail;
    done += (size_t)w;
  }
  if (fsync(fd) != 0)
    goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0)
    goto fail;
  sodium_memzero(text, len);
  free(text);
  /* The rename itself is durable only once the folder is on disk. */
  snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path + 1) : 1,
           slash ? path : ".");
  dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  return 0;
fail:
  snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
  if (fd >= 0)
    close(fd);
  unlink(tmp);
  sodium_memzero(text, len);
  free(text);
  return -1;
}
