"""lua/herald.lua, the definition file for lua-language-server (LuaLS),
agrees with the runtime:

- it is valid Lua that only declares (it loads and runs in an empty
  environment with `herald run --local`), starting with `---@meta`;
- every global the runtime defines beyond Lua's standard ones (in `herald
  run --local`, a server's full environment, the sandbox of methods and
  jobs, the console's and a `herald run` script's own) is declared there,
  and every function or constant declared there exists at run time (the
  constants with their values), cjson's members and the collection
  methods included;
- the classes' ---@field lists are the fields the runtime's objects have
  (a real session seen by get_process_activity and by a method, a process
  with its session, message_status's result, audit entries, jobs before,
  after and during a run, the schedule's table spec), with the right Lua
  types;
- the annotations hold together as LuaLS reads them: each ---@param names
  its function's parameter, and each herald.* type used is declared.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import HERALD, ROOT, Server, wait_until

DEFS = os.path.join(ROOT, "lua", "herald.lua")

# Lua 5.4's own globals (the manual's §6), and `arg`, which lua.c sets
# and LuaLS declares among them.
LUA_STANDARD = {
    "_G", "_VERSION", "assert", "collectgarbage", "coroutine", "debug",
    "dofile", "error", "getmetatable", "io", "ipairs", "load", "loadfile",
    "math", "next", "os", "package", "pairs", "pcall", "print", "rawequal",
    "rawget", "rawlen", "rawset", "require", "select", "setmetatable",
    "string", "table", "tonumber", "tostring", "type", "utf8", "warn",
    "xpcall",
}

# Prints "TAG<tab>KEY<tab>TYPE<tab>VALUE" for the string keys of the
# runtime's tables: the globals, the script's own environment, the
# sandbox's base (when the state has one), cjson, the collection methods.
DUMP = r"""
local function dump(tag, t)
  for k, v in pairs(t) do
    if type(k) == "string" then
      print(tag, k, type(v), type(v) == "number" and tostring(v) or "")
    end
  end
end
local registry = debug.getregistry()
dump("globals", registry[2])
dump("env", _ENV)
if registry["herald.sandbox"] then dump("sandbox", registry["herald.sandbox"]) end
dump("cjson", cjson)
dump("collection",
     debug.getmetatable(get_process_activity(PROCESSES_ONLY).processes).__index)
"""

PROBE_METHOD = """
local function kinds(t)
  local r = {}
  for k, v in pairs(t) do r[k] = type(v) end
  return r
end
return function()
  local me = current_session()
  local mine = get_process_activity(me.ID, PROCESSES_ONLY).processes
  return { session = kinds(me), process = kinds(mine[1]) }
end
"""

KNOWN_TAGS = {"meta", "class", "field", "param", "return", "alias",
              "overload", "generic", "type"}


def read_defs():
    with open(DEFS, encoding="utf-8") as f:
        return f.read()


def doc_blocks(text):
    """[(annotation lines, the code line after them)] for each run of
    `---` lines."""
    blocks, block = [], []
    for line in text.splitlines():
        if line.startswith("---"):
            block.append(line)
        else:
            if block:
                blocks.append((block, line))
            block = []
    if block:
        blocks.append((block, ""))
    return blocks


def parse_classes(text):
    """{class name: {field: type text}}; a field declared optional
    (`name? T`) has its type ending in `?`."""
    classes = {}
    for block, _ in doc_blocks(text):
        current = None
        for line in block:
            m = re.match(r"---@class\s+([\w.]+)", line)
            if m:
                current = classes.setdefault(m.group(1), {})
                continue
            m = re.match(r"---@field\s+(\w+)(\??)\s+(\S+)", line)
            if m and current is not None:
                current[m.group(1)] = m.group(3) + m.group(2)
    return classes


def parse_aliases(text):
    """{alias name: [member type texts]}, one-line and `---|` forms."""
    aliases = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"---@alias\s+([\w.]+)\s*(.*)$", line)
        if m:
            current = m.group(1)
            rest = m.group(2).strip()
            aliases[current] = split_union(rest) if rest else []
            continue
        m = re.match(r"---\|\s*>?\s*(\S+)", line)
        if m and current is not None:
            aliases[current].append(m.group(1))
            continue
        current = None
    return aliases


def split_union(t):
    """The members of a union type, split at the top level."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(t):
        if ch in "(<{[":
            depth += 1
        elif ch in ")>}]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(t[start:i])
            start = i + 1
    parts.append(t[start:])
    return [p.strip() for p in parts if p.strip()]


