/*
 * file.c: corio.fs.open(path, mode) and the corio.File object, for files
 * too large to read whole: read(n | "l" | "L" | "a"), write, seek, close
 * (lines() is added by lua/corio/file.lua).
 *
 * The record (fs_file) is malloc'd apart from the userdata, which holds a
 * pointer to it, so the userdata can be collected while a request is in
 * flight. Invariants:
 *   - at most one libuv request per file is in flight (f->req, f->op);
 *     it holds a reference on the record (f->refs: the box + the request)
 *     and an I/O budget slot, both given back in its callback;
 *   - the file keeps its own position (f->pos) and reads at explicit
 *     offsets into a read-ahead buffer: data read is only consumed when a
 *     call returns it, so a read that timed out loses nothing — its
 *     request finishes in the background, its bytes land in the buffer,
 *     and the next read returns them;
 *   - a call that finds the request of a call that gave up still in
 *     flight waits for it and starts over (corio_await_retry); a call
 *     that finds another task's live request raises "busy";
 *   - the file belongs to the run that opened it: when run returns (or
 *     the runtime is collected), an open file is closed (the io_object
 *     teardown: a plain close(2), no Lua), and later calls raise;
 *   - __gc and __close never wait and run no Lua: they start an
 *     asynchronous close whose callback drops the record.
 */
#include "corio.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FILE_MT "corio.File"
#define FILE_CHUNK 65536
#define FILE_MAX_LINE (64.0 * 1024)
#define FILE_MAX_READ (64.0 * 1024 * 1024)

enum { F_NONE, F_OPEN, F_FILL, F_WRITE, F_SIZE, F_CLOSE };
/* how the task waiting on f->req was parked */
enum { W_RESULT, W_RETRY, W_FOREIGN };

typedef struct fs_file {
  uv_fs_t req;
  corio_io_object node;  /* in rt->io_objects while the fd is ours */
  corio_rt *rt;          /* NULL once closed or torn down */
  corio_rt *slot_rt;     /* whose budget slot the request holds */
  corio_task *t;         /* the task waiting on req, or NULL */
  int box_ref;           /* open: the box, anchored for its caller */
  int op, wmode;         /* F_*, W_* */
  int refs;              /* the box, and the request in flight */
  uv_file fd;            /* -1 when closed */
  uint8_t readable, writable, append, eof, size_ready;
  int64_t pos;           /* next byte to read or write; -1: at the end
                            after an append, size unknown */
  int64_t size;          /* from the last fstat (size_ready) */
  char *buf;             /* read-ahead: blen bytes of the file at pos */
  size_t bstart, blen, bcap;
  char *wbuf;            /* the data of the write in flight */
  size_t wlen, wdone, wcap;
  size_t max_line, max_read;
} fs_file;

typedef struct file_box { fs_file *f; } file_box;

static void file_release(fs_file *f) {
  if (--f->refs) return;
  free(f->buf);
  free(f->wbuf);
  free(f);
}

/* Detaches the file from its runtime; the descriptor is closed by the
   caller (synchronously, or by a request). */
static void file_detach(fs_file *f) {
  corio_list_remove(&f->node.link);
  f->rt = NULL;
}

static void file_on_closed(uv_fs_t *req) {
  uv_fs_req_cleanup(req);
  file_release((fs_file *)req->data);
}

/* Run end or collection of the runtime: close the descriptor now (a
   request in flight does it when it completes). */
static void file_teardown(lua_State *L, corio_io_object *o) {
  fs_file *f = corio_container(o, fs_file, node);
  (void)L;
  file_detach(f);
  if (f->op == F_NONE && f->fd >= 0) close(f->fd);
  if (f->op == F_NONE) f->fd = -1;
}

/* ------------------------------------------------------- completion */

static void file_on_done(uv_fs_t *req);

/* Applies the result of the request to the file; returns 1 when the
   request goes on (a partial write), 0 when it is done. err gets the
   libuv error, or 0. */
