-- The body of a method's process when its file has just been (re)loaded:
-- runs the file once, in the sandboxed environment the loader gave it,
-- hands the function to keep (which caches it for the next calls), and
-- calls it. Cached calls run the kept function directly.
local M = {}

local type, error, format = type, error, string.format

function M.load(keep, name, chunk, ...)
  local fn = chunk()
  if type(fn) ~= "function" then
    error(format("method %s: its file must return a function, not %s",
      name, type(fn)), 0)
  end
  keep(fn)
  return fn(...)
end

return M
