/*
 * fs.c: corio.fs — whole-file and directory operations on libuv's
 * thread pool.
 *
 * Each call is one job (uv_queue_work) that does all its system calls in
 * the worker: fs.read is open + fstat + read + close in one pool round
 * trip, where chained uv_fs requests would take three or four. The job
 * is a malloc'd record that owns copies of its paths and data, so it
 * never points into Lua memory.
 *
 * Lifetime and cancel safety: a call parks its task with the job as the
 * wait object. When the task gives up (timeout, cancellation, teardown)
 * the job is detached (job->t = NULL) and uv_cancel'd; if a worker already
 * runs it, it finishes in the background and its completion callback just
 * frees it. The callback always comes (libuv calls after_work for
 * cancelled work too), and it is the one place that frees the job and
 * gives back its I/O budget slot: an abandoned job still counts against
 * max_io until the pool is done with it, so a stuck filesystem cannot
 * pile up unbounded pool work. A result that arrived before the task ran
 * stands (abort with woken == 1 refuses): a write that happened is
 * reported as done.
 */
#include "corio.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FS_MAX_READ (64.0 * 1024 * 1024)
#define FS_ELIMIT 1 /* not a libuv code: the file is above max_read */

enum { FS_READ, FS_WRITE, FS_APPEND, FS_STAT, FS_LIST, FS_MKDIR, FS_REMOVE,
       FS_RENAME, FS_EXISTS };

static const char *const op_names[] = {"read", "write", "append", "stat",
                                       "list", "mkdir", "remove", "rename",
                                       "exists"};

typedef struct fs_job {
  uv_work_t work;
  corio_rt *rt;
  corio_task *t;     /* the waiting task; NULL once it gave up */
  int op;            /* FS_* */
  int err;           /* 0, a libuv error code, or FS_ELIMIT */
  int flag;          /* mkdir: parents; exists: the answer */
  size_t max;        /* read: max_read */
  char *buf;         /* read/list: malloc'd result; write: the data */
  size_t len;
  struct stat st;
  const char *path, *path2; /* inside this allocation */
} fs_job;

/* ------------------------------------------------------------ worker */

static int aux_err(void) { return uv_translate_sys_error(errno); }

static int aux_grow(fs_job *j, size_t *cap, size_t need) {
  char *nb;
  size_t ncap = *cap ? *cap : 4096;
  while (ncap < need) ncap *= 2;
  if (ncap == *cap) return 0;
  if (!(nb = (char *)realloc(j->buf, ncap))) return UV_ENOMEM;
  j->buf = nb;
  *cap = ncap;
  return 0;
}

/* The whole file, up to j->max bytes (one more byte tells it is larger). */
static int work_read(fs_job *j) {
  size_t cap = 0;
  int r = 0, fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return aux_err();
  if (fstat(fd, &j->st) == 0 && S_ISREG(j->st.st_mode))
    r = (size_t)j->st.st_size > j->max
            ? FS_ELIMIT
            : aux_grow(j, &cap, (size_t)j->st.st_size + 1);
  while (r == 0) {
    ssize_t n;
    if (j->len == cap && (r = aux_grow(j, &cap, cap + 1)) != 0) break;
    n = read(fd, j->buf + j->len, cap - j->len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) r = aux_err();
    if (n <= 0) break;
    j->len += (size_t)n;
    if (j->len > j->max) r = FS_ELIMIT;
  }
  close(fd);
  return r;
}

static int work_write(fs_job *j) {
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC |
              (j->op == FS_APPEND ? O_APPEND : O_TRUNC);
  int r = 0, fd = open(j->path, flags, 0666);
  size_t off = 0;
  if (fd < 0) return aux_err();
  while (off < j->len) {
    ssize_t n = write(fd, j->buf + off, j->len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      r = aux_err();
      break;
    }
    off += (size_t)n;
  }
  if (close(fd) != 0 && r == 0 && errno != EINTR) r = aux_err();
  return r;
}

static int aux_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a + 1, *(char *const *)b + 1);
}

static char aux_dtype(unsigned char d) {
  switch (d) {
    case DT_REG: return 'f';
    case DT_DIR: return 'd';
    case DT_LNK: return 'l';
    case DT_FIFO: return 'p';
    case DT_SOCK: return 's';
    case DT_CHR: return 'c';
    case DT_BLK: return 'b';
    default: return '?';
  }
}

