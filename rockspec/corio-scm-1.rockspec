-- corio: libuv bound to Lua coroutines.
-- Build from a checkout with:
--   luarocks --lua-version=5.4 --tree=.rocks/5.4 --deps-mode=none \
--     make rockspec/corio-scm-1.rockspec
-- (see the Makefile for 5.3, 5.1 and LuaJIT).
rockspec_format = "3.0"
package = "corio"
version = "scm-1"

source = {
  url = "git+https://example.invalid/corio.git",
}

description = {
  summary = "libuv event loop driven by Lua coroutines",
  detailed = [[
    corio runs Lua coroutines on a libuv loop: tasks, timers, cancel
    scopes with deadlines, semaphores, channels and more, with a small
    C core (corio.core) and a pure-Lua layer (corio).
  ]],
  license = "MIT",
}

dependencies = {
  "lua >= 5.1, < 5.5",
}

external_dependencies = {
  LIBUV = {
    header = "uv.h",
    library = "uv",
  },
}

build = {
  type = "builtin",
  modules = {
    ["corio.core"] = {
      sources = {
        "csrc/core.c",
        "csrc/module.c",
        "csrc/runtime.c",
        "csrc/task.c",
        "csrc/time.c",
        "csrc/scope.c",
        "csrc/sync.c",
        "csrc/channel.c",
        "csrc/observe.c",
        "csrc/io.c",
        "csrc/fs.c",
        "csrc/file.c",
        "csrc/process.c",
        "csrc/signal.c",
        "csrc/marshal.c",
        "csrc/pool.c",
        "csrc/worker.c",
        "csrc/stream.c",
        "csrc/tcp.c",
        "csrc/udp.c",
        "csrc/dns.c",
        "csrc/stdio.c",
        "csrc/host.c",
      },
      incdirs = { "csrc", "$(LIBUV_INCDIR)" },
      libdirs = { "$(LIBUV_LIBDIR)" },
      libraries = { "uv", "pthread", "dl" },
    },
    corio = "lua/corio/init.lua",
    ["corio.sync"] = "lua/corio/sync.lua",
    ["corio.file"] = "lua/corio/file.lua",
    ["corio.meta"] = "lua/corio/meta.lua",
    ["corio.retry"] = "lua/corio/retry.lua",
    ["corio.map"] = "lua/corio/map.lua",
    ["corio.test"] = "lua/corio/test.lua",
    ["corio.net"] = "lua/corio/net.lua",
    ["corio.luv"] = "lua/corio/luv.lua",
    ["corio.socket"] = "lua/corio/socket.lua",
    ["corio.socket_meta"] = "lua/corio/socket_meta.lua",
  },
}