static int file_apply(fs_file *f, ssize_t res, int *err) {
  *err = res < 0 ? (int)res : 0;
  if (res < 0) return 0;
  switch (f->op) {
    case F_OPEN: f->fd = (uv_file)res; break;
    case F_FILL:
      if (res == 0) f->eof = 1;
      f->blen += (size_t)res;
      break;
    case F_SIZE:
      f->size = (int64_t)f->req.statbuf.st_size;
      f->size_ready = 1;
      if (f->pos < 0) f->pos = f->size;
      break;
    case F_WRITE:
      f->wdone += (size_t)res;
      if (res == 0 && f->wdone < f->wlen) {
        *err = UV_EIO; /* no progress: do not spin */
      } else if (f->rt && f->wdone < f->wlen) {
        uv_buf_t b = uv_buf_init(f->wbuf + f->wdone,
                                 (unsigned)(f->wlen - f->wdone));
        uv_fs_req_cleanup(&f->req);
        if (uv_fs_write(&f->rt->loop, &f->req, f->fd, &b, 1,
                        f->append ? -1 : f->pos + (int64_t)f->wdone,
                        file_on_done) == 0)
          return 1;
        *err = UV_EIO;
      }
      f->pos = f->append ? -1 : f->pos + (int64_t)f->wdone;
      break;
    case F_CLOSE: f->fd = -1; break;
  }
  return 0;
}

/* Hands the outcome of the request to the task waiting on it. */
static void file_deliver(fs_file *f, corio_task *t, int op, int err) {
  lua_State *co = corio_wake_stack(t, 3);
  if (op == F_OPEN) { /* the box goes to the caller, or nowhere */
    lua_rawgeti(co, LUA_REGISTRYINDEX, f->box_ref);
    luaL_unref(co, LUA_REGISTRYINDEX, f->box_ref);
    f->box_ref = LUA_NOREF;
    if (!err) {
      corio_wake(t, 1);
      return;
    }
    lua_pop(co, 1);
  }
  if (f->wmode == W_FOREIGN || (f->wmode == W_RETRY && !err)) {
    corio_wake_retry(t);
  } else if (err) {
    corio_io_fail(co, err, op == F_OPEN ? "open" : op == F_WRITE ? "write"
                           : op == F_CLOSE ? "close" : "read");
    t->wait.abort = NULL;
    corio_wake(t, 2);
  } else {
    lua_pushboolean(co, 1);
    corio_wake(t, 1);
  }
}

static void file_on_done(uv_fs_t *req) {
  fs_file *f = (fs_file *)req->data;
  corio_task *t = f->t;
  int err = UV_ECANCELED, op = f->op;
  if (req->result != UV_ECANCELED && file_apply(f, req->result, &err))
    return; /* a partial write goes on */
  uv_fs_req_cleanup(req);
  if (op == F_CLOSE) f->fd = -1; /* even when close(2) failed */
  f->op = F_NONE;
  f->t = NULL;
  if (!f->rt && f->fd >= 0) { /* torn down, collected, or not taken */
    close(f->fd);
    f->fd = -1;
  }
  if (t) file_deliver(f, t, op, err);
  corio_io_give(f->slot_rt); /* f->rt may be gone; the slot's is not */
  file_release(f);
}

/* The task gives up; the request finishes in the background. A result
   already handed over stands. */
static int file_abort(corio_task *t, int woken) {
  fs_file *f = (fs_file *)t->wait.obj;
  if (woken == 1) return 0;
  if (f->op == F_OPEN && f->box_ref != LUA_NOREF) { /* nobody takes it */
    luaL_unref(t->co, LUA_REGISTRYINDEX, f->box_ref);
    f->box_ref = LUA_NOREF;
  }
  f->t = NULL;
  uv_cancel((uv_req_t *)&f->req);
  return 1;
}

/* ------------------------------------------------------------ checks */

static fs_file *check_file(lua_State *L, const char *fname) {
  file_box *b = (file_box *)corio_checkudata(L, 1, FILE_MT);
  if (!b->f || !b->f->rt || b->f->fd < 0)
    luaL_error(L, "%s: file is closed", fname);
  if (b->f->rt != corio_ctx_get(L)->rt)
    luaL_error(L, "%s: the file belongs to another runtime", fname);
  return b->f;
}