def lua_kinds(t, aliases, seen=()):
    """The Lua types (type() names) a LuaLS type text allows; 'any' for
    anything."""
    kinds = set()
    for part in split_union(t.rstrip("?")):
        part = part.rstrip("?")
        if part in aliases and part not in seen:
            for member in aliases[part]:
                kinds |= lua_kinds(member, aliases, seen + (part,))
        elif part.startswith('"') or part in ("string",):
            kinds.add("string")
        elif re.fullmatch(r"-?\d+(\.\d+)?", part) or part in ("integer",
                                                               "number"):
            kinds.add("number")
        elif part in ("boolean", "true", "false"):
            kinds.add("boolean")
        elif part == "any":
            kinds.add("any")
        elif part == "lightuserdata":
            kinds.add("userdata")
        elif part.startswith("fun(") or part == "function":
            kinds.add("function")
        else:  # arrays, table literals, collections, classes
            kinds.add("table")
    return kinds


def declared_globals(text):
    """{name: 'function' or 'value'} for the file's top-level
    declarations."""
    found = {}
    for m in re.finditer(r"^function (\w+)\(", text, re.M):
        found[m.group(1)] = "function"
    for m in re.finditer(r"^(\w+) = ", text, re.M):
        found[m.group(1)] = "value"
    return found


def declared_members(text, owner, sep):
    """The names declared as OWNER.NAME (sep '.') or OWNER:NAME (':'):
    functions and assigned fields."""
    o = re.escape(owner) + re.escape(sep)
    names = set(re.findall(rf"^function {o}(\w+)\(", text, re.M))
    names |= set(re.findall(rf"^{o}(\w+) = ", text, re.M))
    return names


