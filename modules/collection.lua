-- collection.lua: herald's collections and 4D's query language.
--
-- A collection is a plain Lua array with a shared metatable, so `#`, ipairs
-- and the table library keep working on it; the methods live in the
-- metatable's __index. The binary embeds this chunk and runs it with
-- luaL_loadbuffer, so it uses no `require`, touches only standard-library
-- globals, and returns its module table:
--
--   M.new([t])  makes t (default: a new table) a collection in place
--   M.is(v)     true when v is a collection
--
-- Methods: query(queryString, ...), length(), first(), map(fn),
-- filter(fn), orderBy("path [asc|desc], ..." | path, "asc"|"desc" |
-- {{propertyPath =, descending =}, ...}); query, map, filter and
-- orderBy return new collections holding the same elements. query follows
-- 4D's syntax (docs/lua-api.md); a malformed query raises
-- `query: <what> at position <byte> in "<query>"`, blaming the caller.
--
-- Nothing here calls Lua back from a C function (no table.sort with a
-- comparator, no gsub with a function), so the scheduler's count hook may
-- yield a long query or sort at any instruction.

local M = {}
local methods = {}
-- Protected: no script may reach the methods every collection shares. This
-- module (trusted, loaded before the state is sealed) looks with the debug
-- library's getmetatable.
local mt = { __index = methods, __name = "collection", __metatable = false }
local getmetatable = debug.getmetatable

local format, lower, find, match, sub =
  string.format, string.lower, string.find, string.match, string.sub

-- M.waiting_mt: the metatable of a sessions snapshot that is not built
-- yet (snapshot.c sets it); its first look makes it an ordinary collection.
local function is(v)
  if type(v) ~= "table" then return false end
  local m = getmetatable(v)
  return rawequal(m, mt) or (m ~= nil and rawequal(m, M.waiting_mt))
end

local function wrap(t)
  if getmetatable(t) == mt then return t end
  return setmetatable(t, mt)
end

-- Argument errors read like luaL_argerror's, so herald's Lua and C
-- functions fail alike. Level 3 blames whoever called the method.
local function bad_self(name, v)
  error(format("calling '%s' on bad self (collection expected, got %s)",
    name, type(v)), 3)
end

local function bad_arg(n, name, why)
  error(format("bad argument #%d to '%s' (%s)", n, name, why), 3)
end

local function callable(v)
  if type(v) == "function" then return true end
  local m = getmetatable(v)
  return type(m) == "table" and rawget(m, "__call") ~= nil
end