/* The common start of every waiting method: cancellation point, one
   request per file. Returns the task, or NULL after pushing what the
   method returns (it waited for a request left by a call that gave up). */
static corio_task *file_begin(lua_State *L, fs_file *f, const char *fname,
                              lua_CFunction self, double timeout, int *ret) {
  corio_task *t = corio_await_begin(L, fname);
  if (f->op == F_NONE) return t;
  if (f->t)
    luaL_error(L, "%s: file is busy (another task is using it)", fname);
  f->t = t;
  f->wmode = W_FOREIGN;
  *ret = corio_await_retry(L, t, self, "fs", file_abort, f, timeout);
  return NULL;
}

/* Starts request op (already issued by the caller through issue()) and
   parks t. A budget shortage parks t for a slot instead. */
static int file_park(lua_State *L, fs_file *f, corio_task *t, int op,
                     int wmode, int r, double timeout, lua_CFunction self) {
  if (r) {
    corio_io_give(t->rt);
    return corio_io_fail(L, r, "fs");
  }
  f->op = op;
  f->t = t;
  f->wmode = wmode;
  f->slot_rt = t->rt;
  f->refs++;
  if (wmode == W_RESULT)
    return corio_await(L, t, "fs", file_abort, f, timeout);
  return corio_await_retry(L, t, self, "fs", file_abort, f, timeout);
}

/* --------------------------------------------------------------- open */

static int aux_mode(lua_State *L, const char *m, fs_file *f) {
  int flags;
  switch (m[0]) {
    case 'r': flags = O_RDONLY; f->readable = 1; break;
    case 'w': flags = O_WRONLY | O_CREAT | O_TRUNC; f->writable = 1; break;
    case 'a': flags = O_WRONLY | O_CREAT | O_APPEND; f->writable = 1;
              f->append = 1; break;
    default: flags = -1;
  }
  if (flags != -1 && m[1] == '+') {
    flags = (flags & ~(O_RDONLY | O_WRONLY)) | O_RDWR;
    f->readable = f->writable = 1;
  }
  if (flags == -1 || strspn(m + 1, "+b") != strlen(m + 1))
    luaL_argerror(L, 2, "invalid mode (r, w, a, r+, w+ or a+, maybe b)");
  return flags | O_CLOEXEC;
}

static size_t aux_size(lua_State *L, int opt, const char *key, double def) {
  return (size_t)corio_opt_range(L, opt, key, def, 1, 1e15, "open");
}

/* corio.fs.open(path, [mode], [{timeout, max_line, max_read}])
   -> file | nil, err */
static int lfs_open(lua_State *L) {
  static const char *const allowed[] = {"timeout", "max_line", "max_read",
                                        NULL};
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  const char *mode = luaL_optstring(L, 2, "r");
  double timeout = corio_io_timeout(L, 3, "open", allowed);
  fs_file tmp; /* the mode and limits, checked before anything is taken */
  corio_task *t;
  file_box *b;
  fs_file *f;
  int flags, r;
  if (strlen(path) != len || !len) luaL_argerror(L, 1, "invalid path");
  memset(&tmp, 0, sizeof tmp);
  flags = aux_mode(L, mode, &tmp);
  tmp.max_line = aux_size(L, 3, "max_line", FILE_MAX_LINE);
  tmp.max_read = aux_size(L, 3, "max_read", FILE_MAX_READ);
  t = corio_await_begin(L, "open");
  if (!corio_io_take(t->rt)) {
    lua_settop(L, 3);
    return corio_io_wait_slot(L, t, lfs_open, timeout);
  }
  /* the userdata first: nothing leaks if an allocation fails */
  b = (file_box *)lua_newuserdata(L, sizeof *b);
  b->f = NULL;
  luaL_setmetatable(L, FILE_MT);
  if (!(f = (fs_file *)calloc(1, sizeof *f))) {
    corio_io_give(t->rt);
    return luaL_error(L, "open: not enough memory");
  }
  *f = tmp;
  f->fd = -1;
  f->refs = 1;
  f->req.data = f;
  corio_list_init(&f->node.link);
  f->node.teardown = file_teardown;
  b->f = f;
  lua_pushvalue(L, -1);
  f->box_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  f->rt = t->rt;
  corio_io_register(t->rt, &f->node);
  r = uv_fs_open(&t->rt->loop, &f->req, path, flags, 0666, file_on_done);
  if (r) {
    luaL_unref(L, LUA_REGISTRYINDEX, f->box_ref);
    f->box_ref = LUA_NOREF;
  }
  return file_park(L, f, t, F_OPEN, W_RESULT, r, timeout, lfs_open);
}

