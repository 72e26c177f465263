#include "jsonline.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct jsonline {
  int fd;
  lua_State *L;
  char *buf; /* received bytes not yet returned as frames */
  size_t len, cap;
};

jsonline_t *jsonline_connect_unix(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  jsonline_t *j;
  int fd;

  if (len >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    return NULL;
  }
  memcpy(addr.sun_path, path, len + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return NULL;
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return NULL;
  }
  j = calloc(1, sizeof(*j));
  if (j == NULL || (j->L = luaL_newstate()) == NULL) {
    free(j);
    close(fd);
    errno = ENOMEM;
    return NULL;
  }
  j->fd = fd;
  luaL_openlibs(j->L);
  luaL_requiref(j->L, "cjson", luaopen_cjson, 1);
  lua_pop(j->L, 1);
  return j;
}

void jsonline_close(jsonline_t *j) {
  if (j == NULL)
    return;
  close(j->fd);
  lua_close(j->L);
  free(j->buf);
  free(j);
}

lua_State *jsonline_lua(jsonline_t *j) { return j->L; }

int jsonline_fd(const jsonline_t *j) { return j->fd; }

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int jsonline_send(jsonline_t *j) {
  lua_State *L = j->L;
  size_t len;
  const char *text;
  int r;

  lua_getglobal(L, "cjson");
  lua_getfield(L, -1, "encode");
  lua_remove(L, -2);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  text = lua_tolstring(L, -1, &len);
  r = write_all(j->fd, text, len) == 0 && write_all(j->fd, "\n", 1) == 0
          ? 0
          : -1;
  lua_pop(L, 1);
  return r;
}

int jsonline_buffered(const jsonline_t *j) {
  return j->buf != NULL && memchr(j->buf, '\n', j->len) != NULL;
}

int jsonline_recv(jsonline_t *j) {
  lua_State *L = j->L;
  char *nl;
  size_t take;

  while (j->buf == NULL || (nl = memchr(j->buf, '\n', j->len)) == NULL) {
    ssize_t n;
    if (j->cap - j->len < 4096) {
      size_t cap = j->cap ? j->cap * 2 : 8192;
      char *p = realloc(j->buf, cap);
      if (p == NULL)
        return -1;
      j->buf = p;
      j->cap = cap;
    }
    n = read(j->fd, j->buf + j->len, j->cap - j->len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return 0;
    j->len += (size_t)n;
  }
  take = (size_t)(nl - j->buf);
  lua_getglobal(L, "cjson");
  lua_getfield(L, -1, "decode");
  lua_remove(L, -2);
  lua_pushlstring(L, j->buf, take);
  memmove(j->buf, nl + 1, j->len - take - 1);
  j->len -= take + 1;
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
    lua_pop(L, 1);
    return -1;
  }
  return 1;
}
