/*
 * bench/c/echo.c: the practical limit for bench/w_tcp.lua, built by it.
 * A TCP echo on loopback in one process and one libuv loop: `conns`
 * clients each do `rounds` round trips of `size` bytes with the server
 * (write, then wait for the whole echo before the next write). Plain
 * callbacks, buffers allocated once per connection, uv_try_write first.
 * Prints "rate=<round trips per second> wall_s=<seconds>".
 *
 *   echo CONNS ROUNDS SIZE
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct conn {
  uv_tcp_t h;
  uv_write_t w;
  char buf[65536];
  size_t got;
  int left;       /* client: round trips still to do; server: -1 */
} conn;

static uv_loop_t *loop;
static int size, rounds, conns, done;
static char *msg;
static uv_tcp_t server;

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  conn *c = (conn *)h->data;
  (void)hint;
  *b = uv_buf_init(c->buf + c->got, (unsigned)(sizeof c->buf - c->got));
}

static void on_written(uv_write_t *w, int status) {
  (void)w;
  (void)status;
}

static void send_bytes(conn *c, const char *p, size_t n) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = uv_try_write((uv_stream_t *)&c->h, &b, 1);
  if (r < 0) r = 0;
  if ((size_t)r < n) {
    b = uv_buf_init((char *)p + r, (unsigned)(n - r));
    uv_write(&c->w, (uv_stream_t *)&c->h, &b, 1, on_written);
  }
}

static void on_close(uv_handle_t *h) { free(h->data); }

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  conn *c = (conn *)s->data;
  (void)b;
  if (n < 0) {
    uv_close((uv_handle_t *)s, on_close);
    return;
  }
  if (c->left < 0) { /* server: echo what came */
    send_bytes(c, c->buf, (size_t)n);
    return;
  }
  c->got += (size_t)n;
  if (c->got < (size_t)size) return;
  c->got = 0;
  if (--c->left > 0) {
    send_bytes(c, msg, (size_t)size);
  } else {
    uv_close((uv_handle_t *)s, on_close);
    if (++done == conns) uv_close((uv_handle_t *)&server, NULL);
  }
}

static conn *conn_new(int left) {
  conn *c = (conn *)calloc(1, sizeof *c);
  uv_tcp_init(loop, &c->h);
  c->h.data = c;
  c->left = left;
  return c;
}

static void on_connection(uv_stream_t *srv, int status) {
  conn *c;
  if (status < 0) return;
  c = conn_new(-1);
  uv_accept(srv, (uv_stream_t *)&c->h);
  uv_tcp_nodelay(&c->h, 1);
  uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = (conn *)req->data;
  free(req);
  if (status < 0) {
    fprintf(stderr, "connect: %s\n", uv_strerror(status));
    exit(1);
  }
  uv_tcp_nodelay(&c->h, 1);
  uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
  send_bytes(c, msg, (size_t)size);
}

int main(int argc, char **argv) {
  struct sockaddr_in addr;
  struct sockaddr_storage bound;
  int len = sizeof bound, i;
  uint64_t t0;
  if (argc != 4) {
    fprintf(stderr, "usage: echo CONNS ROUNDS SIZE\n");
    return 2;
  }
  conns = atoi(argv[1]);
  rounds = atoi(argv[2]);
  size = atoi(argv[3]);
  msg = (char *)malloc((size_t)size);
  memset(msg, 'x', (size_t)size);
  loop = uv_default_loop();
  uv_tcp_init(loop, &server);
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&server, (struct sockaddr *)&addr, 0);
  uv_listen((uv_stream_t *)&server, 1024, on_connection);
  uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
  t0 = uv_hrtime();
  for (i = 0; i < conns; i++) {
    conn *c = conn_new(rounds);
    uv_connect_t *req = (uv_connect_t *)malloc(sizeof *req);
    req->data = c;
    uv_tcp_connect(req, &c->h, (struct sockaddr *)&bound, on_connect);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  {
    double wall = (double)(uv_hrtime() - t0) / 1e9;
    printf("rate=%.1f wall_s=%.4f\n", (double)conns * rounds / wall, wall);
  }
  free(msg);
  return 0;
}