/* --------------------------------------------------------------- read */

/* Makes room for want more bytes after the buffered ones. */
static int aux_room(fs_file *f, size_t want) {
  size_t need;
  if (f->bstart && f->blen) memmove(f->buf, f->buf + f->bstart, f->blen);
  f->bstart = 0;
  need = f->blen + want;
  if (need > f->bcap) {
    size_t ncap = f->bcap ? f->bcap : FILE_CHUNK;
    char *nb;
    while (ncap < need) ncap *= 2;
    if (!(nb = (char *)realloc(f->buf, ncap))) return UV_ENOMEM;
    f->buf = nb;
    f->bcap = ncap;
  }
  return 0;
}

/* Pushes n buffered bytes and consumes them. */
static int aux_take(lua_State *L, fs_file *f, size_t n, size_t skip) {
  if (n) lua_pushlstring(L, f->buf + f->bstart, n);
  else lua_pushliteral(L, "");
  f->bstart += n + skip;
  f->blen -= n + skip;
  f->pos += (int64_t)(n + skip);
  return 1;
}

static int aux_limit(lua_State *L, const char *what, size_t limit) {
  lua_pushnil(L);
  corio_error_push(L, "limit", NULL, "read: %s (%f bytes)", what,
                   (double)limit);
  return -1;
}

/* What the buffer can answer now: 1 (pushed), 0 (more data needed), or
   -1 (pushed nil, err). At the end of the file with nothing buffered the
   answer is nil, and the end is forgotten (the file may grow). */
static int read_ready(lua_State *L, fs_file *f, const char *fmt,
                      size_t n) {
  const char *nl;
  if (!fmt) {
    if (f->blen >= n || (f->eof && f->blen)) {
      return aux_take(L, f, f->blen < n ? f->blen : n, 0);
    }
  } else if (*fmt == 'a') {
    if (f->blen > f->max_read)
      return aux_limit(L, "more than max_read", f->max_read);
    if (f->eof) {
      f->eof = 0;
      return aux_take(L, f, f->blen, 0);
    }
    return 0;
  } else if (f->blen &&
             (nl = memchr(f->buf + f->bstart, '\n', f->blen)) != NULL) {
    size_t l = (size_t)(nl - (f->buf + f->bstart));
    if (l <= f->max_line) return aux_take(L, f, l + (*fmt == 'L'), *fmt != 'L');
  } else if (f->eof && f->blen && f->blen <= f->max_line) {
    return aux_take(L, f, f->blen, 0);
  }
  if (fmt && *fmt != 'a' && f->blen > f->max_line)
    return aux_limit(L, "line longer than max_line", f->max_line);
  if (f->eof) {
    f->eof = 0;
    lua_pushnil(L);
    return 1;
  }
  return 0;
}

