-- The method runner: keeps each method file's function, and calls it.
-- A method's file runs once per version, in a sandboxed environment of
-- its own, so the globals one method sets never reach another.
local M = {}

local cache = {} -- name -> { stamp = string, fn = function }

-- True when the cached version of name was loaded from the file version
-- stamp (its modification time and size).
function M.current(name, stamp)
  local entry = cache[name]
  return entry ~= nil and entry.stamp == stamp
end

-- Forgets name, so that a broken file is never served from the cache.
function M.forget(name)
  cache[name] = nil
end

-- The body of a method's process. chunk is the freshly loaded file, or nil
-- when the cached version is current.
function M.call(name, stamp, chunk, ...)
  local entry = cache[name]
  if chunk ~= nil then
    local fn = chunk()
    if type(fn) ~= "function" then
      error(string.format("method %s: its file must return a function, " ..
        "not %s", name, type(fn)), 0)
    end
    entry = { stamp = stamp, fn = fn }
    cache[name] = entry
  end
  return entry.fn(...)
end

return M
