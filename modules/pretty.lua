--[=[
pretty.lua: the pretty-printer and line compiler of herald's Lua console.

Embedded into the binary and run once (luaL_loadbuffer + call); the chunk
returns the module table. It uses only standard globals, captured when the
chunk runs, so a console user who reassigns `string` or `debug` cannot break
the printer, and a sandbox without `debug`, `os` or `utf8` only loses detail.

  format(value [, opts])        one value as text (strings quoted)
  format_values(...)            every value formatted, separated by tabs
  message_status(t)             a message_status() table, in a fixed order
  sessions_table(coll [, now_ms])   aligned table of session objects
  processes_table(coll)         aligned table of process objects
  is_incomplete(source)         true if `source` only lacks its end
  compile_line(source [, chunkname [, env]])
                                function, or nil, message, incomplete

opts for format (all optional):
  depth      tables nested deeper than this print `{...}`            (4)
  max_items  entries shown per table before `... (N more)`           (50)
  max_bytes  output size before `... (output truncated)`             (8192)
  width      a table fits on one line up to this column              (72)
  key_order  list of keys the top-level table shows first, in order  (none)

Tables are read raw (next, rawget): displaying a value never runs its
metamethods, except __tostring, which is what the object asks to print as.
]=]

local M = {}

local type, next, rawget, select, tostring, tonumber, pcall, error, ipairs =
  type, next, rawget, select, tostring, tonumber, pcall, error, ipairs
-- The console looks inside everything, protected metatables included
-- (without the debug library, it looks where scripts do).
local getmetatable = debug and debug.getmetatable or getmetatable
local load = load
local math_type, huge = math.type, math.huge
local concat, insert = table.concat, table.insert
local byte, find, fmt, gsub, match, rep, sub =
  string.byte, string.find, string.format, string.gsub, string.match,
  string.rep, string.sub
local utf8_len = utf8 and utf8.len
local utf8_offset = utf8 and utf8.offset
local utf8_codes = utf8 and utf8.codes
local debug_getinfo = debug and debug.getinfo   -- nil in a sandbox
local os_time = os and os.time

local DEFAULTS = { depth = 4, max_items = 50, max_bytes = 8192, width = 72 }
local TRUNCATED = "\n... (output truncated)"
local ELLIPSIS = "\u{2026}"
local CELL_MAX = 32

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in " ..
          "local nil not or repeat return then true until while"):gmatch("%a+")
do
  KEYWORDS[w] = true
end

-- Escapes ------------------------------------------------------------------

local NAMED = {
  ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t", ["\v"] = "\\v",
  ['"'] = '\\"', ["\\"] = "\\\\",
}

local function escape_byte(c)
  return NAMED[c] or fmt("\\x%02x", byte(c))
end

-- Code points a terminal may act on: C1 controls, line/paragraph separators
-- and bidirectional overrides. Session fields come from remote clients, so
-- they must not be able to move the admin's cursor or reorder the screen.
local function unsafe_code_point(cp)
  return (cp >= 0x80 and cp <= 0x9f) or (cp >= 0x2028 and cp <= 0x202e) or
         (cp >= 0x2066 and cp <= 0x2069)
end

-- A maximal run of bytes >= 0x80: kept when it is valid UTF-8 (names in any
-- script stay readable), escaped byte by byte when it is not.
local function escape_run(run)
  if utf8_len == nil or utf8_len(run) == nil then
    return (gsub(run, ".", escape_byte))
  end
  if not (find(run, "\194[\128-\159]") or find(run, "\226\128[\168-\174]") or
          find(run, "\226\129[\166-\169]")) then
    return run
  end
  local out, n, prev = {}, 0, 1
  for pos, cp in utf8_codes(run) do
    if unsafe_code_point(cp) then
      n = n + 1
      out[n] = sub(run, prev, pos - 1) .. fmt("\\u{%x}", cp)
      prev = pos + (cp < 0x800 and 2 or 3)
    end
  end
  out[n + 1] = sub(run, prev)
  return concat(out)