/* f:read([n | "l" | "L" | "a"], [{timeout}]) -> data | nil (end) | nil, err */
static int lfile_read(lua_State *L) {
  fs_file *f = check_file(L, "read");
  const char *fmt = "l";
  size_t n = 0, want;
  double timeout;
  corio_task *t;
  uv_buf_t b;
  int r, ret = 0;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(L, 2);
    if (!(v >= 0 && v <= 1e15)) luaL_argerror(L, 2, "invalid byte count");
    n = (size_t)v;
    fmt = NULL;
  } else if (!lua_isnoneornil(L, 2)) {
    fmt = luaL_checkstring(L, 2);
    if (*fmt == '*') fmt++; /* Lua 5.1's "*l" */
    if ((*fmt != 'l' && *fmt != 'L' && *fmt != 'a') || fmt[1])
      luaL_argerror(L, 2, "invalid format (a number, \"l\", \"L\" or \"a\")");
  }
  if (!f->readable) luaL_error(L, "read: file not open for reading");
  timeout = corio_io_timeout(L, 3, "read", NULL);
  if (!(t = file_begin(L, f, "read", lfile_read, timeout, &ret))) return ret;
  if (!fmt && n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (f->pos >= 0 && (r = read_ready(L, f, fmt, n)) != 0)
    return r < 0 ? 2 : 1;
  if (!corio_io_take(t->rt)) {
    lua_settop(L, 3);
    return corio_io_wait_slot(L, t, lfile_read, timeout);
  }
  if (f->pos < 0) { /* after an append: find the end first */
    r = uv_fs_fstat(&t->rt->loop, &f->req, f->fd, file_on_done);
    return file_park(L, f, t, F_SIZE, W_RETRY, r, timeout, lfile_read);
  }
  want = !fmt && n > f->blen + FILE_CHUNK ? n - f->blen : FILE_CHUNK;
  if ((r = aux_room(f, want)) == 0) {
    b = uv_buf_init(f->buf + f->blen, (unsigned)want);
    r = uv_fs_read(&t->rt->loop, &f->req, f->fd, &b, 1,
                   f->pos + (int64_t)f->blen, file_on_done);
  }
  return file_park(L, f, t, F_FILL, W_RETRY, r, timeout, lfile_read);
}

/* -------------------------------------------------------------- write */

/* f:write(data, [{timeout}]) -> true | nil, err */
static int lfile_write(lua_State *L) {
  fs_file *f = check_file(L, "write");
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  double timeout = corio_io_timeout(L, 3, "write", NULL);
  corio_task *t;
  uv_buf_t b;
  int r, ret = 0;
  if (!f->writable) luaL_error(L, "write: file not open for writing");
  if (!(t = file_begin(L, f, "write", lfile_write, timeout, &ret)))
    return ret;
  if (!corio_io_take(t->rt)) {
    lua_settop(L, 3);
    return corio_io_wait_slot(L, t, lfile_write, timeout);
  }
  if (len > f->wcap) {
    char *nb = (char *)realloc(f->wbuf, len);
    if (!nb) {
      corio_io_give(t->rt);
      return luaL_error(L, "write: not enough memory");
    }
    f->wbuf = nb;
    f->wcap = len;
  }
  if (len) memcpy(f->wbuf, data, len); /* wbuf is NULL before the first write */
  f->wlen = len;
  f->wdone = 0;
  f->blen = f->bstart = 0; /* the read-ahead may be stale now */
  f->eof = 0;
  b = uv_buf_init(f->wbuf, (unsigned)len);
  r = uv_fs_write(&t->rt->loop, &f->req, f->fd, &b, 1,
                  f->append ? -1 : f->pos, file_on_done);
  return file_park(L, f, t, F_WRITE, W_RESULT, r, timeout, lfile_write);
}

/* --------------------------------------------------------------- seek */

/* f:seek([whence], [offset]) -> position | nil, err. whence: "set",
   "cur" (default), "end" (asks the size: waits). */
static int lfile_seek(lua_State *L) {
  static const char *const whences[] = {"set", "cur", "end", NULL};
  fs_file *f = check_file(L, "seek");
  int w = luaL_checkoption(L, 2, "cur", whences), r, ret = 0;
  lua_Number off = luaL_optnumber(L, 3, 0);
  double timeout = corio_io_timeout(L, 4, "seek", NULL);
  int64_t base;
  corio_task *t;
  if (!(t = file_begin(L, f, "seek", lfile_seek, timeout, &ret))) return ret;
  if ((w == 2 || f->pos < 0) && !f->size_ready) {
    if (!corio_io_take(t->rt)) {
      lua_settop(L, 4);
      return corio_io_wait_slot(L, t, lfile_seek, timeout);
    }
    r = uv_fs_fstat(&t->rt->loop, &f->req, f->fd, file_on_done);
    return file_park(L, f, t, F_SIZE, W_RETRY, r, timeout, lfile_seek);
  }
  base = w == 0 ? 0 : w == 1 ? f->pos : f->size;
  f->size_ready = 0;
  if (base + off < 0 || off != off) luaL_argerror(L, 3, "position before "
                                                  "the start of the file");
  f->pos = base + (int64_t)off;
  f->blen = f->bstart = 0;
  f->eof = 0;
  lua_pushinteger(L, (lua_Integer)f->pos);
  return 1;
}

