/*
 * Unit tests for runtime/users.c: the users file's round trip, its comments
 * and blank lines, each bad line refused with "PATH:LINE: why", a missing
 * file as an empty set, users_set's additions, replacements and refusals,
 * users_del, users_verify (right, wrong, unknown name), and the save: mode
 * 0600, a new file renamed over the old one, no temporary file left.
 *
 * Each test has a temporary folder of its own, removed by the teardown.
 * Hashing is slow on purpose (argon2id, 64 MiB), so the tests that only
 * read files share one hash made by the group setup.
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "users.h"

/* A hash of PASSWORD, made once for the tests that read files. */
#define PASSWORD "correct horse"
static char hash[USERS_HASH_MAX + 1];

typedef struct fixture {
  char dir[512];
  char path[600]; /* dir/herald.users */
} fixture_t;

static int group_setup(void **state) {
  users_t *u;
  char err[256];
  (void)state;
  if (users_init() < 0 || (u = users_new()) == NULL)
    return -1;
  if (users_set(u, "seed", PASSWORD, NULL, 0, 0, err, sizeof(err)) < 0) {
    users_free(u);
    return -1;
  }
  snprintf(hash, sizeof(hash), "%s", users_find(u, "seed")->hash);
  users_free(u);
  return 0;
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  const char *tmp = getenv("TMPDIR");
  if (f == NULL)
    return -1;
  snprintf(f->dir, sizeof(f->dir), "%s/herald-test-users-XXXXXX",
           tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  snprintf(f->path, sizeof(f->path), "%s/herald.users", f->dir);
  *state = f;
  return 0;
}

/* Removes the folder and what the tests left in it (one level deep, and
 * the folders one test makes empty). */
static int teardown(void **state) {
  fixture_t *f = *state;
  DIR *d = opendir(f->dir);
  struct dirent *e;
  char p[1200];
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
    if (unlink(p) != 0)
      rmdir(p);
  }
  if (d != NULL)
    closedir(d);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void write_text(const char *path, const char *text, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  assert_int_equal(close(fd), 0);
}

/* The file's whole text (at most 64 KiB), NUL-terminated, to free. */
static char *read_text(const char *path) {
  char *buf = calloc(1, 65536);
  int fd = open(path, O_RDONLY);
  ssize_t n;
  assert_non_null(buf);
  assert_true(fd >= 0);
  n = read(fd, buf, 65535);
  assert_true(n >= 0);
  close(fd);
  return buf;
}

/* The names in dir other than . and .., joined with spaces. */
static void list_dir(const char *dir, char *out, size_t len) {
  DIR *d = opendir(dir);
  struct dirent *e;
  out[0] = '\0';
  assert_non_null(d);
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
      snprintf(out + strlen(out), len - strlen(out), "%s%s",
               out[0] ? " " : "", e->d_name);
  closedir(d);
}

static users_t *load_ok(const char *path) {
  users_t *u = NULL;
  char err[512] = "";
  int r = users_load(path, &u, err, sizeof(err));
  if (r != 0)
    print_error("users_load: %s\n", err);
  assert_int_equal(r, 0);
  assert_non_null(u);
  return u;
}

static void set_ok(users_t *u, const char *name, const char *password,
                   const char *const *groups, size_t ngroups, int replace) {
  char err[512] = "";
  int r = users_set(u, name, password, groups, ngroups, replace, err,
                    sizeof(err));
  if (r != 0)
    print_error("users_set %s: %s\n", name, err);
  assert_int_equal(r, 0);
}

/* ---- names ------------------------------------------------------------- */

static void test_valid_names(void **state) {
  char long_name[USERS_NAME_MAX + 2];
  (void)state;
  assert_true(users_valid_name("vanessa"));
  assert_true(users_valid_name("Marc.Dupont@example-1_x"));
  assert_false(users_valid_name(""));
  assert_false(users_valid_name(NULL));
  assert_false(users_valid_name("a b"));
  assert_false(users_valid_name("a:b"));
  assert_false(users_valid_name("a#"));
  assert_false(users_valid_name("caf\xc3\xa9"));
  memset(long_name, 'a', sizeof(long_name));
  long_name[USERS_NAME_MAX] = '\0';
  assert_true(users_valid_name(long_name));
  long_name[USERS_NAME_MAX] = 'a';
  long_name[USERS_NAME_MAX + 1] = '\0';
  assert_false(users_valid_name(long_name));

  assert_true(users_valid_group("admin"));
  assert_true(users_valid_group("ops_team-2"));
  assert_false(users_valid_group(""));
  assert_false(users_valid_group("a.b"));
  assert_false(users_valid_group("a,b"));
  assert_false(users_valid_group("a@b"));
  long_name[USERS_GROUP_MAX] = '\0';
  assert_true(users_valid_group(long_name));
  long_name[USERS_GROUP_MAX] = 'a';
  assert_false(users_valid_group(long_name));
}

/* ---- load and save ----------------------------------------------------- */

static void test_round_trip(void **state) {
  fixture_t *f = *state;
  static const char *const groups[] = {"admin", "ops"};
  char err[512] = "";
  users_t *u = users_new(), *back;
  const users_user_t *a, *b;

  assert_non_null(u);
  set_ok(u, "vanessa", "s3cret", groups, 2, 0);
  set_ok(u, "marc", "other", NULL, 0, 0);
  assert_int_equal(users_save(u, f->path, err, sizeof(err)), 0);

  back = load_ok(f->path);
  assert_int_equal(users_count(back), 2);
  /* The order of the file is kept. */
  assert_string_equal(users_at(back, 0)->name, "vanessa");
  assert_string_equal(users_at(back, 1)->name, "marc");
  assert_null(users_at(back, 2));
  a = users_find(back, "vanessa");
  b = users_find(back, "marc");
  assert_non_null(a);
  assert_non_null(b);
  assert_null(users_find(back, "nobody"));
  assert_string_equal(a->hash, users_find(u, "vanessa")->hash);
  assert_int_equal(a->ngroups, 2);
  assert_string_equal(a->groups[0], "admin");
  assert_string_equal(a->groups[1], "ops");
  assert_int_equal(b->ngroups, 0);
  assert_true(users_in_group(a, "admin"));
  assert_true(users_in_group(a, "ops"));
  assert_false(users_in_group(a, "adm"));
  assert_false(users_in_group(b, "admin"));
  assert_false(users_in_group(NULL, "admin"));
  assert_true(users_verify(a->hash, "s3cret", 6));
  assert_true(users_verify(b->hash, "other", 5));
  assert_false(users_verify(a->hash, "other", 5));

  /* Saving what was loaded gives the same file again. */
  {
    char *first = read_text(f->path), *second;
    assert_int_equal(users_save(back, f->path, err, sizeof(err)), 0);
    second = read_text(f->path);
    assert_string_equal(first, second);
    free(first);
    free(second);
  }
  users_free(u);
  users_free(back);
}

static void test_missing_file_is_empty(void **state) {
  fixture_t *f = *state;
  users_t *u = load_ok(f->path);
  char err[512] = "", path[700];
  users_t *sentinel = (users_t *)&err, *out = sentinel;

  assert_int_equal(users_count(u), 0);
  users_free(u);
  /* An empty file too. */
  write_text(f->path, "", 0);
  u = load_ok(f->path);
  assert_int_equal(users_count(u), 0);
  users_free(u);
  /* But a file that cannot be read is an error naming it. */
  snprintf(path, sizeof(path), "%s/folder", f->dir);
  assert_int_equal(mkdir(path, 0700), 0);
  assert_int_equal(users_load(path, &out, err, sizeof(err)), -1);
  assert_ptr_equal(out, sentinel);
  assert_int_equal(strncmp(err, path, strlen(path)), 0);
  assert_non_null(strstr(err, "directory"));
}

static void test_comments_and_blank_lines(void **state) {
  fixture_t *f = *state;
  char text[2048];
  users_t *u;
  const users_user_t *a;
  snprintf(text, sizeof(text),
           "# the users of herald\n"
           "\n"
           "   \n"
           "\t# an indented comment\n"
           "vanessa:%s:admin,ops\r\n"
           "marc:%s:\n"
           "# marc:%s:admin\n"
           "luc:%s\n",
           hash, hash, hash, hash);
  write_text(f->path, text, strlen(text));
  u = load_ok(f->path);
  assert_int_equal(users_count(u), 3);
  a = users_find(u, "vanessa");
  assert_non_null(a);
  assert_string_equal(a->hash, hash);
  assert_int_equal(a->ngroups, 2);
  assert_string_equal(a->groups[1], "ops");
  assert_int_equal(users_find(u, "marc")->ngroups, 0);
  assert_int_equal(users_find(u, "luc")->ngroups, 0);
  assert_true(users_verify(users_find(u, "luc")->hash, PASSWORD,
                           strlen(PASSWORD)));
  users_free(u);
}

/* Writes "# header\n\n" + line into the file (the bad line is line 3,
 * or later when line holds newlines) and expects users_load to refuse it
 * with "PATH:LINE: " and every NULL-terminated substring. */
static void refused(fixture_t *f, const char *line, size_t len, int lineno,
                    ...) {
  char text[4096], err[512] = "", prefix[700];
  users_t *sentinel = (users_t *)&prefix, *out = sentinel;
  const char *want;
  va_list ap;
  size_t n = (size_t)snprintf(text, sizeof(text), "# header\n\n");
  memcpy(text + n, line, len);
  write_text(f->path, text, n + len);
  assert_int_equal(users_load(f->path, &out, err, sizeof(err)), -1);
  /* Nothing is handed back on failure. */
  assert_ptr_equal(out, sentinel);
  snprintf(prefix, sizeof(prefix), "%s:%d: ", f->path, lineno);
  if (strncmp(err, prefix, strlen(prefix)) != 0)
    print_error("line <<%s>>: \"%s\" does not start with \"%s\"\n", line,
                err, prefix);
  assert_int_equal(strncmp(err, prefix, strlen(prefix)), 0);
  va_start(ap, lineno);
  while ((want = va_arg(ap, const char *)) != NULL) {
    if (strstr(err, want) == NULL)
      print_error("line <<%s>>: \"%s\" lacks \"%s\"\n", line, err, want);
    assert_non_null(strstr(err, want));
  }
  va_end(ap);
}

#define REFUSED(f, line, n, ...) \
  refused(f, line, strlen(line), n, __VA_ARGS__, (const char *)NULL)

static void test_bad_lines(void **state) {
  fixture_t *f = *state;
  char line[2048], name[USERS_NAME_MAX + 2];

  snprintf(line, sizeof(line), "bad name:%s:\n", hash);
  REFUSED(f, line, 3, "bad user name 'bad name'");
  snprintf(line, sizeof(line), ":%s:\n", hash);
  REFUSED(f, line, 3, "bad user name ''");
  memset(name, 'n', sizeof(name) - 1);
  name[sizeof(name) - 1] = '\0';
  snprintf(line, sizeof(line), "%s:%s:\n", name, hash);
  REFUSED(f, line, 3, "bad user name");
  /* A control character is not echoed to the terminal as it is. */
  snprintf(line, sizeof(line), "a\x1b[2Jb:%s:\n", hash);
  REFUSED(f, line, 3, "bad user name 'a?[2Jb'");
  REFUSED(f, "vanessa\n", 3, "expected NAME:HASH:GROUPS");

  REFUSED(f, "vanessa:hunter2:admin\n", 3, "user vanessa: bad password "
          "hash", "$argon2id$");
  REFUSED(f, "vanessa::\n", 3, "bad password hash");
  REFUSED(f, "vanessa:$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA:\n",
          3, "bad password hash");
  REFUSED(f, "vanessa:$argon2id$garbage:\n", 3, "bad password hash");
  snprintf(line, sizeof(line), "vanessa:%sX Y:\n", hash);
  REFUSED(f, line, 3, "bad password hash");

  snprintf(line, sizeof(line), "vanessa:%s:ad min\n", hash);
  REFUSED(f, line, 3, "user vanessa: bad group 'ad min'");
  snprintf(line, sizeof(line), "vanessa:%s:admin,,ops\n", hash);
  REFUSED(f, line, 3, "bad group ''");
  snprintf(line, sizeof(line), "vanessa:%s:admin,\n", hash);
  REFUSED(f, line, 3, "bad group ''");
  snprintf(line, sizeof(line), "vanessa:%s:admin:ops\n", hash);
  REFUSED(f, line, 3, "bad group 'admin:ops'");

  /* The line number counts comments and blank lines before it. */
  snprintf(line, sizeof(line), "vanessa:%s:\n# x\n\nmarc:%s:\n"
           "vanessa:%s:admin\n", hash, hash, hash);
  REFUSED(f, line, 7, "user vanessa appears twice (first on line 3)");
  snprintf(line, sizeof(line), "marc:%s:\nvanessa:%s:x!\n", hash, hash);
  REFUSED(f, line, 4, "bad group 'x!'");

  snprintf(line, sizeof(line), "vanessa:%s:admin\n", hash);
  line[3] = '\0';
  refused(f, line, strlen(line + 4) + 4, 3, "NUL byte", (const char *)NULL);
}

static void test_set_and_refusals(void **state) {
  static const char *const admin[] = {"admin"};
  static const char *const twice[] = {"ops", "admin", "ops"};
  static const char *const bad[] = {"admin", "not a group"};
  char err[512], old[USERS_HASH_MAX + 1], big[USERS_PASSWORD_MAX + 2];
  users_t *u = users_new();
  const users_user_t *v;
  (void)state;

  set_ok(u, "vanessa", "first", admin, 1, 0);
  assert_int_equal(users_count(u), 1);
  v = users_find(u, "vanessa");
  assert_non_null(v);
  assert_int_equal(strncmp(v->hash, "$argon2id$", 10), 0);
  assert_null(strstr(v->hash, "first"));
  snprintf(old, sizeof(old), "%s", v->hash);

  /* Adding an existing user is refused; nothing changes. */
  err[0] = '\0';
  assert_int_equal(users_set(u, "vanessa", "again", NULL, 0, 0, err,
                             sizeof(err)), -1);
  assert_string_equal(err, "user vanessa already exists");
  assert_string_equal(users_find(u, "vanessa")->hash, old);
  /* Replacing a missing one too. */
  assert_int_equal(users_set(u, "marc", "pw", NULL, 0, 1, err, sizeof(err)),
                   -1);
  assert_string_equal(err, "no user marc");
  assert_int_equal(users_count(u), 1);
  /* Bad names, groups and passwords. */
  assert_int_equal(users_set(u, "a b", "pw", NULL, 0, 0, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "bad user name 'a b'"));
  assert_int_equal(users_set(u, "marc", "pw", bad, 2, 0, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "bad group 'not a group'"));
  assert_int_equal(users_set(u, "marc", "", NULL, 0, 0, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "empty password"));
  assert_int_equal(users_set(u, "marc", NULL, NULL, 0, 0, err, sizeof(err)),
                   -1);
  memset(big, 'p', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  assert_int_equal(users_set(u, "marc", big, NULL, 0, 0, err, sizeof(err)),
                   -1);
  assert_non_null(strstr(err, "longer than 1024"));
  assert_int_equal(users_count(u), 1);
  /* A failed replacement leaves the user as it was. */
  assert_int_equal(users_set(u, "vanessa", "new", bad, 2, 1, err,
                             sizeof(err)), -1);
  v = users_find(u, "vanessa");
  assert_string_equal(v->hash, old);
  assert_int_equal(v->ngroups, 1);

  /* Replacing with groups NULL keeps the groups; the password changes. */
  set_ok(u, "vanessa", "second", NULL, 0, 1);
  v = users_find(u, "vanessa");
  assert_string_not_equal(v->hash, old);
  assert_true(users_verify(v->hash, "second", 6));
  assert_false(users_verify(v->hash, "first", 5));
  assert_int_equal(v->ngroups, 1);
  assert_string_equal(v->groups[0], "admin");
  /* With groups, they are replaced (repeats dropped); none is none. */
  set_ok(u, "vanessa", "third", twice, 3, 1);
  v = users_find(u, "vanessa");
  assert_int_equal(v->ngroups, 2);
  assert_string_equal(v->groups[0], "ops");
  assert_string_equal(v->groups[1], "admin");
  set_ok(u, "vanessa", "third", admin, 0, 1);
  assert_int_equal(users_find(u, "vanessa")->ngroups, 0);
  /* The longest password is fine. */
  big[USERS_PASSWORD_MAX] = '\0';
  set_ok(u, "marc", big, NULL, 0, 0);
  assert_true(users_verify(users_find(u, "marc")->hash, big,
                           USERS_PASSWORD_MAX));
  assert_int_equal(users_count(u), 2);
  users_free(u);
}

static void test_del(void **state) {
  fixture_t *f = *state;
  char text[2048], err[512];
  users_t *u;
  snprintf(text, sizeof(text), "a:%s:x\nb:%s:y\nc:%s:z\n", hash, hash,
           hash);
  write_text(f->path, text, strlen(text));
  u = load_ok(f->path);
  assert_int_equal(users_del(u, "b"), 0);
  assert_int_equal(users_count(u), 2);
  assert_null(users_find(u, "b"));
  assert_string_equal(users_at(u, 0)->name, "a");
  assert_string_equal(users_at(u, 1)->name, "c");
  assert_string_equal(users_at(u, 1)->groups[0], "z");
  assert_int_equal(users_del(u, "b"), -1);
  assert_int_equal(users_del(u, "nobody"), -1);
  assert_int_equal(users_count(u), 2);
  assert_int_equal(users_del(u, "c"), 0);
  assert_int_equal(users_del(u, "a"), 0);
  assert_int_equal(users_count(u), 0);
  /* An empty set saves and loads. */
  assert_int_equal(users_save(u, f->path, err, sizeof(err)), 0);
  users_free(u);
  u = load_ok(f->path);
  assert_int_equal(users_count(u), 0);
  users_free(u);
}

static double seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_verify(void **state) {
  double t0, wrong, unknown;
  (void)state;
  assert_true(users_verify(hash, PASSWORD, strlen(PASSWORD)));
  assert_false(users_verify(hash, "correct horsf", strlen(PASSWORD)));
  /* The length counts: a prefix or a longer buffer is not the password. */
  assert_false(users_verify(hash, PASSWORD, strlen(PASSWORD) - 1));
  assert_false(users_verify(hash, PASSWORD "!", strlen(PASSWORD) + 1));
  assert_false(users_verify(hash, "", 0));
  assert_false(users_verify(hash, NULL, 0));
  assert_false(users_verify(NULL, PASSWORD, strlen(PASSWORD)));
  assert_false(users_verify(NULL, "", 0));
  assert_false(users_verify("not a hash", "x", 1));

  /* An unknown name costs what a wrong password does: the dummy hash is
   * really checked (skipping it takes microseconds, not milliseconds). */
  t0 = seconds();
  assert_false(users_verify(hash, "wrong", 5));
  wrong = seconds() - t0;
  t0 = seconds();
  assert_false(users_verify(NULL, "wrong", 5));
  unknown = seconds() - t0;
  if (unknown < wrong / 4)
    print_error("unknown name %.4f s, wrong password %.4f s\n", unknown,
                wrong);
  assert_true(unknown >= wrong / 4);
}

static void *verify_thread(void *arg) {
  intptr_t ok = users_verify(hash, PASSWORD, strlen(PASSWORD)) == 1 &&
                users_verify(NULL, PASSWORD, strlen(PASSWORD)) == 0 &&
                users_verify(hash, "no", 2) == 0;
  (void)arg;
  return (void *)ok;
}

/* Checks from the thread pool run at once. */
static void test_verify_threads(void **state) {
  pthread_t t[3];
  (void)state;
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(pthread_create(&t[i], NULL, verify_thread, NULL), 0);
  for (size_t i = 0; i < 3; i++) {
    void *ok;
    assert_int_equal(pthread_join(t[i], &ok), 0);
    assert_true((intptr_t)ok);
  }
}

static void test_save_mode_0600(void **state) {
  fixture_t *f = *state;
  char err[512], *text;
  struct stat st;
  users_t *u;
  mode_t old = umask(0);
  char line[1024];

  /* Whatever the umask and the old file's mode, the new one is 0600. */
  write_text(f->path, "", 0);
  assert_int_equal(chmod(f->path, 0644), 0);
  snprintf(line, sizeof(line), "vanessa:%s:admin\n", hash);
  write_text(f->path, line, strlen(line));
  assert_int_equal(chmod(f->path, 0666), 0);
  u = load_ok(f->path);
  set_ok(u, "marc", "clear-text-password", NULL, 0, 0);
  assert_int_equal(users_save(u, f->path, err, sizeof(err)), 0);
  umask(old);
  assert_int_equal(stat(f->path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  text = read_text(f->path);
  assert_null(strstr(text, "clear-text-password"));
  assert_non_null(strstr(text, line));
  assert_non_null(strstr(text, "\nmarc:$argon2id$"));
  free(text);
  users_free(u);
}

static void test_save_is_atomic(void **state) {
  fixture_t *f = *state;
  char err[512] = "", names[1024], buf[4096], line[1024], bad[700];
  struct stat before, after;
  users_t *u;
  ssize_t n;
  int fd;

  snprintf(line, sizeof(line), "vanessa:%s:admin\n", hash);
  write_text(f->path, line, strlen(line));
  assert_int_equal(stat(f->path, &before), 0);
  fd = open(f->path, O_RDONLY);
  assert_true(fd >= 0);
  u = load_ok(f->path);
  assert_int_equal(users_del(u, "vanessa"), 0);
  assert_int_equal(users_save(u, f->path, err, sizeof(err)), 0);
  /* A new file took the name: a reader that opened the old one still
   * reads it whole, never a half-written one. */
  assert_int_equal(stat(f->path, &after), 0);
  assert_int_not_equal(before.st_ino, after.st_ino);
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  assert_int_equal(n, (ssize_t)strlen(line));
  buf[n] = '\0';
  assert_string_equal(buf, line);
  /* Nothing but the file is left in the folder. */
  list_dir(f->dir, names, sizeof(names));
  assert_string_equal(names, "herald.users");

  /* A save that fails (the name is a folder) says why, keeps nothing and
   * leaves no temporary file behind. */
  snprintf(bad, sizeof(bad), "%s/sub", f->dir);
  assert_int_equal(mkdir(bad, 0700), 0);
  snprintf(bad, sizeof(bad), "%s/sub/herald.users", f->dir);
  assert_int_equal(mkdir(bad, 0700), 0);
  snprintf(buf, sizeof(buf), "%s/sub/herald.users/x", f->dir);
  write_text(buf, "x", 1);
  assert_int_equal(users_save(u, bad, err, sizeof(err)), -1);
  assert_int_equal(strncmp(err, bad, strlen(bad)), 0);
  snprintf(buf, sizeof(buf), "%s/sub", f->dir);
  list_dir(buf, names, sizeof(names));
  assert_string_equal(names, "herald.users");
  snprintf(buf, sizeof(buf), "%s/sub/herald.users/x", f->dir);
  unlink(buf);
  rmdir(bad);
  /* A missing folder is an error naming the file. */
  snprintf(bad, sizeof(bad), "%s/none/herald.users", f->dir);
  assert_int_equal(users_save(u, bad, err, sizeof(err)), -1);
  assert_int_equal(strncmp(err, bad, strlen(bad)), 0);
  assert_non_null(strstr(err, "No such file"));
  users_free(u);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(test_valid_names),
      T(test_round_trip),
      T(test_missing_file_is_empty),
      T(test_comments_and_blank_lines),
      T(test_bad_lines),
      T(test_set_and_refusals),
      T(test_del),
      T(test_verify),
      T(test_verify_threads),
      T(test_save_mode_0600),
      T(test_save_is_atomic),
  };
  return cmocka_run_group_tests(tests, group_setup, NULL);
}