end

-- The escaped text of s. Quoted: a Lua string literal's body (quotes and
-- backslashes escaped too); otherwise only what a terminal would act on.
local function escape(s, quoted)
  s = gsub(s, quoted and '[\0-\31\127"\\]' or "[\0-\31\127]",
           escape_byte)
  return (gsub(s, "[\128-\255]+", escape_run))
end

-- Display width in characters (the text is valid UTF-8 once escaped).
local function width(s)
  return (utf8_len and utf8_len(s)) or #s
end

-- s as a quoted literal. Only the first `limit` bytes are looked at: the
-- caller passes a limit beyond which the text is discarded or truncated
-- anyway, so a huge string costs no more than the output it can produce.
local function quote(s, limit)
  if limit and #s > limit then
    -- Cut after the character that crosses the limit, so the kept text is
    -- still valid UTF-8 (and not escaped byte by byte) yet over the limit.
    local e = limit > 0 and limit or 0
    while e < #s and e < limit + 3 and find(s, "^[\128-\191]", e + 1) do
      e = e + 1
    end
    s = sub(s, 1, e)
  end
  return '"' .. escape(s, true) .. '"'
end

-- Scalars ------------------------------------------------------------------

local function function_text(f)
  if debug_getinfo then
    local ok, info = pcall(debug_getinfo, f, "S")
    if ok and type(info) == "table" then
      if info.what == "C" then
        return "function: builtin"
      end
      local where = info.short_src or "?"
      if (info.linedefined or 0) > 0 then
        where = where .. ":" .. info.linedefined
      end
      return "function: " .. where
    end
  end
  return "function"
end

local function number_text(v)
  if math_type(v) == "integer" then
    return fmt("%d", v)
  end
  if v ~= v then
    return "nan"
  elseif v == huge then
    return "inf"
  elseif v == -huge then
    return "-inf"
  end
  return tostring(v)
end

-- Any value but a table, as text; strings are quoted, looking at no more
-- than `limit` bytes of them (see quote).
local function scalar(v, limit)
  local tv = type(v)
  if tv == "string" then
    return quote(v, limit)
  elseif tv == "number" then
    return number_text(v)
  elseif tv == "function" then
    return function_text(v)
  elseif tv == "userdata" then
    local mt = getmetatable(v)
    local name = type(mt) == "table" and rawget(mt, "__name")
    if type(name) == "string" then
      return "userdata: " .. escape(name, false)
    end
    return "userdata"
  elseif tv == "thread" then
    return "thread"
  end
  return tostring(v)   -- nil, boolean
end

-- Tables -------------------------------------------------------------------

-- "collection", "tostring" or "plain". A collection keeps its own view even
-- if it has __tostring: the console is where one looks inside it.
local function table_kind(t)
  local mt = getmetatable(t)
  if type(mt) ~= "table" then
    return "plain"
  end
  if rawget(mt, "__name") == "collection" then
    return "collection"
  end
  if rawget(mt, "__tostring") ~= nil then
    return "tostring"
  end
  return "plain"
end

local function call_tostring(t)
  local ok, s = pcall(tostring, t)
  if ok and type(s) == "string" then
    return s
  end
  if type(s) ~= "string" then
    s = type(s)
  end
  return "<__tostring error: " .. s .. ">"
end

-- Length of the array part: keys 1..n all present (raw).
local function border(t)
  local n = 0
  while rawget(t, n + 1) ~= nil do
    n = n + 1
  end
  return n
end

local function safe_text(v)
  local ok, s = pcall(tostring, v)
  return ok and type(s) == "string" and s or ""
end