/* -------------------------------------------------------------- close */

/* f:close([opts]) -> true. Idempotent, and it never waits: not for an
   I/O budget slot (a server whose idle connections hold every slot must
   still close its files), nor for another task's request in flight. The
   file reads as closed at once; its descriptor is closed by an
   asynchronous request, or by the request in flight when it completes,
   whose waiter gets nil, err "closed" now. */
static int lfile_close(lua_State *L) {
  file_box *b = (file_box *)corio_checkudata(L, 1, FILE_MT);
  fs_file *f = b->f;
  corio_task *w;
  if (!f || !f->rt || f->fd < 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  corio_io_timeout(L, 2, "close", NULL); /* options are checked all the same */
  check_file(L, "close");
  w = f->t;
  file_detach(f); /* from here on the file reads as closed */
  if (f->op == F_NONE) {
    uv_file fd = f->fd;
    f->fd = -1;
    f->refs++; /* the close request's */
    if (uv_fs_close(&corio_ctx_get(L)->rt->loop, &f->req, fd,
                    file_on_closed) != 0) {
      close(fd);
      f->refs--;
    }
  } else if (w) {
    lua_State *co = corio_wake_stack(w, 2);
    f->t = NULL; /* the request's outcome goes to nobody */
    uv_cancel((uv_req_t *)&f->req);
    lua_pushnil(co);
    corio_error_push(co, "closed", NULL, "fs: the file was closed");
    w->wait.abort = NULL;
    corio_wake(w, 2);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* __gc and __close: never wait, no Lua. The descriptor is closed by an
   asynchronous request (or by the request in flight when it ends). */
static int lfile_gc(lua_State *L) {
  file_box *b = (file_box *)corio_checkudata(L, 1, FILE_MT);
  fs_file *f = b->f;
  if (!f) return 0;
  b->f = NULL;
  if (f->rt && f->op == F_NONE && f->fd >= 0) {
    uv_loop_t *loop = &f->rt->loop;
    file_detach(f);
    if (uv_fs_close(loop, &f->req, f->fd, file_on_closed) == 0) return 0;
    close(f->fd);
  }
  if (f->rt) file_detach(f); /* the request in flight closes the fd */
  file_release(f);
  return 0;
}

static int lfile_tostring(lua_State *L) {
  file_box *b = (file_box *)corio_checkudata(L, 1, FILE_MT);
  if (!b->f || !b->f->rt || b->f->fd < 0)
    lua_pushliteral(L, "corio.File (closed)");
  else
    lua_pushfstring(L, "corio.File (fd %d)", (int)b->f->fd);
  return 1;
}

static const luaL_Reg file_retry[] = {{"read", lfile_read},
                                      {"write", lfile_write},
                                      {"seek", lfile_seek},
                                      {"close", lfile_close},
                                      {NULL, NULL}};
static const luaL_Reg file_meta[] = {{"__gc", lfile_gc},
                                     {"__close", lfile_gc},
                                     {"__tostring", lfile_tostring},
                                     {NULL, NULL}};
static const luaL_Reg open_funcs[] = {{"open", lfs_open}, {NULL, NULL}};

void corio_open_file(lua_State *L) {
  corio_class_retry(L, FILE_MT, NULL, file_retry, file_meta);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "_File_methods"); /* the Lua layer adds lines() */
  lua_pop(L, 1);
  lua_getfield(L, -1, "fs");
  corio_setfuncs(L, open_funcs, 2);
  lua_pop(L, 1);
}
