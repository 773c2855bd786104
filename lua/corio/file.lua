--- corio.file: the Lua half of corio.File (files from corio.fs.open).
--
-- `f:lines([fmt], [opts])` is written in Lua so that each step is a plain
-- call of f:read, which may wait. PUC Lua 5.1 cannot wait inside a `for`
-- iterator (the VM calls it without a continuation): there, loop with
-- `while true do local l = f:read("l") ... end` instead.
local M = {}

local error, type = error, type

--- Adds lines() to the method table of corio.File.
function M.install(core)
  local methods = core._File_methods
  --- f:lines([fmt], [opts]) -> an iterator over f:read(fmt) (default "l"):
  -- each step returns the next value, nil at the end of the file; an I/O
  -- error or a limit is raised (as io.lines does).
  function methods:lines(fmt, opts)
    if fmt ~= nil and type(fmt) ~= "string" and type(fmt) ~= "number" then
      error("bad argument #1 to 'lines' (format expected, got " .. type(fmt) .. ")", 2)
    end
    fmt = fmt or "l"
    local f = self
    return function()
      local v, err = f:read(fmt, opts)
      if v == nil and err ~= nil then error(err, 2) end
      return v
    end
  end
end

return M