-- Key order: pinned keys (opts.key_order) first, then numbers, then strings
-- (byte order), then other types grouped by type name and tostring.
local function key_rank(k, pinned)
  local p = pinned and pinned[k]
  if p then
    return 0, p
  end
  local tk = type(k)
  if tk == "number" then
    return 1
  elseif tk == "string" then
    return 2
  end
  return 3
end

local function key_less(a, b, pinned)
  local ra, pa = key_rank(a, pinned)
  local rb, pb = key_rank(b, pinned)
  if ra ~= rb then
    return ra < rb
  elseif ra == 0 then
    return pa < pb
  elseif ra == 3 then
    local ta, tb = type(a), type(b)
    if ta ~= tb then
      return ta < tb
    end
    return safe_text(a) < safe_text(b)
  end
  return a < b
end

-- What a table shows, computed once per table and call: the array length,
-- how many array entries are shown, the first `room` other keys in order
-- (kept sorted while scanning, so a huge table is never sorted whole), and
-- how many entries are left out.
local function entries(st, t, root)
  local e = st.cache[t]
  if e then
    return e
  end
  local n = border(t)
  local shown = n < st.max_items and n or st.max_items
  local room = st.max_items - shown
  local pinned = root and st.pinned or nil
  local keys, nkeys, nhash = {}, 0, 0
  for k in next, t do
    if not (math_type(k) == "integer" and k >= 1 and k <= n) then
      nhash = nhash + 1
      if room > 0 and (nkeys < room or key_less(k, keys[nkeys], pinned)) then
        if nkeys == room then
          keys[nkeys] = nil
          nkeys = nkeys - 1
        end
        local lo, hi = 1, nkeys + 1
        while lo < hi do
          local mid = (lo + hi) // 2
          if key_less(k, keys[mid], pinned) then
            hi = mid
          else
            lo = mid + 1
          end
        end
        insert(keys, lo, k)
        nkeys = nkeys + 1
      end
    end
  end
  e = { n = n, shown = shown, keys = keys,
        more = (n - shown) + (nhash - nkeys) }
  st.cache[t] = e
  return e
end

local oneline

local function key_text(st, k, depth)
  if type(k) == "string" then
    if match(k, "^[A-Za-z_][A-Za-z0-9_]*$") and not KEYWORDS[k] then
      return k .. " = "
    end
    return "[" .. quote(k, st.max_bytes + 1) .. "] = "
  elseif type(k) == "table" then
    return "[" .. (oneline(st, k, depth, st.width) or "{...}") .. "] = "
  end
  return "[" .. scalar(k) .. "] = "
end

local function fits(s, limit)
  if s and not find(s, "\n", 1, true) and width(s) <= limit then
    return s
  end
  return nil
end