def run_local(path, *args):
    r = subprocess.run([HERALD, "run", "--local", path, *args],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise AssertionError(f"herald run --local {os.path.basename(path)}:"
                             f" status {r.returncode}: {r.stderr}")
    return r.stdout


def parse_dump(out):
    """{tag: {key: (type, value)}} from DUMP's output."""
    tables = {}
    for line in out.splitlines():
        tag, key, kind, value = line.split("\t")
        tables.setdefault(tag, {})[key] = (kind, value)
    return tables


def parse_kinds(out, tag):
    """[{key: type}] from lines "TAG<tab>N<tab>KEY<tab>TYPE"."""
    items = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == tag:
            items.setdefault(parts[1], {})[parts[2]] = parts[3]
    return [items[k] for k in sorted(items)]


class LuaLSDefinitions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = read_defs()
        cls.classes = parse_classes(cls.text)
        cls.aliases = parse_aliases(cls.text)
        cls.tmp = tempfile.mkdtemp(prefix="herald-luals-")
        try:
            cls.gather()
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def gather(cls):
        """Runs herald once locally and once as a server with a session,
        keeping what the tests compare the file with."""
        dump = os.path.join(cls.tmp, "dump.lua")
        with open(dump, "w") as f:
            f.write(DUMP)
        cls.local = parse_dump(run_local(dump))

        scripts = os.path.join(cls.tmp, "scripts")
        os.makedirs(os.path.join(scripts, "methods"))
        with open(os.path.join(scripts, "methods", "luals_probe.lua"),
                  "w") as f:
            f.write(PROBE_METHOD)
        srv = Server(scripts=scripts)
        try:
            cls.gather_server(srv)
        finally:
            srv.stop()

    @classmethod
    def gather_server(cls, srv):
        cls.server = parse_dump(srv.lua(DUMP))
        r = srv.cli("console", "--socket", srv.socket, input=(
            "for k, v in pairs(_ENV) do print('console', k, type(v), '') "
            "end\n"))
        if r.returncode != 0:
            raise AssertionError(f"herald console: {r.returncode}: "
                                 f"{r.stderr}")
        cls.console = parse_dump(r.stdout).get("console", {})

        w = srv.wire("Vanessa", systemUserName="Vanessa",
                     machineName="vanessa-laptop", hostType="linux")
        w.send({"type": "call", "id": 1, "method": "luals_probe",
                "args": []})
        result = w.recv_type("result")
        if not result.get("ok"):
            raise AssertionError(f"luals_probe: {result}")
        cls.method_view = result["value"]

        cls.objects = srv.lua(r"""
local function kinds(tag, n, t)
  for k, v in pairs(t) do print(tag, n, k, type(v)) end
end
local act = get_process_activity()
kinds("activity", 1, act)
for i, s in ipairs(act.sessions) do kinds("session", i, s) end
for i, p in ipairs(act.processes) do kinds("process", i, p) end
local sid = act.sessions[1].ID
kinds("session", 9, session_info(sid))
kinds("session", 10, get_process_activity(sid, SESSIONS_ONLY).sessions[1])
local count, id = send_message_to_remote_user("hello from the LuaLS test", sid)
kinds("status", 1, message_status(id))
kinds("audit", 1, audit_log()[1])
local quick = schedule({every = 3600, name = "quick"}, function() end)
local slow = schedule({every = 3600, name = "slow"},
                      function() delay_process(60) end)
kinds("job", 1, get_schedule()[1])
run_job(quick)
run_job(slow)
local ok, err = pcall(schedule, {luals_unknown = 1}, function() end)
print("specerror", err)
""")
        # The jobs once both have run or are running.
        wait_until(lambda: srv.lua(
            "local jobs = get_schedule() "
            "print(jobs[1].lastResult ~= nil and jobs[2].process ~= nil)")
            .strip() == "true",
            what="the quick job ran and the slow one runs")
        cls.objects += srv.lua(r"""
for i, j in ipairs(get_schedule()) do
  for k, v in pairs(j) do print("job", i + 1, k, type(v)) end
end
""")

    # --- the file itself -------------------------------------------------

    def test_is_a_meta_file_of_valid_lua_that_only_declares(self):
        self.assertTrue(self.text.startswith("---@meta"),
                        "lua/herald.lua must start with ---@meta")
        loader = os.path.join(self.tmp, "load.lua")
        with open(loader, "w") as f:
            f.write("local env = {}\n"
                    "local chunk = assert(loadfile(arg[1], 't', env))\n"
                    "chunk()\n"
                    "for k, v in pairs(env) do print(k, type(v)) end\n")
        out = run_local(loader, DEFS)
        loaded = dict(line.split("\t") for line in out.splitlines())
        declared = declared_globals(self.text)
        self.assertEqual(set(loaded), set(declared),
                         "the globals the file sets when it runs are the "
                         "top-level declarations")
        for name, what in declared.items():
            if what == "function":
                self.assertEqual(loaded[name], "function", name)

    def test_annotations_are_known_and_each_param_names_a_parameter(self):
        for line in self.text.splitlines():
            m = re.match(r"---@(\w+)", line)
            if m:
                self.assertIn(m.group(1), KNOWN_TAGS, line)
        functions = 0
        for block, code in doc_blocks(self.text):
            m = re.match(r"function [\w.]+([.:])\w+\(([^)]*)\) end$|"
                         r"function \w+\(([^)]*)\) end$", code)
            if not m:
                self.assertNotIn("---@param", "\n".join(block),
                                 f"@param before a non-function: {code!r}")
                continue
            functions += 1
            params = m.group(2) if m.group(2) is not None else m.group(3)
            params = [p.strip() for p in params.split(",") if p.strip()]
            documented = [re.match(r"---@param\s+(\S+?)\??\s", line + " ")
                          .group(1) for line in block
                          if line.startswith("---@param")]
            documented = [p for p in documented if p != "self"]
            self.assertEqual(documented, params,
                             f"the ---@param lines of {code!r}")
        self.assertGreater(functions, 30)

    def test_every_herald_type_used_is_declared(self):
        declared = set(self.classes) | set(self.aliases)
        for line in self.text.splitlines():
            if not line.startswith("---@"):
                continue
            # Descriptions come after the type; the type names that matter
            # are those in the annotation's type positions, and herald.*
            # only ever names a type.
            for name in re.findall(r"herald\.\w+", line):
                self.assertIn(name, declared, line)
        for name in ("herald.Session", "herald.Process", "herald.Activity",
                     "herald.MessageStatus", "herald.AuditEntry",
                     "herald.Job", "herald.JobSpec", "herald.Collection",
                     "herald.ActivityOption"):
            self.assertIn(name, declared)
        self.assertRegex(self.text, r"---@class herald\.Collection<T>: "
                                    r"\{ \[integer\]: T \}")

    # --- globals ---------------------------------------------------------

    def runtime_globals(self):
        """{name: set of Lua types} over every environment herald gives
        scripts."""
        found = {}
        for tables in (self.local, self.server):
            for tag in ("globals", "env", "sandbox"):
                for k, (kind, _) in tables.get(tag, {}).items():
                    found.setdefault(k, set()).add(kind)
        for k, (kind, _) in self.console.items():
            found.setdefault(k, set()).add(kind)
        return found

    def test_every_runtime_global_is_declared(self):
        runtime = self.runtime_globals()
        # The lists are real: the natives are among them.
        for name in ("get_process_activity", "schedule", "audit_log",
                     "cjson", "unpack", "sessions", "arg"):
            self.assertIn(name, runtime)
        declared = declared_globals(self.text)
        missing = sorted(set(runtime) - LUA_STANDARD - set(declared))
        self.assertEqual(missing, [], "globals of the runtime that "
                         "lua/herald.lua does not declare")

    def test_every_declared_global_exists_at_run_time(self):
        runtime = self.runtime_globals()
        for name, what in declared_globals(self.text).items():
            self.assertIn(name, runtime,
                          f"lua/herald.lua declares {name}, which no "
                          f"environment of the runtime has")
            if what == "function":
                self.assertEqual(runtime[name], {"function"}, name)

    def test_constants_have_the_runtime_values(self):
        declared = dict(re.findall(r"^([A-Z_]+) = (\d+)$", self.text, re.M))
        runtime = {k: v for k, (kind, v) in self.server["globals"].items()
                   if kind == "number"}
        self.assertEqual(declared, runtime)
        self.assertEqual(set(declared), {"PROCESSES_AND_SESSIONS",
                                         "PROCESSES_ONLY", "SESSIONS_ONLY"})
        # The option alias lists the same values.
        self.assertEqual(sorted(self.aliases["herald.ActivityOption"]),
                         sorted(declared.values()))

    def test_cjson_members_match(self):
        runtime = self.server["cjson"]
        declared = declared_members(self.text, "cjson", ".")
        self.assertEqual(declared, set(runtime))
        for name in declared:
            if re.search(rf"^function cjson\.{name}\(", self.text, re.M):
                self.assertEqual(runtime[name][0], "function", name)

    def test_collection_methods_match(self):
        runtime = {k for k, (kind, _) in self.server["collection"].items()
                   if kind == "function"}
        self.assertEqual(runtime, {k for k, (kind, _) in
                                   self.local["collection"].items()})
        self.assertEqual(declared_members(self.text, "Collection", ":"),
                         runtime)
        # orderBy's three forms: the declaration and two overloads.
        block = next(b for b, code in doc_blocks(self.text)
                     if code.startswith("function Collection:orderBy("))
        self.assertEqual(sum(line.startswith("---@overload")
                             for line in block), 2)

    # --- objects ---------------------------------------------------------

    def check_objects(self, class_name, samples, what):
        """Each sample's fields are declared with a type that allows its
        Lua type; the required fields are in each; every declared field is
        in one of them."""
        fields = self.classes[class_name]
        self.assertTrue(samples, f"no {what} was seen")
        seen = set()
        for sample in samples:
            for key, kind in sample.items():
                self.assertIn(key, fields, f"{what} has the field {key!r}, "
                              f"which {class_name} does not declare")
                kinds = lua_kinds(fields[key], self.aliases)
                self.assertTrue("any" in kinds or kind in kinds,
                                f"{what}.{key} is a {kind}, declared "
                                f"{fields[key]}")
            required = {f for f, t in fields.items() if not t.endswith("?")}
            self.assertEqual(required - set(sample), set(),
                             f"{class_name} declares as always there what "
                             f"a {what} lacks")
            seen |= set(sample)
        self.assertEqual(set(fields) - seen, set(),
                         f"{class_name} declares what no {what} had")

    def test_session_fields(self):
        samples = parse_kinds(self.objects, "session")
        self.assertEqual(len(samples), 3)  # the snapshot, by ID, session_info
        samples.append(self.method_view["session"])  # current_session()
        self.check_objects("herald.Session", samples, "session")
        self.assertEqual(set(samples[0]), {
            "type", "userName", "machineName", "systemUserName",
            "IPAddress", "hostType", "creationDateTime", "state", "ID",
            "persistentID", "groups", "authenticated"})

    def test_process_fields(self):
        samples = parse_kinds(self.objects, "process")
        samples.append(self.method_view["process"])  # with its session
        self.assertIn("session", self.method_view["process"])
        self.check_objects("herald.Process", samples, "process")

    def test_activity_message_status_and_audit_fields(self):
        self.check_objects("herald.Activity",
                           parse_kinds(self.objects, "activity"),
                           "get_process_activity() result")
        self.check_objects("herald.MessageStatus",
                           parse_kinds(self.objects, "status"),
                           "message_status() result")
        self.check_objects("herald.AuditEntry",
                           parse_kinds(self.objects, "audit"),
                           "audit_log() entry")

    def test_job_fields(self):
        samples = parse_kinds(self.objects, "job")
        self.assertEqual(len(samples), 3)  # before a run, ran, running
        self.check_objects("herald.Job", samples, "get_schedule() job")

    def test_job_spec_fields(self):
        m = re.search(r"specerror\t.*\(expected ([\w, ]+)\)", self.objects)
        self.assertTrue(m, self.objects)
        runtime = set(re.split(r", | or ", m.group(1)))
        self.assertEqual(set(self.classes["herald.JobSpec"]), runtime)


if __name__ == "__main__":
    unittest.main()
