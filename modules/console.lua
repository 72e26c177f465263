--[=[
console.lua: what a console line means, for both consoles (`herald serve`'s
prompt and `herald console`): compiling a line (an expression prints its
value), printing results readably, Tab completion, \help, and the helpers
sessions() and processes().

Each console has an environment of its own (new_env), so `x = 5` on one line
is there on the next, and never reaches another console or the server's
globals.
]=]
local require = ...
local pretty = require("pretty")
local collection = require("collection")
-- The printer reads tables raw: listings not built yet are built first.
local settle = require("snapshot").settle

local M = {}

local _G = _G
local setmetatable, type, pairs, next, tostring, select, rawget =
  setmetatable, type, pairs, next, tostring, select, rawget
-- Completion looks inside protected metatables (collections' methods).
local getmetatable = debug.getmetatable
local sort, concat = table.sort, table.concat
local find, sub, match = string.find, string.sub, string.match

-- Collections that print as aligned tables (sessions(), processes()).
local as_table = setmetatable({}, { __mode = "k" })

-- sessions(): every session, printed as an aligned table.
local function sessions()
  local snapshot = _G.get_process_activity(_G.SESSIONS_ONLY)
  local list = snapshot.sessions or collection.new({})
  as_table[list] = pretty.sessions_table
  return list
end

-- processes(): every running process, printed as an aligned table.
local function processes()
  local list = _G.get_process_activity(_G.PROCESSES_ONLY).processes
  as_table[list] = pretty.processes_table
  return list
end

function M.new_env()
  local env = setmetatable({}, { __index = _G })
  env.sessions = sessions
  env.processes = processes
  return env
end

-- A function for the console's input, or nil, message, incomplete.
function M.compile(env, source)
  return pretty.compile_line(source, "=console", env)
end

-- True for a message_status() result.
local function is_status(v)
  return type(v) == "table" and getmetatable(v) == nil and
    rawget(v, "queued") ~= nil and rawget(v, "acknowledged") ~= nil and
    type(rawget(v, "pending")) == "table"
end

local function format_settled(...)
  local n = select("#", ...)
  if n == 1 then
    local v = ...
    local as = as_table[v]
    if as then return as(v) end
    if is_status(v) then return pretty.message_status(v) end
  end
  if n == 0 then return "" end
  return pretty.format_values(...)
end

-- The text a line's results print as; "" when there are none.
function M.format_results(...)
  return format_settled(settle(...))
end

local NATIVES = {
  { "get_process_activity([options]) / (sessionID [, options])",
    "snapshot {sessions, processes} of collections" },
  { "send_message_to_remote_user(message [, sessionID])",
    "alert every remote user, or one; returns count, message id" },
  { "message_status(id)", "queued/delivered/acknowledged/pending of a message" },
  { "drop_remote_user(sessionID [, reason])",
    "end that session (its client gets drop, with the reason)" },
  { "reject_new_remote_connections(flag)", "refuse new hellos while true" },
  { "session_info(sessionID)", "one session object, or nil" },
  { "process_info(number)", "one process object, or nil" },
  { "current_session()", "the calling client's session (in a method)" },
  { "delay_process(seconds)", "suspend this process only; the server goes on" },
  { "schedule(spec, script_or_function)", "schedule a job; returns its ID" },
  { "unschedule(id) / run_job(id)", "remove a job / run it now" },
  { "get_schedule()", "the jobs: nextRun, lastRun, lastResult, running" },
  { "audit_log([queryString, ...])",
    "who sent, dropped, rejected, scheduled; newest first" },
  { "sessions()", "the sessions, printed as a table" },
  { "processes()", "the running processes, printed as a table" },
}

function M.help()
  local width, lines = 0, {}
  for _, n in pairs(NATIVES) do
    if #n[1] > width then width = #n[1] end
  end
  lines[1] = "herald console: Lua on the running server. An expression " ..
    "prints its value."
  for i, n in pairs(NATIVES) do
    lines[i + 1] = "  " .. n[1] .. string.rep(" ", width - #n[1] + 2) .. n[2]
  end
  lines[#lines + 1] = "Constants: PROCESSES_AND_SESSIONS, PROCESSES_ONLY, " ..
    "SESSIONS_ONLY. Collections: query, length, first, map, filter, orderBy."
  lines[#lines + 1] = "Keys: Tab completes, a fragment then Ctrl-R finds it in the history, " ..
    "Ctrl-C interrupts, Ctrl-D or \\q leaves."
  return concat(lines, "\n")
end

-- Completion reads tables raw and follows only __index tables: a name
-- path is never evaluated, so no metamethod (no code) runs while typing.
-- (A listing not built yet is built first: that runs only herald's C.)
local MAX_INDEX_CHAIN = 8

-- The table where v's fields are looked up next: v itself when it is a
-- table, else (and after it) its metatable's __index when that is a table
-- (a string's methods, an object's class); nil when there is none.
local function index_table(v)
  local mt = getmetatable(v)
  local idx = type(mt) == "table" and rawget(mt, "__index")
  return type(idx) == "table" and idx or nil
end

-- v[name] as far as it can be known without running code, or nil.
local function field(v, name)
  for _ = 1, MAX_INDEX_CHAIN do
    if type(v) == "table" then
      settle(v)
      local found = rawget(v, name)
      if found ~= nil then return found end
    end
    v = index_table(v)
    if v == nil then return nil end
  end
  return nil
end

-- The string names visible in v (its own keys and its __index tables),
-- read with next (pairs would run __pairs).
local function names_of(v, into)
  for _ = 1, MAX_INDEX_CHAIN do
    if type(v) == "table" then
      settle(v)
      for k in next, v do
        if type(k) == "string" then into[k] = true end
      end
    end
    v = index_table(v)
    if v == nil then return end
  end
end

local NAME = "^[%a_][%w_]*$"

--[=[ complete(env, text) -> list
Tab's completions. text is the word before the cursor as the line editor
cuts it (at spaces, operators and opening brackets, never at a closing
one, a quote, a dot or a colon); each completion is text followed by what
Tab may add, so taking one never deletes what was typed. Only a plain name
path completes: a global ("get_pro"), or a field or method of what a chain
of names reaches ("string.fo", "s:le", "one.userN"). After anything else
(`f().`, `t[1].`, `"s":`, a closing bracket) there is nothing to offer:
that would mean running the code before it. ]=]
function M.complete(env, text)
  local path = match(text, "[%w_%.:]*$")
  -- a..b: the name after a concatenation starts a path of its own.
  local after_concat = match(path, "^.*%.%.()")
  if after_concat then path = sub(path, after_concat) end
  local before = sub(text, 1, #text - #path)
  if before ~= "" and sub(before, -2) ~= ".." then
    return {}   -- a path right after `)`, `]`, `}`, a quote or a number
  end
  local head, partial = match(path, "^(.-)([%w_]*)$")
  if partial ~= "" and not match(partial, NAME) then return {} end
  local target = env
  if head ~= "" then
    local names, sep = sub(head, 1, -2), sub(head, -1)
    for name in (names .. "."):gmatch("(.-)%.") do
      if not match(name, NAME) then return {} end
      target = field(target, name)
      if target == nil then return {} end
    end
    if sep == ":" and index_table(target) == nil and
       type(target) ~= "table" then
      return {}
    end
  end
  local found = {}
  names_of(target, found)
  local out = {}
  for name in pairs(found) do
    if sub(name, 1, #partial) == partial and match(name, NAME) then
      out[#out + 1] = name
    end
  end
  sort(out)
  local prefix = before .. head
  for i = 1, #out do
    out[i] = prefix .. out[i]
  end
  return out
end

return M