-- v on one line in at most `limit` columns, or nil when it does not fit (or
-- must not: a table with entries left out shows them on their own line).
-- Work is bounded by `limit`: it gives up at the first entry that overflows.
function oneline(st, v, depth, limit)
  if type(v) ~= "table" then
    local cap = 4 * (limit + 1)
    return fits(scalar(v, cap > 0 and cap or 0), limit)
  end
  local kind = table_kind(v)
  if kind == "tostring" then
    return fits(call_tostring(v), limit)
  elseif st.path[v] then
    return fits("<cycle>", limit)
  end
  local prefix = ""
  if kind == "collection" then
    prefix = fmt("collection(%d) ", border(v))
  end
  if depth > st.depth then
    return fits(prefix .. (next(v) == nil and "{}" or "{...}"), limit)
  end
  local e = entries(st, v, depth == 1)
  if e.more > 0 then
    return nil
  elseif e.shown == 0 and #e.keys == 0 then
    return fits(prefix .. "{}", limit)
  end
  st.path[v] = true
  local parts, n = { prefix .. "{ " }, 1
  local used = width(parts[1]) + 2    -- and the closing " }"
  local ok = true
  for i = 1, e.shown do
    local sep = i > 1 and ", " or ""
    local s = oneline(st, rawget(v, i), depth + 1, limit - used - #sep)
    if not s then
      ok = false
      break
    end
    n = n + 1
    parts[n] = sep .. s
    used = used + width(parts[n])
  end
  if ok then
    for i, k in ipairs(e.keys) do
      local kt = (e.shown + i > 1 and ", " or "") .. key_text(st, k, depth + 1)
      local s = oneline(st, rawget(v, k), depth + 1,
                        limit - used - width(kt))
      if not s then
        ok = false
        break
      end
      n = n + 1
      parts[n] = kt .. s
      used = used + width(parts[n])
    end
  end
  st.path[v] = nil
  if not ok then
    return nil
  end
  parts[n + 1] = " }"
  return fits(concat(parts), limit)
end

local function emit(st, s)
  if st.full then
    return
  end
  st.n = st.n + 1
  st.buf[st.n] = s
  st.len = st.len + #s
  if st.len > st.max_bytes then
    st.full = true
  end
end

-- Appends v to the output. Its first line starts at column `col`, its later
-- lines are indented by `indent`, and `trail` columns follow it on its last
-- line (a comma). Stops as soon as the output is over max_bytes.
local function emit_value(st, v, depth, indent, col, trail)
  if st.full then
    return
  end
  local s = oneline(st, v, depth, st.width - col - trail)
  if s then
    return emit(st, s)
  elseif type(v) ~= "table" then
    return emit(st, scalar(v, st.max_bytes + 1))
  end
  local kind = table_kind(v)
  if kind == "tostring" then
    return emit(st, call_tostring(v))
  elseif st.path[v] then
    return emit(st, "<cycle>")
  end
  local prefix = ""
  if kind == "collection" then
    prefix = fmt("collection(%d) ", border(v))
  end
  if depth > st.depth then
    return emit(st, prefix .. (next(v) == nil and "{}" or "{...}"))
  end
  local e = entries(st, v, depth == 1)
  if e.shown == 0 and #e.keys == 0 and e.more == 0 then
    return emit(st, prefix .. "{}")
  end
  st.path[v] = true
  emit(st, prefix .. "{\n")
  local pad = rep(" ", indent + 2)
  local total = e.shown + #e.keys + (e.more > 0 and 1 or 0)
  local done = 0
  for i = 1, e.shown do
    if st.full then
      break
    end
    done = done + 1
    emit(st, pad)
    emit_value(st, rawget(v, i), depth + 1, indent + 2, indent + 2,
               done < total and 1 or 0)
    emit(st, done < total and ",\n" or "\n")
  end
  for _, k in ipairs(e.keys) do
    if st.full then
      break
    end
    done = done + 1
    local kt = key_text(st, k, depth + 1)
    emit(st, pad .. kt)
    emit_value(st, rawget(v, k), depth + 1, indent + 2,
               indent + 2 + width(kt), done < total and 1 or 0)
    emit(st, done < total and ",\n" or "\n")
  end
  if e.more > 0 then
    emit(st, fmt("%s... (%d more)\n", pad, e.more))
  end
  emit(st, rep(" ", indent) .. "}")
  st.path[v] = nil
end

local function option(opts, name)
  local v = opts[name]
  if v == nil then
    return DEFAULTS[name]
  elseif math_type(v) ~= "integer" or v < 0 then
    error(fmt("bad option '%s' to 'format' (non-negative integer expected, " ..
              "got %s)", name, tostring(v)), 3)
  end
  return v
end

-- The output, cut at max_bytes (on a character boundary) when it is longer.
local function finish(st)
  local out = concat(st.buf, "", 1, st.n)
  if #out <= st.max_bytes then
    return out
  end
  out = sub(out, 1, st.max_bytes)
  for _ = 1, 3 do
    if utf8_len == nil or utf8_len(out) then
      break
    end
    out = sub(out, 1, -2)
  end
  return out .. TRUNCATED
end

local function format_value(value, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(fmt("bad argument #2 to 'format' (table expected, got %s)",
              type(opts)), 3)
  end
  opts = opts or {}
  local st = {
    depth = option(opts, "depth"), max_items = option(opts, "max_items"),
    max_bytes = option(opts, "max_bytes"), width = option(opts, "width"),
    buf = {}, n = 0, len = 0, full = false, path = {}, cache = {},
  }
  if type(opts.key_order) == "table" then
    st.pinned = {}
    for i, k in ipairs(opts.key_order) do
      st.pinned[k] = i
    end
  end
  emit_value(st, value, 1, 0, 0, 0)
  return finish(st)
end

--[=[ format(value [, opts]) -> string
The value as console text: strings quoted with readable escapes, tables as
`{ 1, 2, key = value }` on one line up to opts.width columns, else one entry
per line indented by two spaces; bounded by opts (see the top of the file).
Raises only for malformed opts. ]=]
function M.format(value, opts)
  return format_value(value, opts)
end

--[=[ format_values(...) -> string
What the console prints for the results of one line: each value formatted
with the defaults, separated by tabs (as lua.c's print); "" for no values. ]=]
function M.format_values(...)
  local n = select("#", ...)
  local parts = {}
  for i = 1, n do
    parts[i] = format_value((select(i, ...)))
  end
  return concat(parts, "\t")
end

--[=[ message_status(t) -> string
A message_status() result with its counts in the order a message moves
through them, then the sessions still pending; "nil" once forgotten. ]=]
function M.message_status(t)
  return format_value(t, {
    key_order = { "queued", "delivered", "acknowledged", "pending" },
  })
end

-- Text tables --------------------------------------------------------------

-- A cell's text: strings escaped for the terminal, other values formatted
-- on one line.
local function cell_text(v)
  if v == nil then
    return ""
  elseif type(v) == "string" then
    return escape(v, false)
  end
  return (gsub(format_value(v, { depth = 2, max_bytes = 256 }), "\n%s*", " "))
end

local function cut(s, max)
  if width(s) <= max then
    return s
  end
  if utf8_offset then
    return sub(s, 1, utf8_offset(s, max) - 1) .. ELLIPSIS
  end
  return sub(s, 1, max - 1) .. ELLIPSIS
end

-- The rows (lists of cell strings) under a header of `columns` ({title,
-- right}), columns as wide as their widest cell, two spaces apart, no
-- trailing spaces.
local function grid(columns, rows)
  local widths = {}
  for c, col in ipairs(columns) do
    widths[c] = width(col[1])
  end
  for _, row in ipairs(rows) do
    for c = 1, #columns do
      local w = width(row[c])
      if w > widths[c] then
        widths[c] = w
      end
    end
  end
  local lines = {}
  local function add(cells)
    local out = {}
    for c, col in ipairs(columns) do
      local gap = rep(" ", widths[c] - width(cells[c]))
      out[c] = col.right and gap .. cells[c] or cells[c] .. gap
    end
    lines[#lines + 1] = (gsub(concat(out, "  "), " +$", ""))
  end
  local header = {}
  for c, col in ipairs(columns) do
    header[c] = col[1]
  end
  add(header)
  for _, row in ipairs(rows) do
    add(row)
  end
  return concat(lines, "\n")
end

-- Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
-- days_from_civil); independent of the local time zone, unlike os.time.
local function days_from_civil(y, m, d)
  if m <= 2 then
    y = y - 1
  end
  local era = y // 400
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- Milliseconds since the epoch of an ISO 8601 date-time with `Z` or a
-- `+hh:mm` offset, or nil when it is not one.
local function iso_ms(s)
  if type(s) ~= "string" then
    return nil
  end
  local y, mo, d, h, mi, sec, frac, zone = match(s,
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not y then
    return nil
  end
  y, mo, d, h, mi, sec = y + 0, mo + 0, d + 0, h + 0, mi + 0, sec + 0
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or
     sec > 60 or frac == "." then
    return nil
  end
  local offset = 0
  if zone ~= "Z" and zone ~= "z" then
    local sign, oh, om = match(zone, "^([+-])(%d%d):?(%d%d)$")
    if not sign then
      return nil
    end
    offset = (oh * 60 + om) * 60 * (sign == "-" and -1 or 1)
  end
  local ms = 0
  if frac ~= "" then
    ms = (sub(frac, 2, 4) .. "00"):sub(1, 3) + 0
  end
  local secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec -
               offset
  return secs * 1000 + ms
end

-- "42s", "5m12s", "3h04m", "2d03h"; "?" when it cannot be computed.
local function age_text(created, now_ms)
  if created == nil then
    return ""
  end
  local t = iso_ms(created)
  if t == nil or type(now_ms) ~= "number" then
    return "?"
  end
  local s = (now_ms - t) // 1000
  if s < 0 then
    s = 0
  end
  s = math_type(s) == "integer" and s or s - s % 1
  if s < 60 then
    return fmt("%ds", s)
  elseif s < 3600 then
    return fmt("%dm%02ds", s // 60, s % 60)
  elseif s < 86400 then
    return fmt("%dh%02dm", s // 3600, s % 3600 // 60)
  end
  return fmt("%dd%02dh", s // 86400, s % 86400 // 3600)
end

local function count_line(n, one, many)
  return fmt("%d %s", n, n == 1 and one or many)
end

local function field(obj, name)
  if type(obj) == "table" then
    return obj[name]
  end
  return nil
end

-- Raises Lua's own "bad argument #1" error, at the caller's caller, when
-- value is not of type want.
local function check_arg(value, want, fname)
  if type(value) ~= want then
    error(fmt("bad argument #1 to '%s' (%s expected, got %s)", fname, want,
              type(value)), 3)
  end
end

--[=[ sessions_table(collection [, now_ms]) -> string
Session objects (get_process_activity().sessions or any array of them) as
an aligned table: ID (in full), userName, machineName, IPAddress, state and
age (from creationDateTime, relative to now_ms, milliseconds since the epoch;
default os.time()), other cells cut at 32 characters; last line "N sessions".
Raises when collection is not a table. ]=]
function M.sessions_table(coll, now_ms)
  check_arg(coll, "table", "sessions_table")
  if now_ms == nil and os_time then
    now_ms = os_time() * 1000
  elseif now_ms ~= nil and type(now_ms) ~= "number" then
    error(fmt("bad argument #2 to 'sessions_table' (number expected, got %s)",
              type(now_ms)), 2)
  end
  local rows, n = {}, border(coll)
  for i = 1, n do
    local s = rawget(coll, i)
    rows[i] = {
      cell_text(field(s, "ID")),
      cut(cell_text(field(s, "userName")), CELL_MAX),
      cut(cell_text(field(s, "machineName")), CELL_MAX),
      cut(cell_text(field(s, "IPAddress")), CELL_MAX),
      cut(cell_text(field(s, "state")), CELL_MAX),
      age_text(field(s, "creationDateTime"), now_ms),
    }
  end
  local columns = { { "ID" }, { "userName" }, { "machineName" },
                    { "IPAddress" }, { "state" }, { "age" } }
  return grid(columns, rows) .. "\n" .. count_line(n, "session", "sessions")
end

-- 4D's process states and herald's process types (lua-api.md), by code.
local PROCESS_STATES = {
  [0] = "executing", [1] = "delayed", [2] = "waiting for user event",
  [3] = "waiting for input/output", [4] = "waiting for internal flag",
  [5] = "paused", [6] = "hidden modal dialog", [-1] = "aborted",
  [-100] = "does not exist",
}
local PROCESS_TYPES = { [1] = "method", [3] = "console/script", [5] = "job" }

-- A code's name from names, or the value itself when it has none (a code
-- this table does not know still shows).
local function code_text(names, v)
  local name = math_type(v) == "integer" and names[v]
  return name or cut(cell_text(v), CELL_MAX)
end

--[=[ processes_table(collection) -> string
Process objects as an aligned table: number, name, type, state, the first
8 characters of sessionID and cpuTime (seconds, 3 decimals). type and state
show as words ("method", "console/script", "job"; 4D's "executing",
"delayed", "waiting for input/output", "paused"...), a code without a name
as stored. Last line "N processes". Raises when collection is not a table. ]=]
function M.processes_table(coll)
  check_arg(coll, "table", "processes_table")
  local rows, n = {}, border(coll)
  for i = 1, n do
    local p = rawget(coll, i)
    local cpu = field(p, "cpuTime")
    rows[i] = {
      cut(cell_text(field(p, "number")), CELL_MAX),
      cut(cell_text(field(p, "name")), CELL_MAX),
      code_text(PROCESS_TYPES, field(p, "type")),
      code_text(PROCESS_STATES, field(p, "state")),
      sub(cut(cell_text(field(p, "sessionID")), CELL_MAX), 1, 8),
      type(cpu) == "number" and fmt("%.3f", cpu) or
        cut(cell_text(cpu), CELL_MAX),
    }
  end
  local columns = { { "number", right = true }, { "name" }, { "type" },
                    { "state" }, { "sessionID" }, { "cpuTime", right = true } }
  return grid(columns, rows) .. "\n" .. count_line(n, "process", "processes")
end

-- Line compiler -------------------------------------------------------------

local EOFMARK = "<eof>"

local function at_eof(msg)
  return type(msg) == "string" and sub(msg, -#EOFMARK) == EOFMARK
end

-- The line a compile error is on ("chunk:3: ..."), 0 when it shows none.
local function error_line(msg)
  return tonumber(match(msg, ":(%d+): ")) or 0
end

--[=[ compile_line(source [, chunkname [, env]]) -> function
                                           | nil, message, incomplete
Compiles a console line as lua.c does: first as an expression
("return " .. source) so `1 + 41` prints its value, then as statements.
Text only (binary chunks are refused). env, when given, is the chunk's
_ENV. incomplete tells whether more input could complete it: either form
failed only at the end of the text (<eof>), so an unfinished statement
(`for i = 1, 3 do`) waits for its end as in lua.c, and so does an
unfinished expression (`1 +`, `f(1,`, `{`, `function(`), which lua.c, by
trying the statement form alone, would report. On failure the message is
the one of the form that got further (a later line), the statement form's
on a tie, as lua.c. chunkname defaults to "=console". ]=]
function M.compile_line(source, chunkname, env)
  check_arg(source, "string", "compile_line")
  chunkname = chunkname or "=console"
  -- load(..., nil) would compile with a nil _ENV: leave the argument out.
  local function compile(text)
    if env == nil then
      return load(text, chunkname, "t")
    end
    return load(text, chunkname, "t", env)
  end
  local f, expr_err = compile("return " .. source)
  if f then
    return f
  end
  local g, err = compile(source)
  if g then
    return g
  end
  if at_eof(err) then
    return nil, err, true
  elseif at_eof(expr_err) then
    return nil, expr_err, true
  elseif type(expr_err) == "string" and
         error_line(expr_err) > error_line(err) then
    return nil, expr_err, false
  end
  return nil, err, false
end

--[=[ is_incomplete(source) -> boolean
True when `source` fails to compile only because it ended early, as a
statement or as an expression (compile_line's incomplete), so the console
should read another line; false when it compiles or has a real syntax
error. ]=]
function M.is_incomplete(source)
  check_arg(source, "string", "is_incomplete")
  local _, _, incomplete = M.compile_line(source, "=stdin")
  return incomplete == true
end

return M