-- "a.b.c" -> {"a", "b", "c"}, or nil when a segment is empty.
local function split_path(s)
  local segs = {}
  for seg in (s .. "."):gmatch("(.-)%.") do
    if seg == "" then return nil end
    segs[#segs + 1] = seg
  end
  return segs
end

-- A function reading the path from an element. Only tables are descended
-- into: indexing a string would find string methods, not attributes.
local function getter(segs)
  local n = #segs
  if n == 1 then
    local k = segs[1]
    return function(e)
      if type(e) == "table" then return e[k] end
    end
  end
  return function(v)
    for i = 1, n do
      if type(v) ~= "table" then return nil end
      v = v[segs[i]]
    end
    return v
  end
end

-- A matcher for a lowered pattern holding `@` wildcards, for lowered
-- subjects. Fixed prefix and suffix, then the middle parts found leftmost
-- in order with plain find: linear, unlike a Lua pattern of `.-`s, which
-- backtracks.
local function wildcard(p)
  local parts = {}
  local minlen = 0
  for part in (p .. "@"):gmatch("(.-)@") do
    parts[#parts + 1] = part
    minlen = minlen + #part
  end
  local n = #parts
  local first, last = parts[1], parts[n]
  return function(s)
    if #s < minlen or sub(s, 1, #first) ~= first then return false end
    if #last > 0 and sub(s, -#last) ~= last then return false end
    local pos, limit = #first + 1, #s - #last
    for i = 2, n - 1 do
      local part = parts[i]
      if #part > 0 then
        local _, e = find(s, part, pos, true)
        if not e or e > limit then return false end
        pos = e + 1
      end
    end
    return true
  end
end

-- 4D's `=`: strings case-insensitively with `@` wildcards, anything else
-- by plain equality (so a string never equals a number).
local function equals(v)
  if type(v) ~= "string" then
    return function(x) return x == v end
  end
  local lv = lower(v)
  if find(lv, "@", 1, true) then
    local m = wildcard(lv)
    return function(x) return type(x) == "string" and m(lower(x)) end
  end
  local n = #lv
  return function(x)
    return type(x) == "string" and #x == n and lower(x) == lv
  end
end

-- `<` and friends: numbers with numbers, strings with strings
-- (case-insensitively); any other pairing is false, never an error.
local function ordering(test)
  return function(v)
    if type(v) == "number" then
      return function(x) return type(x) == "number" and test(x, v) end
    elseif type(v) == "string" then
      local lv = lower(v)
      return function(x)
        return type(x) == "string" and test(lower(x), lv)
      end
    end
    return function() return false end
  end
end

-- Predicate builders by comparator: value -> function(attribute) -> bool.
local PREDICATES = {
  ["="] = equals,
  ["!="] = function(v)
    local p = equals(v)
    return function(x) return not p(x) end
  end,
  ["==="] = function(v) return function(x) return x == v end end,
  ["!=="] = function(v) return function(x) return x ~= v end end,
  ["<"] = ordering(function(a, b) return a < b end),
  ["<="] = ordering(function(a, b) return a <= b end),
  [">"] = ordering(function(a, b) return a > b end),
  [">="] = ordering(function(a, b) return a >= b end),
}

-- IN: `=` against any of the n values of list. Plain values and strings
-- without wildcards go into sets, so a long list costs one lookup.
local function member(list, n)
  local exact, lowered, patterns, has_nil = {}, {}, {}, false
  for i = 1, n do
    local v = list[i]
    if type(v) == "string" then
      local lv = lower(v)
      if find(lv, "@", 1, true) then
        patterns[#patterns + 1] = wildcard(lv)
      else
        lowered[lv] = true
      end
    elseif v == nil then
      has_nil = true
    elseif v == v then -- NaN equals nothing and cannot be a key
      exact[v] = true
    end
  end
  return function(x)
    if x == nil then return has_nil end
    if type(x) ~= "string" then return exact[x] == true end
    local lx = lower(x)
    if lowered[lx] then return true end
    for i = 1, #patterns do
      if patterns[i](lx) then return true end
    end
    return false
  end
end

local KEYWORDS = { ["and"] = "and", ["or"] = "or", ["not"] = "not",
  ["in"] = "in" }
local IDENT = "^[A-Za-z_\128-\255][A-Za-z0-9_\128-\255]*"

-- The lexers below read one token starting at byte s of q and return its
-- kind, value and last byte, or "error", a message and a position.

local function lex_string(q, s, quote)
  local buf, i = {}, s + 1
  while true do
    local j = find(q, "[\\" .. quote .. "]", i)
    if not j then return "error", "unterminated string", s end
    buf[#buf + 1] = sub(q, i, j - 1)
    if sub(q, j, j) == quote then
      return "value", table.concat(buf), j
    end
    -- Only the quote and the backslash are escapes; any other backslash
    -- stays, so "C:\dir" means what it says.
    local nx = sub(q, j + 1, j + 1)
    if nx == quote or nx == "\\" then
      buf[#buf + 1] = nx
      i = j + 2
    else
      buf[#buf + 1] = "\\"
      i = j + 1
    end
  end
end

local function lex_number(q, s)
  local text = match(q, "^%-?%d*%.?%d*", s)
  if match(text, "%d") then
    text = text .. (match(q, "^[eE][%+%-]?%d+", s + #text) or "")
  end
  local v = tonumber(text)
  if not v or find(q, "^[A-Za-z0-9_.\128-\255]", s + #text) then
    return "error", "malformed number", s
  end
  return "value", v, s + #text - 1
end

-- A keyword, true/false/null, or an attribute path (value: its segments).
local function lex_word(q, s)
  local _, e = find(q, IDENT, s)
  local segs = { sub(q, s, e) }
  while sub(q, e + 1, e + 1) == "." do
    local ns, ne = find(q, IDENT, e + 2)
    if not ns then
      return "error", "expected an attribute name after '.'", e + 2
    end
    segs[#segs + 1] = sub(q, ns, ne)
    e = ne
  end
  if #segs == 1 then
    local w = lower(segs[1])
    if KEYWORDS[w] then return KEYWORDS[w], nil, e end
    if w == "true" or w == "false" then return "value", w == "true", e end
    if w == "null" then return "value", nil, e end
  end
  return "path", segs, e
end

-- Splits q into tokens {kind, value, pos [, n]}. The last one is "eof" or,
-- at the first lexical error, "error" with the message as its value; the
-- parser reports it only on reaching it, so an error always names the
-- leftmost problem. Placeholders take their value from args here.
local function tokenize(q, args)
  local toks, pos = {}, 1
  while true do
    local s = find(q, "[^ \t\r\n\f\v]", pos)
    if not s then
      toks[#toks + 1] = { kind = "eof", pos = #q + 1 }
      return toks
    end
    local c, two, three = sub(q, s, s), sub(q, s, s + 1), sub(q, s, s + 2)
    local kind, value, e, n
    if c == "(" or c == ")" or c == "[" or c == "]" or c == "," then
      kind, e = c, s
    elseif three == "===" or three == "!==" then
      kind, value, e = "cmp", three, s + 2
    elseif two == "==" then
      kind, value, e = "cmp", "=", s + 1
    elseif two == "!=" or two == "<=" or two == ">=" then
      kind, value, e = "cmp", two, s + 1
    elseif c == "=" or c == "<" or c == ">" then
      kind, value, e = "cmp", c, s
    elseif c == "#" then
      kind, value, e = "cmp", "!=", s
    elseif c == "!" then
      kind, e = "not", s
    elseif c == "&" or c == "|" then
      kind = c == "&" and "and" or "or"
      e = two == c .. c and s + 1 or s
    elseif c == "'" or c == '"' then
      kind, value, e = lex_string(q, s, c)
    elseif c == ":" then
      local digits = match(q, "^%d+", s + 1)
      n = tonumber(digits)
      if not n then
        kind, value, e = "error", "expected a placeholder number", s + 1
      elseif n < 1 or n > args.n then
        kind, value, e = "error", format(
          "no value for placeholder :%s (%d given)", digits, args.n), s
      else
        kind, value, e = "placeholder", args[n], s + #digits
      end
    elseif find(c, "[%d%-%.]") then
      kind, value, e = lex_number(q, s)
    elseif find(q, IDENT, s) then
      kind, value, e = lex_word(q, s)
    else
      kind, value, e = "error", format("unexpected character '%s'", c), s
    end
    if kind == "error" then
      toks[#toks + 1] = { kind = kind, value = value, pos = e }
      return toks
    end
    toks[#toks + 1] = { kind = kind, value = value, pos = s, n = n }
    pos = e + 1
  end
end

-- The message and position for finding tok where `what` was expected: a
-- lexical error, when that is what stands there, explains more.
local function expected(tok, what)
  if tok.kind == "error" then return tok.value, tok.pos end
  return what, tok.pos
end

-- Parses `attribute comparator value` at toks[i]; as in 4D, a placeholder
-- may name the attribute path. Returns a predicate over elements and the
-- index of the next token, or nil, a message and a position.
local function comparison(toks, i)
  local tok = toks[i]
  local segs
  if tok.kind == "path" then
    segs = tok.value
  elseif tok.kind == "placeholder" then
    segs = type(tok.value) == "string" and split_path(tok.value)
    if not segs then
      return nil, format("expected an attribute path in placeholder :%d",
        tok.n), tok.pos
    end
  else
    return nil, expected(tok, "expected an attribute path")
  end
  local get = getter(segs)
  tok = toks[i + 1]
  local op = tok.kind == "cmp" and tok.value or tok.kind == "in" and "in"
  if not op then return nil, expected(tok, "expected a comparator") end
  i = i + 2
  tok = toks[i]
  local test
  if op ~= "in" then
    if tok.kind ~= "value" and tok.kind ~= "placeholder" then
      return nil, expected(tok, "expected a value")
    end
    test = PREDICATES[op](tok.value)
  elseif tok.kind == "placeholder" then
    if type(tok.value) ~= "table" then
      return nil, format("expected a list in placeholder :%d, got %s",
        tok.n, type(tok.value)), tok.pos
    end
    test = member(tok.value, #tok.value)
  elseif tok.kind == "[" then
    local list, n, open = {}, 0, tok.pos
    i = i + 1
    tok = toks[i]
    while tok.kind ~= "]" do
      if tok.kind ~= "value" and tok.kind ~= "placeholder" then
        return nil, expected(tok, "expected a value")
      end
      n = n + 1
      list[n] = tok.value
      i = i + 1
      tok = toks[i]
      if tok.kind == "eof" then return nil, "unclosed '['", open end
      if tok.kind == "," then
        i = i + 1
        tok = toks[i]
      elseif tok.kind ~= "]" then
        return nil, expected(tok, "expected ',' or ']'")
      end
    end
    test = member(list, n)
  else
    return nil, expected(tok, "expected a list or a placeholder after IN")
  end
  return function(e) return test(get(e)) end, i + 1
end

local PRECEDENCE = { ["or"] = 1, ["and"] = 2, ["not"] = 3 }

-- Compiles query string q, with placeholder values args[1..args.n], into a
-- predicate over elements, or returns nil, a message and a position.
-- Operator precedence (not > and > or) by shunting-yard rather than
-- recursion, so that query() alone raises, at a known stack level.
local function compile(q, args)
  local toks = tokenize(q, args)
  if toks[1].kind == "eof" then return nil, "empty query", 1 end
  local preds, ops, open, i = {}, {}, 0, 1

  -- Pops one operator off ops and applies it to the predicates on top.
  local function reduce()
    local op = ops[#ops]
    ops[#ops] = nil
    local b = preds[#preds]
    if op.kind == "not" then
      preds[#preds] = function(e) return not b(e) end
      return
    end
    preds[#preds] = nil
    local a = preds[#preds]
    if op.kind == "and" then
      preds[#preds] = function(e) return a(e) and b(e) end
    else
      preds[#preds] = function(e) return a(e) or b(e) end
    end
  end

  while true do
    -- An operand: prefix nots and opening parentheses, then a comparison.
    local tok = toks[i]
    while tok.kind == "not" or tok.kind == "(" do
      if tok.kind == "(" then open = open + 1 end
      ops[#ops + 1] = tok
      i = i + 1
      tok = toks[i]
    end
    local p, next_i, at = comparison(toks, i)
    if not p then return nil, next_i, at end
    preds[#preds + 1] = p
    i = next_i
    tok = toks[i]
    while tok.kind == ")" do
      if open == 0 then return nil, "unbalanced ')'", tok.pos end
      while ops[#ops].kind ~= "(" do reduce() end
      ops[#ops] = nil
      open = open - 1
      i = i + 1
      tok = toks[i]
    end
    -- Then a binary operator, or the end.
    if tok.kind == "and" or tok.kind == "or" then
      local prec = PRECEDENCE[tok.kind]
      while #ops > 0 and ops[#ops].kind ~= "("
          and PRECEDENCE[ops[#ops].kind] >= prec do
        reduce()
      end
      ops[#ops + 1] = tok
      i = i + 1
    elseif tok.kind == "eof" then
      while #ops > 0 do
        if ops[#ops].kind == "(" then
          return nil, "unclosed '('", ops[#ops].pos
        end
        reduce()
      end
      return preds[1]
    elseif open > 0 then
      return nil, expected(tok, "expected 'and', 'or' or ')'")
    else
      return nil, expected(tok,
        "expected 'and', 'or' or the end of the query")
    end
  end
end

-- The elements matching queryString, in their order, as a new collection.
-- The query compiles once into closures; the scan is then linear.
function methods:query(q, ...)
  if not is(self) then bad_self("query", self) end
  if type(q) ~= "string" then
    bad_arg(1, "query", "string expected, got " .. type(q))
  end
  local pred, what, at = compile(q, table.pack(...))
  if not pred then
    error(format('query: %s at position %d in "%s"', what, at, q), 2)
  end
  local out, n = {}, 0
  for i = 1, #self do
    local e = self[i]
    if pred(e) then
      n = n + 1
      out[n] = e
    end
  end
  return wrap(out)
end

function methods:length()
  if not is(self) then bad_self("length", self) end
  return #self
end

function methods:first()
  if not is(self) then bad_self("first", self) end
  return self[1]
end

-- fn(element, index) for each element. nil results are left out, so the
-- result stays a proper sequence for `#` and ipairs.
function methods:map(fn)
  if not is(self) then bad_self("map", self) end
  if not callable(fn) then
    bad_arg(1, "map", "function expected, got " .. type(fn))
  end
  local out, n = {}, 0
  for i = 1, #self do
    local v = fn(self[i], i)
    if v ~= nil then
      n = n + 1
      out[n] = v
    end
  end
  return wrap(out)
end

function methods:filter(fn)
  if not is(self) then bad_self("filter", self) end
  if not callable(fn) then
    bad_arg(1, "filter", "function expected, got " .. type(fn))
  end
  local out, n = {}, 0
  for i = 1, #self do
    local e = self[i]
    if fn(e, i) then
      n = n + 1
      out[n] = e
    end
  end
  return wrap(out)
end

-- The types orderBy can sort; values of two different ones cannot be compared.
local SORTABLE = { number = true, string = true, boolean = true }

-- A stable bottom-up merge sort of the indexes 1..n. Written in Lua because
-- table.sort is neither stable nor yieldable from its comparator.
local function sorted_indexes(n, before)
  local src, dst = {}, {}
  for i = 1, n do src[i] = i end
  local width = 1
  while width < n do
    local lo = 1
    while lo <= n do
      local mid = math.min(lo + width, n + 1)
      local hi = math.min(lo + 2 * width, n + 1)
      local i, j, k = lo, mid, lo
      while i < mid and j < hi do
        -- Take from the right run only when strictly before: stability.
        if before(src[j], src[i]) then
          dst[k], j = src[j], j + 1
        else
          dst[k], i = src[i], i + 1
        end
        k = k + 1
      end
      while i < mid do
        dst[k], i, k = src[i], i + 1, k + 1
      end
      while j < hi do
        dst[k], j, k = src[j], j + 1, k + 1
      end
      lo = hi
    end
    src, dst = dst, src
    width = width * 2
  end
  return src
end

-- The helpers below return nil, an argument number (0: no argument is
-- wrong, the values are) and a message instead of raising, so orderBy
-- alone raises, blaming its caller.

-- "a desc, b asc, c" -> criteria {path =, sign = 1 | -1}. Paths and
-- keywords are separated by blanks; the keywords are asc and desc in any
-- case.
local function parse_spec(spec)
  local crits = {}
  for item in (spec .. ","):gmatch("(.-),") do
    local words = {}
    for w in item:gmatch("%S+") do words[#words + 1] = w end
    if #words == 0 then
      return nil, 1, format('empty attribute path in "%s"', spec)
    end
    local sign = 1
    if #words >= 2 then
      local d = lower(words[2])
      if d == "desc" then
        sign = -1
      elseif d ~= "asc" then
        return nil, 1, format('"asc" or "desc" expected after "%s", got "%s"',
          words[1], words[2])
      end
    end
    if #words > 2 then
      return nil, 1, format('unexpected "%s" after "%s %s"', words[3],
        words[1], words[2])
    end
    crits[#crits + 1] = { path = words[1], sign = sign }
  end
  return crits
end

-- {{propertyPath = "a", descending = true}, {propertyPath = "b"}} ->
-- criteria, as 4D's orderBy(pathObjects).
local function parse_objects(list)
  local crits, n = {}, #list
  if n == 0 then return nil, 1, "empty array of criteria" end
  for i = 1, n do
    local o = list[i]
    if type(o) ~= "table" then
      return nil, 1, format("criterion %d: table expected, got %s", i,
        type(o))
    end
    local path, desc = o.propertyPath, o.descending
    if type(path) ~= "string" then
      return nil, 1, format("criterion %d: propertyPath: string expected, "
        .. "got %s", i, type(path))
    end
    if desc ~= nil and type(desc) ~= "boolean" then
      return nil, 1, format("criterion %d: descending: boolean expected, "
        .. "got %s", i, type(desc))
    end
    crits[i] = { path = path, sign = desc and -1 or 1 }
  end
  return crits
end

-- The sort keys at path for the n elements of c (strings lowered, NaN as
-- nil), or nil, 0 and why they cannot be sorted: no element has the path,
-- or values of a type with no order, or of two types.
local function sort_keys(c, n, path)
  local get, keys = getter(split_path(path)), {}
  local kind, first
  for i = 1, n do
    local k = get(c[i])
    if k ~= k then k = nil end
    if k ~= nil then
      local t = type(k)
      if not SORTABLE[t] then
        return nil, 0, format('cannot sort by "%s": element %d holds a %s '
          .. '(only numbers, strings and booleans sort)', path, i, t)
      end
      if kind == nil then
        kind, first = t, i
      elseif t ~= kind then
        return nil, 0, format('cannot sort by "%s": element %d holds a %s, '
          .. 'element %d a %s, which do not compare', path, first, kind, i, t)
      end
      if t == "string" then k = lower(k) end
    end
    keys[i] = k
  end
  if kind == nil and n > 0 then
    return nil, 0, format('no element has "%s"', path)
  end
  return keys
end

-- A new collection sorted by one or more attribute paths, as 4D's orderBy:
--   orderBy("a desc, b")              paths, each optionally asc or desc
--   orderBy("a", "desc")              one path and its direction
--   orderBy({{propertyPath = "a", descending = true}, {propertyPath = "b"}})
-- Stable; strings compared case-insensitively; nil (and NaN) first
-- ascending, last descending.
function methods:orderBy(spec, dir)
  if not is(self) then bad_self("orderBy", self) end
  local crits, argn, why
  if type(spec) == "string" and dir ~= nil then
    local d = type(dir) == "string" and lower(dir)
    if d ~= "desc" and d ~= "asc" then
      bad_arg(2, "orderBy", '"asc" or "desc" expected, got ' ..
        (type(dir) == "string" and format('"%s"', dir) or type(dir)))
    end
    if find(spec, "[,%s]") then
      bad_arg(1, "orderBy", format('one attribute path expected with a '
        .. 'direction argument, got "%s"', spec))
    end
    crits = { { path = spec, sign = d == "desc" and -1 or 1 } }
  elseif type(spec) == "string" then
    crits, argn, why = parse_spec(spec)
  elseif type(spec) == "table" and not is(spec) then
    if dir ~= nil then
      bad_arg(2, "orderBy", "no direction expected with an array of "
        .. "criteria (descending = true says it)")
    end
    crits, argn, why = parse_objects(spec)
  else
    bad_arg(1, "orderBy", "string or array of criteria expected, got "
      .. type(spec))
  end
  if not crits then bad_arg(argn, "orderBy", why) end
  for c = 1, #crits do
    if not split_path(crits[c].path) then
      bad_arg(1, "orderBy", format('malformed attribute path "%s"',
        crits[c].path))
    end
  end
  local n, m = #self, #crits
  local keys, signs = {}, {}
  for c = 1, m do
    keys[c], argn, why = sort_keys(self, n, crits[c].path)
    if not keys[c] then error("orderBy: " .. why, 2) end
    signs[c] = crits[c].sign
  end
  local order = sorted_indexes(n, function(i, j)
    for c = 1, m do
      local ks = keys[c]
      local a, b = ks[i], ks[j]
      if a ~= b then
        local r
        if a == nil then
          r = -1
        elseif b == nil then
          r = 1
        elseif type(a) == "boolean" then
          r = a and 1 or -1
        else
          r = a < b and -1 or (b < a and 1 or 0)
        end
        if r ~= 0 then return r * signs[c] < 0 end
      end
    end
    return false
  end)
  local out = {}
  for i = 1, n do out[i] = self[order[i]] end
  return wrap(out)
end

function M.new(t)
  if t == nil then return wrap({}) end
  if type(t) ~= "table" then
    bad_arg(1, "new", "table expected, got " .. type(t))
  end
  local m = getmetatable(t)
  if m ~= nil and not rawequal(m, mt) then
    bad_arg(1, "new", "table already has a metatable")
  end
  return wrap(t)
end

M.is = is

return M
