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

local M = {}

local _G = _G
local setmetatable, type, pairs, tostring, select, rawget =
  setmetatable, type, pairs, tostring, select, rawget
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

-- The text a line's results print as; "" when there are none.
function M.format_results(...)
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

-- Names visible through t (its own keys and its __index chain).
local function names_of(t, into, depth)
  if type(t) ~= "table" or depth > 4 then return end
  for k in pairs(t) do
    if type(k) == "string" then into[k] = true end
  end
  local mt = getmetatable(t)
  if type(mt) == "table" and type(rawget(mt, "__index")) == "table" then
    names_of(rawget(mt, "__index"), into, depth + 1)
  end
end

-- Completions of the word at the end of text: a global name, or the field
-- of a table reached through dots or colons ("string.fo", "s:le").
function M.complete(env, text)
  local path, sep, partial = match(text, "([%w_%.:]-)([%.:]?)([%w_]*)$")
  local target = env
  local prefix = ""
  if sep ~= "" then
    for part in path:gmatch("[^%.:]+") do
      if type(target) ~= "table" then return {} end
      target = target[part]
    end
    if type(target) == "string" then target = string end
    prefix = path .. sep
  end
  local found = {}
  names_of(target, found, 0)
  local out = {}
  for name in pairs(found) do
    if sub(name, 1, #partial) == partial and match(name, "^[%a_][%w_]*$") then
      out[#out + 1] = prefix .. name
    end
  end
  sort(out)
  return out
end

return M
