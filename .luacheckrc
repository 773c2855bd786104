-- luacheck configuration: `luacheck lua spec bench examples` (make lint).
std = "max"          -- any Lua 5.1 to 5.4 (and LuaJIT) global is known
max_line_length = 120
codes = true
exclude_files = { ".rocks/**", "build/**" }
ignore = {
  "212/self",        -- unused `self` in methods
  "212/_.*",         -- unused arguments named _ or _name on purpose
  "213/_.*",         -- unused loop variables named _ or _name
}

files["spec/"] = {
  std = "+busted",
  -- specs often define helper tables and stubs they only partly use
  ignore = { "211/_.*" },
}