/* Entries sorted by name, as "<type char><name>\0" back to back. */
static int work_list(fs_job *j) {
  DIR *d = opendir(j->path);
  char **names = NULL, *flat;
  size_t n = 0, cap = 0, total = 0, i;
  struct dirent *e;
  int r = 0;
  if (!d) return aux_err();
  while ((e = readdir(d)) != NULL) {
    size_t l;
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (n == cap) {
      char **nn = (char **)realloc(names, (cap = cap ? cap * 2 : 32) *
                                          sizeof *names);
      if (!nn) { r = UV_ENOMEM; break; }
      names = nn;
    }
    l = strlen(e->d_name);
    if (!(names[n] = (char *)malloc(l + 2))) { r = UV_ENOMEM; break; }
    names[n][0] = aux_dtype(e->d_type);
    memcpy(names[n] + 1, e->d_name, l + 1);
    total += l + 2;
    n++;
  }
  closedir(d);
  if (r == 0 && n) qsort(names, n, sizeof *names, aux_cmp);
  if (r == 0 && (flat = (char *)malloc(total ? total : 1)) != NULL) {
    j->buf = flat;
    for (i = 0; i < n; i++) {
      size_t l = strlen(names[i]) + 1;
      memcpy(flat + j->len, names[i], l);
      j->len += l;
    }
  } else if (r == 0) {
    r = UV_ENOMEM;
  }
  for (i = 0; i < n; i++) free(names[i]);
  free(names);
  return r;
}

/* mkdir, or mkdir -p when j->flag: every missing parent, and an existing
   directory is no error. */
static int work_mkdir(fs_job *j) {
  char *p = (char *)j->path, *s;
  struct stat st;
  if (!j->flag) return mkdir(p, 0777) == 0 ? 0 : aux_err();
  for (s = p + 1;; s++) {
    char c = *s;
    if (c != '/' && c != '\0') continue;
    *s = '\0';
    if (mkdir(p, 0777) != 0 &&
        (errno != EEXIST || stat(p, &st) != 0 || !S_ISDIR(st.st_mode))) {
      int r = errno == EEXIST ? UV_EEXIST : aux_err();
      *s = c;
      return r == UV_EEXIST && c == '/' ? UV_ENOTDIR : r;
    }
    *s = c;
    if (c == '\0') return 0;
  }
}

static int work_remove(fs_job *j) {
  if (unlink(j->path) == 0) return 0;
  if (errno != EISDIR && errno != EPERM) return aux_err();
  return rmdir(j->path) == 0 ? 0 : aux_err();
}

static void fs_work(uv_work_t *w) {
  fs_job *j = (fs_job *)w->data;
  switch (j->op) {
    case FS_READ: j->err = work_read(j); break;
    case FS_WRITE: case FS_APPEND: j->err = work_write(j); break;
    case FS_STAT: j->err = stat(j->path, &j->st) == 0 ? 0 : aux_err(); break;
    case FS_LIST: j->err = work_list(j); break;
    case FS_MKDIR: j->err = work_mkdir(j); break;
    case FS_REMOVE: j->err = work_remove(j); break;
    case FS_RENAME:
      j->err = rename(j->path, j->path2) == 0 ? 0 : aux_err();
      break;
    case FS_EXISTS:
      if (stat(j->path, &j->st) == 0) j->flag = 1;
      else if (errno != ENOENT && errno != ENOTDIR) j->err = aux_err();
      break;
  }
}

/* -------------------------------------------------------- completion */

static const char *aux_type(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "directory";
  if (S_ISLNK(m)) return "link";
  if (S_ISFIFO(m)) return "fifo";
  if (S_ISSOCK(m)) return "socket";
  if (S_ISCHR(m)) return "char";
  if (S_ISBLK(m)) return "block";
  return "other";
}

