---@meta corio
-- luacheck: no unused args
-- luacheck: ignore 241 (the class tables below only carry method annotations)

-- LuaLS (lua-language-server) definitions for `require "corio"`: types,
-- signatures and one-line descriptions for editors such as Neovim. It
-- declares the public API as implemented by csrc/*.c (corio.core) and
-- lua/corio/init.lua and lua/corio/sync.lua; the contract is README.md's
-- "API reference". Requiring it does nothing: every body is empty.

local corio = {}

-- ------------------------------------------------------------- types --

---@alias corio.TaskStatus
---| "ready"     # started or woken, waiting for its turn
---| "running"   # the task running now
---| "waiting"   # parked in a wait (see `corio.TaskInfo.waiting_on`)
---| "done"      # returned
---| "failed"    # raised an error
---| "cancelled" # ended with its own cancellation

---@alias corio.ErrorKind
---| "cancelled" # a cancelled task's wait (`corio.is_cancelled`)
---| "timeout"   # a deadline passed (`corio.is_timeout`)
---| "closed"    # the semaphore, watch or channel is closed
---| "io"        # an I/O failure; `code` is the errno name ("ENOENT", ...)
---| "limit"     # a size limit (max_read, max_line, max_output) was passed
---| "closed"    # the semaphore, watch, channel or stream is closed; end of stream; EPIPE, ECONNRESET
---| "limit"     # a line, `read("a")` or another documented bound was exceeded
---| "io"        # any other I/O failure (see `code`)
---| "deadlock"  # every task waits on something that can no longer happen
---| "task"      # a plain error value raised in a task (see `value`)
---| string

---An error raised or returned by corio; `tostring(err)` gives one line.
---@class corio.Error
---@field kind corio.ErrorKind what went wrong
---@field message string the error's message
---@field code? string the errno name of an I/O failure ("ECONNREFUSED", "EMFILE", ...)
---@field traceback? string where it was raised (added when a task fails)
---@field task? string the name of the task that failed
---@field value? any for kind "task": the plain error value the task raised
---@field others? any[] a scope's failures after the first, which is this error

---Options of `corio.runtime{...}`; unknown options are an error.
---@class corio.RuntimeOptions
---@field clock? "real"|"virtual" "real" (default) or "virtual": virtual seconds from 0, jumping to the next deadline
---@field on_error? fun(err: corio.Error) called for failed tasks nobody joined (default: one stderr line)
---@field io_timeout? number seconds (> 0, default 30): the deadline of an I/O call without its own `timeout`
---@field max_io? integer 1 to 1e6 (default 256): I/O operations in flight at once; past it callers wait (FIFO)
---@field max_tasks? integer 1 to 1e6 (default: no limit): live tasks; past it `spawn` in a task waits (FIFO)
---@field workers? integer 1 to 1e6: worker threads of the default pool
---@field queue? integer 1 to 1e6 (default 1024): jobs queued in the default pool
---@field debug? boolean record where each task was spawned (`spawned_at`; costs ~8% of a spawn)
---@field dump_on? string "SIGQUIT", "SIGUSR1", ...: print `corio.dump()` to stderr on that signal
---@field on_log? fun(line: string, record: corio.LogRecord) where `corio.log` writes (default: stderr)
---@field io_timeout? number seconds (> 0, default 30): I/O limit, validated now, used once I/O lands
---@field max_io? integer 1 to 1e6 (default 256): I/O limit, validated now, used once I/O lands
---@field workers? integer 1 to 1e6 (default: the number of CPUs): threads of the default pool
---@field queue? integer 1 to 1e6 (default 1024): jobs waiting for a worker before `blocking` waits
---@field init? string a module each worker requires once when it starts
---@field io_timeout? number seconds (> 0, default 30): the deadline of an I/O call without `{timeout =}`
---@field max_io? integer 1 to 1e6 (default 256): I/O calls waiting on libuv at once; past it callers wait FIFO
---@field workers? integer 1 to 1e6 (default 4): thread-pool limit, validated now, used once it lands
---@field queue? integer 1 to 1e6 (default 1024): thread-pool limit, validated now, used once it lands

---Options of `corio.spawn` and `s:spawn`.
---@class corio.SpawnOptions
---@field name? string the task's name (default `"task#<id>"`)

---Options of every wait on a synchronisation primitive or channel.
---@class corio.WaitOptions
---@field timeout? number seconds (>= 0); past it the wait returns `nil, err` with `err.kind == "timeout"`

---Counters of a runtime, from `corio.stats()` or `rt:stats()`.
---@class corio.Stats
---@field spawned integer tasks started
---@field alive integer tasks not finished
---@field done integer tasks that returned
---@field failed integer tasks that raised an error
---@field cancelled integer tasks that ended with their own cancellation
---@field ready integer tasks waiting for their turn
---@field timers integer armed deadlines (sleeps, wait timeouts, scopes)
---@field io_inflight integer I/O budget slots taken (operations in flight)
---@field io_waiting integer tasks waiting for an I/O budget slot
---@field handles integer libuv handles of I/O objects open on the loop

---The budgets of a runtime, from `rt:config()`.
---@class corio.Config
---@field workers integer
---@field queue integer
---@field io_timeout number
---@field max_io integer
---@field max_tasks? integer absent when there is no limit
---@field clock "real"|"virtual"
---@field debug boolean

---What `corio.log` hands to the runtime's `on_log` besides the line.
---@class corio.LogRecord
---@field time number `corio.now()` when logged
---@field level "trace"|"debug"|"info"|"warn"|"error"
---@field message string the formatted message
---@field task? string the task's name
---@field context table a copy of the task's context
---@field workers integer pool threads started (all pools of the runtime)
---@field workers_busy integer pool threads running a job
---@field jobs_queued integer jobs waiting for a worker (also as `queued_jobs`)
---@field jobs_done integer pool jobs finished
---@field io_inflight integer I/O budget slots taken (`max_io`)
---@field io_waiting integer calls waiting for a slot
---@field handles integer libuv handles open for I/O objects

---One live task, from `corio.tasks()` or `rt:tasks()`.
---@class corio.TaskInfo
---@field id integer the task's id
---@field name string the task's name
---@field status corio.TaskStatus the task's status
---@field waiting_on? string the primitive it waits on ("sleep", "join", "scope", "semaphore", "channel send", ...)
---@field parent? integer the id of the task whose scope it runs in
---@field age number seconds since it was spawned (runtime clock)
---@field spawned_at? string "source:line" of the spawn (with `debug = true` or while tracing)
---@field error? corio.Error in `corio.trace` events "fail" and "cancel": the task's error

---One function's outcome from `corio.join`: `{true, results...}` or `{false, err}`.
---@class corio.Outcome
---@field [1] boolean whether the function returned (true) or raised (false)
---@field [integer] any its results from [2] on, or its error at [2]
---@field n integer the number of entries (as `table.pack`)

-- ----------------------------------------------------------- runtime --

---A runtime: an event loop and a scheduler (`corio.runtime{...}`).
---@class corio.Runtime
local Runtime = {}

---Runs `main(...)` as the task "main"; returns its results or raises its error.
---When main returns, tasks still running are cancelled and awaited (their cleanup runs).
---@param main async fun(...):...
---@param ... any arguments for `main`
---@return any ... main's results
function Runtime:run(main, ...) end

---Releases the runtime's event loop and its file descriptors now; `run` is an error afterwards.
---Closing twice is harmless.
function Runtime:close() end

---The runtime's counters (also after `run` returned).
---@return corio.Stats
function Runtime:stats() end

---One table per live task of the runtime (also after `run` returned).
---@return corio.TaskInfo[]
function Runtime:tasks() end

---A readable list of the runtime's live tasks (also after `run` returned).
---@return string
function Runtime:dump() end

---The runtime's budgets, as set or defaulted.
---@return corio.Config
function Runtime:config() end

---Sets this runtime's trace hook (see `corio.trace`); returns the previous one.
---@param fn? fun(event: "spawn"|"done"|"fail"|"cancel", info: corio.TaskInfo)
---@return function|nil
function Runtime:trace(fn) end

---Host loop: spawns `main(...)` as the task "main" and returns at once; the host's own
---loop then calls `rt:step()` until it returns false. main first runs at the next step.
---@param main async fun(...):...
---@param ... any arguments for `main`
function Runtime:start(main, ...) end

---Host loop: runs what is ready without ever blocking (at most one batch of tasks).
---Returns true while the run started by `start` goes on, false once it is over.
---Call it from the host's own code, not from a task.
---@return boolean more
function Runtime:step() end

---Host loop: main's outcome once `step` returned false: `true, results...` or
---`false, err` (like `t:wait()`; a deadlock or a cancellation by `close` is `false, err`).
---It is the outcome of the last run started by `start`.
---@return boolean ok
---@return any ... main's results, or its error
function Runtime:result() end

---Host loop: whether a run started by `start` goes on.
---@return boolean
function Runtime:started() end

---Host loop: libuv's backend fd (epoll on Linux), readable when corio's loop has I/O
---to process (on Linux also when the next corio timer is due).
---@return integer fd
function Runtime:backend_fd() end

---Host loop: milliseconds until `step` has work without I/O: 0 (call it now),
---the time to the next timer, or -1 (only I/O can bring work; no run going on).
---@return integer ms
function Runtime:backend_timeout() end

---Makes a runtime; unknown options are an error.
---@param opts? corio.RuntimeOptions
---@return corio.Runtime
function corio.runtime(opts) end

---`corio.runtime():run(main, ...)`; the runtime's loop and file descriptors are released when it returns.
---@param main async fun(...):...
---@param ... any arguments for `main`
---@return any ... main's results
function corio.run(main, ...) end

---Monotonic seconds (arbitrary origin); on a virtual clock, virtual seconds from 0.
---@return number
function corio.now() end

---The current runtime's counters (an empty table outside `run`).
---@return corio.Stats
function corio.stats() end

---One table per live task of the current runtime (an empty table outside `run`).
---@return corio.TaskInfo[]
function corio.tasks() end

---A readable list of live tasks, indented under the task whose scope they run in (at most 1000).
---@return string
function corio.dump() end

---Calls `fn(event, info)` on every spawn, done, fail and cancel of the current runtime;
---`nil` removes it. Returns the previous hook. Errors in it go to `on_error`.
---@param fn? fun(event: "spawn"|"done"|"fail"|"cancel", info: corio.TaskInfo)
---@return function|nil
function corio.trace(fn) end

---The current task's context table: a child starts with a shallow copy of its parent's.
---`corio.context(false)` returns it only if it exists.
---@param create? false
---@return table
function corio.context(create) end

---Writes one logfmt line (time, level, task, message, context fields) to stderr or `on_log`.
---@param level "trace"|"debug"|"info"|"warn"|"error"
---@param fmt string a `string.format` format
---@param ... any
function corio.log(level, fmt, ...) end

---A protected call that may wait, on every Lua version (PUC 5.1: fn runs as a child task).
---@param fn async fun(...):...
---@return boolean ok
---@return any ...
function corio.pcall(fn, ...) end

---`xpcall` that may wait, on every Lua version (PUC 5.1: the handler runs after unwinding).
---@param fn async fun(...):...
---@param handler fun(err: any): any
---@return boolean ok
---@return any ...
function corio.xpcall(fn, handler, ...) end

-- ---------------------------------------------------------- patterns --

---Options of `corio.retry`.
---@class corio.RetryOptions
---@field retries? integer retries after the first call (default 3: up to 4 calls)
---@field base? number the first delay, seconds (default 0.1)
---@field factor? number growth of the delay (default 2)
---@field max? number the largest delay, seconds (default 10)
---@field jitter? boolean full jitter: the delay times a random factor in [0, 1) (default true)
---@field retry_if? fun(err: any): boolean false stops at once (a permanent error)
---@field on_retry? fun(err: any, attempt: integer, delay: number) called before each sleep

---Calls `fn(attempt)` until it returns; sleeps between attempts respect cancellation and deadlines.
---Raises the last error with `err.attempts`; a cancellation is never retried.
---@param fn async fun(attempt: integer):...
---@param opts? corio.RetryOptions
---@return any ...
function corio.retry(fn, opts) end

---Options of `corio.map`, `corio.each` and `corio.stream`.
---@class corio.MapOptions
---@field concurrency? integer calls in flight at most (default 10)
---@field ordered? boolean results in input order (default true) or completion order

---`fn(item, i)` for every item, at most `concurrency` at once; the first error cancels the rest
---and is raised after their cleanup. Returns the first results (with `n`).
---@param items any[]
---@param fn async fun(item: any, i: integer): any
---@param opts? corio.MapOptions
---@return table results
function corio.map(items, fn, opts) end

---`corio.map` for side effects.
---@param items any[]
---@param fn async fun(item: any, i: integer)
---@param opts? corio.MapOptions
function corio.each(items, fn, opts) end

---`for r, item in corio.stream(iter, fn, opts)`: results as they complete, pulling inputs lazily.
---The fourth value closes it (cancels the workers) on break in Lua 5.4; call it elsewhere.
---@param iter fun(): any
---@param fn async fun(item: any): any
---@param opts? corio.MapOptions
---@return async fun(): any, any step
---@return nil
---@return nil
---@return table stop
function corio.stream(iter, fn, opts) end

-- ------------------------------------------------------------- tasks --

---A task: a function running in its own coroutine (`corio.spawn`, `s:spawn`).
---@class corio.Task
---@field id integer a number unique in the Lua state
---@field name string the given name or `"task#<id>"` (the main task is "main")
local Task = {}

---`fn`'s results; raises its error (a plain error value as an error of kind "task").
---Joining twice returns the same results; joining a cancelled task raises its "cancelled" error.
---@async
---@return any ... the task's results
function Task:join() end

---`true, results...` or `false, err`; never raises the task's error.
---@async
---@return boolean ok
---@return any ... the task's results, or its error
function Task:wait() end

---Requests cancellation and returns at once; its current or next wait raises a "cancelled" error.
function Task:cancel() end

---The task's status.
---@return corio.TaskStatus
function Task:status() end

---Starts `fn(...)` as a task of the runtime (not of the spawning task) and returns it.
---@param fn async fun(...):...
---@param ... any arguments for `fn`
---@return corio.Task
---@overload fun(opts: corio.SpawnOptions, fn: async fun(...):..., ...: any): corio.Task
function corio.spawn(fn, ...) end

---The running task, or `nil` outside tasks.
---@return corio.Task?
function corio.current() end

---Sleeps `secs` seconds; never returns early. `sleep(0)` is `yield()`; `sleep(math.huge)` waits until cancelled.
---@async
---@param secs number seconds (>= 0)
function corio.sleep(secs) end

---Puts the task at the back of the ready queue; a cancellation point.
---@async
function corio.yield() end

-- ---------------------------------------------- structured concurrency --

---A nursery: the `s` that `corio.scope` passes to its body.
---@class corio.Scope
local Scope = {}

---Starts a child task that cannot outlive the scope; an error once the scope is closed.
---@param fn async fun(...):...
---@param ... any arguments for `fn`
---@return corio.Task
---@overload fun(self: corio.Scope, opts: corio.SpawnOptions, fn: async fun(...):..., ...: any): corio.Task
function Scope:spawn(fn, ...) end

---Cancels the body and every child; the scope then returns normally.
function Scope:cancel() end

---Whether this scope was cancelled (by `s:cancel()` or by a failure in it).
---@return boolean
function Scope:cancelled() end

---`fn(...)`'s results; past the deadline every wait inside raises a cancellation, then a "timeout" error is raised.
---Nested deadlines: the earliest applies.
---@async
---@param secs number seconds (>= 0)
---@param fn async fun(...):...
---@param ... any arguments for `fn`
---@return any ... fn's results
function corio.timeout(secs, fn, ...) end

---Runs `body(s, ...)`; `s:spawn` starts children; returns the body's results once every child has finished.
---The first failure cancels the rest and is raised after all have finished; later ones are in `err.others`.
---@async
---@param body async fun(s: corio.Scope, ...):...
---@param ... any arguments for `body` after `s`
---@return any ... body's results
function corio.scope(body, ...) end

---Runs `fn(...)` to completion even if the caller is cancelled; the cancellation comes at its next wait.
---@async
---@param fn async fun(...):...
---@param ... any arguments for `fn`
---@return any ... fn's results
function corio.shield(fn, ...) end

---Runs all concurrently to the end; returns one table per function: `{true, results...}` or `{false, err}`.
---@async
---@param ... async fun():...
---@return corio.Outcome ...
function corio.join(...) end

---The first result of each; the first error cancels the rest and is raised once their cleanup has run.
---@async
---@param ... async fun():...
---@return any ...
function corio.try_join(...) end

---The index and results of the first function to finish; the others are cancelled and cleaned up first.
---If the first to finish raised, that error is raised.
---@async
---@param ... async fun():...
---@return integer index
---@return any ... its results
function corio.select(...) end

-- ----------------------------------------------------------- errors --

---Whether `v` is a corio error (of `kind`, if given).
---@param v any
---@param kind? corio.ErrorKind
---@return boolean
function corio.is_error(v, kind) end

---Whether `v` is a corio error of kind "cancelled".
---@param v any
---@return boolean
function corio.is_cancelled(v) end

---Whether `v` is a corio error of kind "timeout".
---@param v any
---@return boolean
function corio.is_timeout(v) end

---Makes a new corio error object (not in the README; corio's Lua layer uses it).
---@param kind corio.ErrorKind
---@param message string
---@param code? string
---@return corio.Error
function corio.error(kind, message, code) end

---The metatable of every corio error object (its `__tostring` gives one line).
---@type metatable
corio.Error = {}

-- -------------------------------------------------------- semaphore --

---A fair counting semaphore (`corio.semaphore(n)`); `<close>` closes it.
---@class corio.Semaphore
local Semaphore = {}

---A permit for `k` (default 1) permits, or `nil, err` ("timeout", "closed"); strictly FIFO.
---@async
---@param k? integer permits wanted (default 1)
---@param opts? corio.WaitOptions
---@return corio.Permit? permit
---@return corio.Error? err
---@overload fun(self: corio.Semaphore, opts?: corio.WaitOptions): corio.Permit?, corio.Error?
function Semaphore:acquire(k, opts) end

---A permit, or `nil` at once (takes no options: it never waits); `nil, err` when closed.
---@param k? integer permits wanted (default 1)
---@return corio.Permit? permit
---@return corio.Error? err
function Semaphore:try_acquire(k) end

---Acquires one permit, runs `fn(...)`, releases on return, error or cancellation; returns `fn`'s results.
---@async
---@param fn async fun(...):...
---@param ... any arguments for `fn`
---@return any ... fn's results
function Semaphore:with(fn, ...) end

---Permits free now.
---@return integer
function Semaphore:available() end

---Grows the capacity by `n` permits.
---@param n integer
function Semaphore:add(n) end

---Closes: every waiter wakes with a "closed" error, later acquires fail the same way.
function Semaphore:close() end

---Permits held from a semaphore; `<close>` and collection release them too.
---@class corio.Permit
local Permit = {}

---Gives the permits back; idempotent.
function Permit:release() end

---Makes a fair counting semaphore with `n` permits.
---@param n integer permits (>= 0)
---@return corio.Semaphore
function corio.semaphore(n) end

-- ------------------------------------------------------------ mutex --

---A FIFO, non-reentrant mutex (`corio.mutex()`).
---@class corio.Mutex
local Mutex = {}

---A guard, or `nil, err`; locking a mutex you hold is an error.
---@async
---@param opts? corio.WaitOptions
---@return corio.MutexGuard? guard
---@return corio.Error? err
function Mutex:lock(opts) end

---A guard, or `nil` at once.
---@return corio.MutexGuard?
function Mutex:try_lock() end

---Whether the mutex is locked.
---@return boolean
function Mutex:is_locked() end

---Locks, runs `fn(...)`, unlocks however it ends; returns `fn`'s results.
---@async
---@param fn async fun(...):...
---@param ... any arguments for `fn`
---@return any ... fn's results
function Mutex:with(fn, ...) end

---The lock on a mutex; `<close>` and collection unlock it too.
---@class corio.MutexGuard
local MutexGuard = {}

---Unlocks; an error from a task that does not hold it.
function MutexGuard:unlock() end

---Makes a mutex.
---@return corio.Mutex
function corio.mutex() end

-- ------------------------------------------------------------ event --

---An event (`corio.event()`): set wakes every waiter and stays set.
---@class corio.Event
local Event = {}

---Wakes every waiter and stays set.
function Event:set() end

---Clears the event.
function Event:clear() end

---Whether the event is set.
---@return boolean
function Event:is_set() end

---`true` once the event is set, or `nil, err`.
---@async
---@param opts? corio.WaitOptions
---@return true? ok
---@return corio.Error? err
function Event:wait(opts) end

---Makes an event (not set).
---@return corio.Event
function corio.event() end

-- ------------------------------------------------------------ watch --

---A value that tasks can wait on (`corio.watch(v)`); `<close>` closes it.
---@class corio.Watch
local Watch = {}

---Sets the value and wakes every `changed` waiter with it; `nil, err` when closed.
---@param v any
---@return true? ok
---@return corio.Error? err
function Watch:set(v) end

---The current value.
---@return any
function Watch:get() end

---Waits for the next `set` and returns the new value, or `nil, err` (values may be `nil`: check `err`).
---@async
---@param opts? corio.WaitOptions
---@return any value
---@return corio.Error? err
function Watch:changed(opts) end

---Closes: waiters wake with a "closed" error.
function Watch:close() end

---Whether the watch is closed.
---@return boolean
function Watch:is_closed() end

---Makes a watch holding `v`.
---@param v? any the initial value
---@return corio.Watch
function corio.watch(v) end

-- ---------------------------------------------------------- channel --

---A bounded multi-producer multi-consumer FIFO (`corio.channel(capacity)`); `<close>` closes it.
---@class corio.Channel
local Channel = {}

---`true`, or `nil, err` ("timeout", "closed"); waits while full. `nil` cannot be sent.
---@async
---@param v any a non-nil value
---@param opts? corio.WaitOptions
---@return true? ok
---@return corio.Error? err
function Channel:send(v, opts) end

---A value, or `nil, err`; after `close`, buffered values are still received, then kind "closed".
---@async
---@param opts? corio.WaitOptions
---@return any value
---@return corio.Error? err
function Channel:recv(opts) end

---`true`, `false` when full, `nil, err` when closed.
---@param v any a non-nil value
---@return boolean? ok
---@return corio.Error? err
function Channel:try_send(v) end

---A value, `nil` when empty, `nil, err` when closed and drained.
---@return any value
---@return corio.Error? err
function Channel:try_recv() end

---Closes the channel; closing twice is harmless.
function Channel:close() end

---Whether the channel is closed.
---@return boolean
function Channel:is_closed() end

---Values buffered now.
---@return integer
function Channel:len() end

---The channel's capacity.
---@return integer
function Channel:capacity() end

---`for v in ch:iter() do ... end` receives until the channel is closed and drained (not on PUC Lua 5.1).
---@return async fun(ch: corio.Channel): any step
---@return corio.Channel ch
function Channel:iter() end

---Makes a channel; capacity 0 is a rendezvous (a send waits for a receiver).
---@param capacity integer 0 to 2^24
---@return corio.Channel
function corio.channel(capacity) end

-- --------------------------------------------------------------- fs --

---Options of every I/O call.
---@class corio.IOOptions
---@field timeout? number seconds (>= 0); default: the runtime's `io_timeout`

---Options of `corio.fs.read`.
---@class corio.FsReadOptions: corio.IOOptions
---@field max_read? number bytes (default 64 MiB): a larger file is `nil, err` kind "limit"

---Options of `corio.fs.mkdir`.
---@class corio.FsMkdirOptions: corio.IOOptions
---@field parents? boolean create missing parents; an existing directory is no error

---Options of `corio.fs.open`.
---@class corio.FsOpenOptions: corio.IOOptions
---@field max_line? number bytes (default 64 KiB): a longer line is `nil, err` kind "limit"
---@field max_read? number bytes (default 64 MiB) for `read("a")`

---What `corio.fs.stat` returns.
---@class corio.FsStat
---@field type "file"|"directory"|"link"|"fifo"|"socket"|"char"|"block"|"other"
---@field size integer bytes
---@field mode integer permission bits (`st_mode & 07777`)
---@field mtime number seconds since the epoch
---@field atime number seconds since the epoch
---@field ctime number seconds since the epoch
---@field uid integer
---@field gid integer
---@field nlink integer
---@field ino integer
---@field dev integer

---Files and directories on libuv's thread pool; failures are `nil, err` with `err.code` ("ENOENT", ...).
corio.fs = {}

---The whole file.
---@async
---@param path string
---@param opts? corio.FsReadOptions
---@return string? data
---@return corio.Error? err
function corio.fs.read(path, opts) end

---Creates or truncates the file and writes `data`.
---@async
---@param path string
---@param data string
---@param opts? corio.IOOptions
---@return true? ok
---@return corio.Error? err
function corio.fs.write(path, data, opts) end

---Creates the file if needed and appends `data`.
---@async
---@param path string
---@param data string
---@param opts? corio.IOOptions
---@return true? ok
---@return corio.Error? err
function corio.fs.append(path, data, opts) end

---The file's metadata (follows symlinks).
---@async
---@param path string
---@param opts? corio.IOOptions
---@return corio.FsStat? st
---@return corio.Error? err
function corio.fs.stat(path, opts) end

---The directory's entries (not `.` and `..`) sorted by name, and name -> type.
---@async
---@param path string
---@param opts? corio.IOOptions
---@return string[]? names
---@return table<string, string>|corio.Error types_or_err
function corio.fs.list(path, opts) end

---Makes a directory (`parents = true`: like `mkdir -p`).
---@async
---@param path string
---@param opts? corio.FsMkdirOptions
---@return true? ok
---@return corio.Error? err
function corio.fs.mkdir(path, opts) end

---Removes a file or an empty directory.
---@async
---@param path string
---@param opts? corio.IOOptions
---@return true? ok
---@return corio.Error? err
function corio.fs.remove(path, opts) end

---Renames `from` to `to`.
---@async
---@param from string
---@param to string
---@param opts? corio.IOOptions
---@return true? ok
---@return corio.Error? err
function corio.fs.rename(from, to, opts) end

---Whether the path exists (`nil, err` for errors other than ENOENT and ENOTDIR).
---@async
---@param path string
---@param opts? corio.IOOptions
---@return boolean? exists
---@return corio.Error? err
function corio.fs.exists(path, opts) end

---Opens a file for reading and writing in pieces.
---@async
---@param path string
---@param mode? "r"|"w"|"a"|"r+"|"w+"|"a+"|string as `io.open` (default "r")
---@param opts? corio.FsOpenOptions
---@return corio.File? file
---@return corio.Error? err
function corio.fs.open(path, mode, opts) end

---A file from `corio.fs.open`; one call at a time; `<close>` closes it.
---@class corio.File
local File = {}

---`n` bytes, a line ("l" without its end, "L" with it) or the rest ("a"); `nil` at the end.
---@async
---@param fmt? integer|"l"|"L"|"a" default "l"
---@param opts? corio.IOOptions
---@return string? data
---@return corio.Error? err
function File:read(fmt, opts) end

---Writes `data` at the position (at the end in append modes).
---@async
---@param data string
---@param opts? corio.IOOptions
---@return true? ok
---@return corio.Error? err
function File:write(data, opts) end

---Moves the position; returns it.
---@async
---@param whence? "set"|"cur"|"end" default "cur"
---@param offset? integer default 0
---@return integer? pos
---@return corio.Error? err
function File:seek(whence, offset) end

---An iterator over `f:read(fmt)` that raises on errors (not on PUC Lua 5.1).
---@param fmt? integer|"l"|"L"|"a"
---@param opts? corio.IOOptions
---@return async fun(): string?
function File:lines(fmt, opts) end

---Closes the file; closing twice is harmless.
---@async
---@param opts? corio.IOOptions
---@return true? ok
---@return corio.Error? err
function File:close(opts) end

-- --------------------------------------------------------- processes --

---Options of `corio.exec`.
---@class corio.ExecOptions: corio.IOOptions
---@field input? string written to the child's stdin, which is then closed (default: /dev/null)
---@field env? table<string, string> replaces the environment (default: inherited)
---@field cwd? string the child's working directory
---@field max_output? number bytes per stream (default 16 MiB); past it: killed, `nil, err` kind "limit"
---@field kill_grace? number seconds between SIGTERM and SIGKILL on timeout or cancellation (default 2)

---What `corio.exec` returns.
---@class corio.ExecResult
---@field code? integer the exit status (nil when a signal killed the child)
---@field signal? string the signal that killed it ("SIGKILL", ...)
---@field stdout string
---@field stderr string

---Runs `argv` without a shell (argv[1] looked up in PATH); the child is always reaped before it returns.
---@async
---@param argv string[]
---@param opts? corio.ExecOptions
---@return corio.ExecResult? result
---@return corio.Error? err
function corio.exec(argv, opts) end

---Options of `corio.process`.
---@class corio.ProcessOptions
---@field env? table<string, string> replaces the environment (default: inherited)
---@field cwd? string the child's working directory
---@field stdin? "pipe"|"null"|"inherit" default "pipe": a stream in `pr.stdin`
---@field stdout? "pipe"|"null"|"inherit" default "pipe": a stream in `pr.stdout`
---@field stderr? "pipe"|"null"|"inherit" default "pipe": a stream in `pr.stderr`
---@field kill_grace? number seconds between SIGTERM and SIGKILL on close, collection (default 2)

---How a child ended: `code`, or `signal` when a signal killed it.
---@class corio.ProcessStatus
---@field code? integer the exit status (nil when a signal killed the child)
---@field signal? string the signal that killed it ("SIGTERM", ...)

---A running child with its pipes as streams (`corio.process`).
---@class corio.Process
---@field pid integer
---@field stdin? corio.Stream write-only; nil unless stdin = "pipe"
---@field stdout? corio.Stream nil unless stdout = "pipe"
---@field stderr? corio.Stream nil unless stderr = "pipe"
local Process = {}

---Waits for the child to exit. A timeout or cancellation leaves it running.
---@async
---@param opts? corio.IOOptions
---@return corio.ProcessStatus? status
---@return corio.Error? err
function Process:wait(opts) end

---Sends a signal (default "SIGTERM"); `nil, err` ("ESRCH") once the child exited.
---@param sig? string
---@return true? ok
---@return corio.Error? err
function Process:kill(sig) end

---Closes the pipes; a child still running gets SIGTERM, then SIGKILL after kill_grace, and is reaped.
function Process:close() end

---Starts `argv` without a shell (argv[1] looked up in PATH) with its stdio as streams.
---@param argv string[]
---@param opts? corio.ProcessOptions
---@return corio.Process? process
---@return corio.Error? err
function corio.process(argv, opts) end

---This process's id.
---@return integer
function corio.getpid() end

-- ----------------------------------------------------------- signals --

---Waits for the signal; returns its name.
---@async
---@param name string "SIGHUP", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", ...
---@param opts? corio.IOOptions
---@return string? name
---@return corio.Error? err
function corio.signal(name, opts) end

---The run's shutdown watch: false, then true on the first SIGINT or SIGTERM (a second one kills).
---@return corio.Watch
function corio.shutdown() end
-- -------------------------------------------------------- thread pool --

---Options of `corio.pool{...}`; unknown options are an error.
---@class corio.PoolOptions
---@field workers? integer 1 to 1e6 (default: the runtime's `workers`)
---@field queue? integer 1 to 1e6 (default: the runtime's `queue`)
---@field init? string a module each worker requires once when it starts

---A dedicated thread pool (`corio.pool{...}`), closed with its runtime.
---@class corio.Pool
local Pool = {}

---Runs `fn(...)` on one of the pool's workers and returns its results; see `corio.blocking`.
---@async
---@param fn function no upvalue but `_ENV`
---@param ... any nil, booleans, numbers, strings and tables of these
---@return any ...
function Pool:run(fn, ...) end

---Stops the pool: waiting callers get a `"closed"` error, running jobs are interrupted; idempotent.
function Pool:close() end

---Runs `fn(...)` on a worker thread of the runtime's default pool, in that worker's own Lua
---state, and returns its results (copied). Raises fn's error as kind `"task"`. A cancelled
---caller removes a job not yet started, or interrupts a running one.
---@async
---@param fn function no upvalue but `_ENV`
---@param ... any nil, booleans, numbers, strings and tables of these (64 deep, 64 MiB)
---@return any ...
function corio.blocking(fn, ...) end

---Makes a dedicated thread pool of the running runtime.
---@param opts? corio.PoolOptions
---@return corio.Pool
function corio.pool(opts) end
-- ---------------------------------------------------------- network --

---Options of an I/O call.
---@class corio.IoOptions
---@field timeout? number seconds (>= 0; default: the runtime's `io_timeout`)

---Options of `s:read`.
---@class corio.ReadOptions: corio.IoOptions
---@field max_line? integer longest line for "l"/"L" (default 65536): past it `nil, err` kind "limit"
---@field max_read? integer most bytes for "a" (default 64 MiB): past it `nil, err` kind "limit"

---Options of `corio.tcp.connect` and `srv:accept`.
---@class corio.ConnectOptions: corio.IoOptions
---@field nodelay? boolean disable Nagle's algorithm
---@field keepalive? boolean TCP keep-alive (60 s)

---Options of `corio.tcp.listen` and `corio.unix.listen`.
---@class corio.ListenOptions
---@field backlog? integer pending connections the kernel keeps (default 511)
---@field reuseport? boolean SO_REUSEPORT: several processes may serve one port (TCP)

---A byte stream: TCP or Unix connection, stdio, a child process's pipe. `<close>` closes it.
---@class corio.Stream
local Stream = {}

---Exactly `n` bytes (fewer only at end of stream), a line ("l" without, "L" with its end) or everything ("a").
---`nil, err` at the end of the stream (kind "closed"), on a timeout, past a limit (kind "limit").
---A second task reading while one waits raises.
---@async
---@param fmt? integer|"l"|"L"|"a" default "l"
---@param opts? corio.ReadOptions
---@return string? data
---@return corio.Error? err
function Stream:read(fmt, opts) end

---What is buffered (at most `max`, default 65536 bytes), waiting only when nothing is.
---@async
---@param max? integer
---@param opts? corio.IoOptions
---@return string? data
---@return corio.Error? err
function Stream:read_some(max, opts) end

---Queues `data`; waits while more than 1 MiB is queued (backpressure). `true` or `nil, err`.
---@async
---@param data string
---@param opts? corio.IoOptions
---@return true? ok
---@return corio.Error? err
function Stream:write(data, opts) end

---Waits until everything written so far is in the kernel.
---@async
---@param opts? corio.IoOptions
---@return true? ok
---@return corio.Error? err
function Stream:flush(opts) end

---Flushes, then ends the writing side (the peer reads end of stream).
---@async
---@param opts? corio.IoOptions
---@return true? ok
---@return corio.Error? err
function Stream:shutdown(opts) end

---Closes the stream (idempotent); queued unsent data is dropped (flush first to keep it).
function Stream:close() end

---Whether the stream is closed.
---@return boolean
function Stream:closed() end

---TCP: host, port; Unix: the path; other streams: `nil, err`.
---@return string|nil host
---@return integer|corio.Error|nil port
function Stream:local_addr() end

---The peer's address (as `local_addr`).
---@return string|nil host
---@return integer|corio.Error|nil port
function Stream:peer_addr() end

---TCP_NODELAY on (default) or off.
---@param on? boolean
---@return true? ok
---@return corio.Error? err
function Stream:nodelay(on) end

---TCP keep-alive on (default) or off, probing after `delay` seconds (default 60).
---@param on? boolean
---@param delay? integer
---@return true? ok
---@return corio.Error? err
function Stream:keepalive(on, delay) end

---The count of bytes buffered now, and whether reading has ended (end of stream or an
---error the next read returns). Never waits, consumes nothing.
---@return integer bytes
---@return boolean ended
function Stream:buffered() end

---Waits until a read would not wait (a byte is buffered, or reading ended); consumes nothing.
---@async
---@param opts? corio.IoOptions
---@return true? ok
---@return corio.Error? err
function Stream:readable(opts) end

---TCP: the socket's descriptor (corio still owns it: do not close it).
---@return integer? fd
---@return corio.Error? err
function Stream:fileno() end

---TCP: SO_LINGER. With `secs`, close() resets the connection after at most `secs`
---(0: at once); `false` restores the default graceful close.
---@param secs integer|false
---@return true? ok
---@return corio.Error? err
function Stream:linger(secs) end

---A listening TCP or Unix socket. `<close>` closes it.
---@class corio.Listener
local Listener = {}

---The next connection, or `nil, err` (code "EMFILE" when out of descriptors: the client stays queued).
---@async
---@param opts? corio.ConnectOptions
---@return corio.Stream? conn
---@return corio.Error? err
function Listener:accept(opts) end

---The bound TCP port.
---@return integer
function Listener:port() end

---The listening socket's descriptor (corio owns it).
---@return integer
function Listener:fileno() end

---Closes the listener (idempotent); waiting acceptors get kind "closed".
function Listener:close() end

---A bound UDP socket. `<close>` closes it.
---@class corio.UdpSocket
local UdpSocket = {}

---Sends one datagram to a literal address.
---@async
---@param data string
---@param host string
---@param port integer
---@param opts? corio.IoOptions
---@return true? ok
---@return corio.Error? err
function UdpSocket:send(data, host, port, opts) end

---The next datagram (at most 64 KiB) and its sender.
---@async
---@param opts? corio.IoOptions
---@return string|nil data
---@return string|corio.Error host
---@return integer? port
function UdpSocket:recv(opts) end

---The bound address.
---@return string host
---@return integer port
function UdpSocket:local_addr() end

---The socket's descriptor (corio owns it).
---@return integer? fd
---@return corio.Error? err
function UdpSocket:fileno() end

---Closes the socket (idempotent).
function UdpSocket:close() end

corio.tcp = {}

---Connects to `host:port`, trying each address of a name in turn within one deadline.
---@async
---@param host string
---@param port integer
---@param opts? corio.ConnectOptions
---@return corio.Stream? conn
---@return corio.Error? err
function corio.tcp.connect(host, port, opts) end

---Listens on `host:port` (port 0: a free port; "*": every IPv4 address).
---@param host string
---@param port integer
---@param opts? corio.ListenOptions
---@return corio.Listener? srv
---@return corio.Error? err
function corio.tcp.listen(host, port, opts) end

corio.unix = {}

---Connects to the Unix socket at `path`.
---@async
---@param path string
---@param opts? corio.IoOptions
---@return corio.Stream? conn
---@return corio.Error? err
function corio.unix.connect(path, opts) end

---Listens on a Unix socket at `path` (an existing file is not removed).
---@param path string
---@param opts? corio.ListenOptions
---@return corio.Listener? srv
---@return corio.Error? err
function corio.unix.listen(path, opts) end

corio.udp = {}

---A UDP socket bound to `host:port` (port 0: a free port).
---@param host string
---@param port integer
---@return corio.UdpSocket? sock
---@return corio.Error? err
function corio.udp.bind(host, port) end

---The distinct addresses of `host` (a literal returns itself at once).
---@async
---@param host string
---@param opts? {timeout?: number, family?: "inet"|"inet6"}
---@return string[]? addrs
---@return corio.Error? err
function corio.resolve(host, opts) end

---The process's stdin as a stream (one per runtime; a file or device is served by a copier thread).
---@return corio.Stream? stream
---@return corio.Error? err
function corio.stdin() end

---The process's stdout as a write-only stream (one per runtime; closing it leaves fd 1 open).
---@return corio.Stream? stream
---@return corio.Error? err
function corio.stdout() end

-- ---------------------------------------------------------- corio.luv --

---Drives a runtime started by `rt:start` from a luv loop (Neovim's `vim.uv`/`vim.loop`,
---luvit, or the luv module). Also `require "corio.luv"`.
corio.luv = {}

---@class corio.LuvAttachOptions
---@field uv? table the luv module (default: `vim.uv`/`vim.loop` in Neovim, else `require "luv"`)
---@field on_done? fun(ok: boolean, ...) called once with `rt:result()` when the run is over
---(without it a failed run is raised from the luv callback)

---@class corio.LuvAttachment
---@field done boolean true once the run is over
local LuvAttachment = {}

---Closes the luv handles; the run goes on, to be driven by `rt:step()` or closed.
function LuvAttachment:detach() end

---Cancels the run (`rt:close()`), closes the luv handles and calls `on_done` with main's outcome.
function LuvAttachment:close() end

---Polls `rt:backend_fd()` and arms a timer from `rt:backend_timeout()` after every step.
---@param rt corio.Runtime a runtime started with `rt:start`
---@param opts? corio.LuvAttachOptions
---@return corio.LuvAttachment
function corio.luv.attach(rt, opts) end

return corio
