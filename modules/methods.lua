-- The body of a method's process when its file has just been (re)loaded:
-- runs the file once, in the sandboxed environment the loader gave it,
-- hands the function and the groups it allows to keep (which caches them
-- for the next calls, and raises when the caller may not call it), and
-- calls it. Cached calls run the kept function directly.
--
-- A method file returns a function, or { allow = {"group", ...},
-- run = function }: then only users of one of those groups may call it.
local M = {}

local type, error, format, rawget = type, error, string.format, rawget

function M.load(keep, name, chunk, ...)
  local fn, allow = chunk(), nil
  if type(fn) == "table" then
    fn, allow = rawget(fn, "run"), rawget(fn, "allow")
    if type(fn) ~= "function" then
      error(format("method %s: its file must return a function or "
        .. "{ allow = {...}, run = function }, not a table whose run is %s",
        name, type(fn)), 0)
    end
  elseif type(fn) ~= "function" then
    error(format("method %s: its file must return a function or "
      .. "{ allow = {...}, run = function }, not %s", name, type(fn)), 0)
  end
  keep(fn, allow)
  return fn(...)
end

return M