static void aux_setnum(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void aux_setint(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static double aux_time(struct timespec ts) {
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void push_stat(lua_State *L, const struct stat *st) {
  lua_createtable(L, 0, 12);
  lua_pushstring(L, aux_type(st->st_mode));
  lua_setfield(L, -2, "type");
  aux_setint(L, "size", (lua_Integer)st->st_size);
  aux_setint(L, "mode", (lua_Integer)(st->st_mode & 07777));
  aux_setnum(L, "mtime", aux_time(st->st_mtim));
  aux_setnum(L, "atime", aux_time(st->st_atim));
  aux_setnum(L, "ctime", aux_time(st->st_ctim));
  aux_setint(L, "uid", (lua_Integer)st->st_uid);
  aux_setint(L, "gid", (lua_Integer)st->st_gid);
  aux_setint(L, "nlink", (lua_Integer)st->st_nlink);
  aux_setint(L, "ino", (lua_Integer)st->st_ino);
  aux_setint(L, "dev", (lua_Integer)st->st_dev);
}

static const char *aux_type_name(char c) {
  switch (c) {
    case 'f': return "file";
    case 'd': return "directory";
    case 'l': return "link";
    case 'p': return "fifo";
    case 's': return "socket";
    case 'c': return "char";
    case 'b': return "block";
    default: return "unknown";
  }
}

/* names (sorted), and name -> type */
static int push_list(lua_State *L, const fs_job *j) {
  size_t off = 0;
  int i = 0;
  lua_newtable(L);
  lua_newtable(L);
  while (off < j->len) {
    const char *e = j->buf + off;
    size_t l = strlen(e + 1);
    lua_pushlstring(L, e + 1, l);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, ++i);
    lua_pushstring(L, aux_type_name(e[0]));
    lua_rawset(L, -3);
    off += l + 2;
  }
  return 2;
}

/* Pushes the call's results onto L; returns their count. */
static int push_results(lua_State *L, fs_job *j) {
  if (j->err == FS_ELIMIT) {
    lua_pushnil(L);
    corio_error_push(L, "limit", NULL, "read %s: file larger than max_read "
                     "(%f bytes)", j->path, (double)j->max);
    return 2;
  }
  if (j->err) {
    lua_pushfstring(L, "%s %s", op_names[j->op], j->path);
    lua_pushnil(L);
    corio_io_error_push(L, j->err, lua_tostring(L, -2));
    lua_remove(L, -3);
    return 2;
  }
  switch (j->op) {
    case FS_READ: lua_pushlstring(L, j->buf, j->len); return 1;
    case FS_STAT: push_stat(L, &j->st); return 1;
    case FS_LIST: return push_list(L, j);
    case FS_EXISTS: lua_pushboolean(L, j->flag); return 1;
    default: lua_pushboolean(L, 1); return 1;
  }
}

static void fs_free(fs_job *j) {
  if (j->op == FS_READ || j->op == FS_LIST) free(j->buf);
  free(j);
}

static void fs_on_done(uv_work_t *w, int status) {
  fs_job *j = (fs_job *)w->data;
  corio_task *t = j->t;
  if (t && status == 0) {
    lua_State *co = corio_wake_stack(t, 4);
    corio_wake(t, push_results(co, j));
  }
  corio_io_give(j->rt);
  fs_free(j);
}

/* The task gives up: the job finishes (or is cancelled) in the
   background. A result already handed over stands. */
static int fs_abort(corio_task *t, int woken) {
  fs_job *j = (fs_job *)t->wait.obj;
  if (woken == 1) return 0;
  j->t = NULL;
  uv_cancel((uv_req_t *)&j->work);
  return 1;
}

/* ------------------------------------------------------------- calls */

static const char *aux_path(lua_State *L, int arg, size_t *len) {
  const char *p = luaL_checklstring(L, arg, len);
  if (strlen(p) != *len) luaL_argerror(L, arg, "path contains a zero byte");
  if (*len == 0) luaL_argerror(L, arg, "path is empty");
  return p;
}

/* Starts job op for the calling task (args: path [, path2 | data] [,
   opts]); parks it or returns nil, err. Re-run by the budget. */
static int fs_start(lua_State *L, int op, lua_CFunction self) {
  static const char *const only_timeout[] = {"timeout", NULL};
  static const char *const read_opts[] = {"timeout", "max_read", NULL};
  static const char *const mkdir_opts[] = {"timeout", "parents", NULL};
  const char *fname = op_names[op];
  size_t l1, l2 = 0;
  const char *p1 = aux_path(L, 1, &l1), *p2 = NULL;
  int two = op == FS_WRITE || op == FS_APPEND || op == FS_RENAME;
  int oi = two ? 3 : 2, flag = 0;
  double timeout, max = FS_MAX_READ;
  corio_task *t;
  fs_job *j;
  int r;
  if (op == FS_RENAME) p2 = aux_path(L, 2, &l2);
  else if (two) p2 = luaL_checklstring(L, 2, &l2);
  timeout = corio_io_timeout(L, oi, fname, op == FS_READ ? read_opts
                             : op == FS_MKDIR ? mkdir_opts : only_timeout);
  if (op == FS_READ) {
    max = corio_opt_range(L, oi, "max_read", FS_MAX_READ, 0, 1e15, fname);
  }
  if (op == FS_MKDIR && lua_istable(L, oi)) {
    lua_getfield(L, oi, "parents");
    flag = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  t = corio_await_begin(L, fname);
  if (!corio_io_take(t->rt)) return corio_io_wait_slot(L, t, self, timeout);
  j = (fs_job *)malloc(sizeof *j + l1 + 1 + (p2 ? l2 + 1 : 0));
  if (!j) {
    corio_io_give(t->rt);
    return luaL_error(L, "%s: not enough memory", fname);
  }
  memset(j, 0, sizeof *j);
  j->work.data = j;
  j->rt = t->rt;
  j->op = op;
  j->flag = flag;
  j->max = max > 1e15 ? (size_t)1e15 : (size_t)max;
  j->path = memcpy((char *)(j + 1), p1, l1 + 1);
  if (p2) {
    char *copy = memcpy((char *)(j + 1) + l1 + 1, p2, l2);
    copy[l2] = '\0';
    if (op == FS_RENAME) j->path2 = copy;
    else j->buf = copy, j->len = l2;
  }
  if ((r = uv_queue_work(&t->rt->loop, &j->work, fs_work, fs_on_done))) {
    corio_io_give(t->rt);
    free(j);
    return corio_io_fail(L, r, fname);
  }
  j->t = t;
  return corio_await(L, t, "fs", fs_abort, j, timeout);
}

/* corio.fs.read(path, [{timeout, max_read}]) -> data | nil, err */
static int lfs_read(lua_State *L) { return fs_start(L, FS_READ, lfs_read); }
/* corio.fs.write(path, data, [opts]) -> true | nil, err (truncates) */
static int lfs_write(lua_State *L) { return fs_start(L, FS_WRITE, lfs_write); }
/* corio.fs.append(path, data, [opts]) -> true | nil, err */
static int lfs_append(lua_State *L) {
  return fs_start(L, FS_APPEND, lfs_append);
}
/* corio.fs.stat(path, [opts]) -> {type, size, mode, mtime, ...} */
static int lfs_stat(lua_State *L) { return fs_start(L, FS_STAT, lfs_stat); }
/* corio.fs.list(path, [opts]) -> names (sorted), {name = type} */
static int lfs_list(lua_State *L) { return fs_start(L, FS_LIST, lfs_list); }
/* corio.fs.mkdir(path, [{parents, timeout}]) -> true | nil, err */
static int lfs_mkdir(lua_State *L) { return fs_start(L, FS_MKDIR, lfs_mkdir); }
/* corio.fs.remove(path, [opts]): a file or an empty directory */
static int lfs_remove(lua_State *L) {
  return fs_start(L, FS_REMOVE, lfs_remove);
}
/* corio.fs.rename(from, to, [opts]) -> true | nil, err */
static int lfs_rename(lua_State *L) {
  return fs_start(L, FS_RENAME, lfs_rename);
}
/* corio.fs.exists(path, [opts]) -> boolean | nil, err */
static int lfs_exists(lua_State *L) {
  return fs_start(L, FS_EXISTS, lfs_exists);
}

static const luaL_Reg fs_funcs[] = {
    {"read", lfs_read},     {"write", lfs_write},   {"append", lfs_append},
    {"stat", lfs_stat},     {"list", lfs_list},     {"mkdir", lfs_mkdir},
    {"remove", lfs_remove}, {"rename", lfs_rename}, {"exists", lfs_exists},
    {NULL, NULL}};

void corio_open_fs(lua_State *L) {
  lua_newtable(L);
  corio_setfuncs(L, fs_funcs, 2); /* they may wait for a budget slot */
  lua_setfield(L, -2, "fs");
}
