"""Server methods end to end: the `call` frame and its `result`, argument
and result round trips, refused and broken methods, the caller's session,
the sandbox, CPU and memory limits, hot reload, concurrency, and `herald
call` against the repository's own scripts/methods.

Each test writes the method files it needs into a temporary scripts folder
of its own (FOLDER/methods/NAME.lua) and starts the real server on it."""
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time

from harness import HeraldTest, sync

FAST = "method_timeout = 1\n"

ECHO = "return function(x) return x end\n"

# Every JSON type, as Python values; each travels as the one argument of
# echo and must come back as it went.
VALUES = [
    "plain",
    "",
    "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001F600",
    "quote \" backslash \\ slash / newline \n tab \t cr \r ctrl \x01 "
    "nul \x00 end",
    0,
    42,
    -17,
    1.5,
    -0.25,
    1e-07,
    True,
    False,
    None,
    [1, "two", [3, [4.5, [True]]], {"k": "v"}],
    [1, None, 3],
    {"a": 1, "b": {"c": [True, False], "d": {"e": "f"}},
     "unicode \u2713": "v\u00e9", "n": None},
    {},
]


def canon(value):
    """A type-strict comparable form (True is not 1, 1.0 is not 1)."""
    return json.dumps(value, sort_keys=True)


class MethodsTest(HeraldTest):
    """Base: a scripts folder of the test's own, and call helpers."""

    def folder(self, **methods):
        """A temporary scripts folder with methods/NAME.lua per keyword."""
        d = tempfile.mkdtemp(prefix="herald-methods-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        os.mkdir(os.path.join(d, "methods"))
        for name, source in methods.items():
            self.write(d, name, source)
        return d

    def write(self, folder, name, source, bump=0):
        """Writes methods/NAME.lua; bump > 0 sets its mtime that many
        seconds ahead of now, so a rewrite is always seen as a change."""
        path = os.path.join(folder, "methods", name + ".lua")
        with open(path, "w") as f:
            f.write(source)
        if bump:
            t = time.time() + bump
            os.utime(path, (t, t))
        return path

    def start(self, folder, config=FAST):
        return self.server(config=config, scripts=folder)

    def call(self, w, method, *args, id=1, timeout=5):
        """Sends a call frame and returns its result frame."""
        w.send({"type": "call", "id": id, "method": method,
                "args": list(args)})
        return self.result(w, id, timeout)

    def result(self, w, id, timeout=5):
        frame = w.recv_type("result", timeout)
        self.assertEqual(frame["id"], id, frame)
        return frame

    def ok(self, frame):
        self.assertEqual(frame.get("ok"), True, frame)
        self.assertIn("value", frame)
        return frame["value"]

    def failed(self, frame):
        self.assertEqual(frame.get("ok"), False, frame)
        self.assertIsInstance(frame.get("error"), str, frame)
        self.assertNotIn("value", frame)
        return frame["error"]

    def no_paths(self, text, folder):
        """The error text names no absolute path of this machine."""
        for p in {folder, os.path.realpath(folder)}:
            self.assertNotIn(p, text)
        self.assertNotIn(tempfile.gettempdir(), text)


class RoundTrips(MethodsTest):
    def test_every_json_type_round_trips_through_a_call_frame(self):
        srv = self.start(self.folder(echo=ECHO))
        w = srv.wire("Vanessa")
        for i, value in enumerate(VALUES, start=100):
            with self.subTest(value=value):
                got = self.ok(self.call(w, "echo", value, id=i))
                self.assertEqual(canon(got), canon(value))

    def test_every_json_type_round_trips_through_herald_call(self):
        srv = self.start(self.folder(echo=ECHO))
        for value in VALUES:
            with self.subTest(value=value):
                r = srv.cli("call", "echo",
                            json.dumps(value, ensure_ascii=False))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(canon(json.loads(r.stdout)), canon(value))

    def test_null_argument_is_nil_in_the_method(self):
        srv = self.start(self.folder(kinds="""
return function(a, b, c)
  return { a = type(a), b = type(b), c = type(c), n = select("#", a, b, c) }
end
"""))
        w = srv.wire("Vanessa")
        got = self.ok(self.call(w, "kinds", None, "x", None))
        self.assertEqual(got, {"a": "nil", "b": "string", "c": "nil",
                               "n": 3})
        r = srv.cli("call", "kinds", "null", '"x"')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["a"], "nil")

    def test_nil_result_is_null(self):
        srv = self.start(self.folder(nothing="return function() end\n",
                                     nils="return function() return nil, 2 "
                                          "end\n"))
        w = srv.wire("Vanessa")
        frame = self.call(w, "nothing", id=3)
        self.assertIsNone(self.ok(frame))
        self.assertIsNone(self.ok(self.call(w, "nils", id=4)))
        r = srv.cli("call", "nothing")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "null")

    def test_several_arguments_and_only_the_first_result(self):
        srv = self.start(self.folder(pair="""
return function(a, b, ...)
  return { a, b, select("#", ...) }, "second result is dropped"
end
"""))
        w = srv.wire("Vanessa")
        got = self.ok(self.call(w, "pair", "x", -3, True, None))
        self.assertEqual(canon(got), canon(["x", -3, 2]))
        r = srv.cli("call", "pair", '"x"', "-3", "true", "null")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(canon(json.loads(r.stdout)), canon(["x", -3, 2]))

    def test_empty_array_comes_back_as_an_empty_object(self):
        # lua-cjson 2.1 decodes [] and {} to the same empty table, and
        # encodes it as {} (README, "Writing a server method").
        srv = self.start(self.folder(echo=ECHO))
        w = srv.wire("Vanessa")
        for i, (value, back) in enumerate((([], {}), ([[]], [{}]),
                                           ({"list": []}, {"list": {}}),
                                           ([[1]], [[1]])), start=1):
            with self.subTest(value=value):
                self.assertEqual(self.ok(self.call(w, "echo", value, id=i)),
                                 back)

    def test_numbers_keep_fourteen_significant_digits(self):
        # lua-cjson 2.1 writes numbers with 14 significant digits.
        srv = self.start(self.folder(echo=ECHO))
        w = srv.wire("Vanessa")
        for i, value in enumerate((12345678901234, -98765432109876,
                                   3.1415926535898, 0.5, 1e-7, 2 ** 40),
                                  start=1):
            with self.subTest(value=value):
                got = self.ok(self.call(w, "echo", value, id=i))
                self.assertEqual(canon(got), canon(value))

    def test_integer_argument_is_a_lua_integer(self):
        srv = self.start(self.folder(num="""
return function(n, f)
  return { math.type(n), tostring(n), "you have " .. n .. " messages",
           math.type(f) }
end
"""))
        w = srv.wire("Vanessa")
        got = self.ok(self.call(w, "num", 12, 1.5))
        self.assertEqual(got, ["integer", "12", "you have 12 messages",
                               "float"])


    def test_herald_call_prints_a_result_of_megabytes(self):
        # A result may be far longer than max_frame (which bounds what the
        # server reads): a listing of thousands of sessions, say.
        srv = self.start(self.folder(
            big='return function() return string.rep("x", 3 * 1024 * 1024) '
                'end\n'))
        r = srv.cli("call", "big")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), "x" * (3 * 1024 * 1024))


class ResultFrames(MethodsTest):
    def test_ok_result_has_exactly_type_id_ok_value(self):
        srv = self.start(self.folder(echo=ECHO))
        w = srv.wire("Vanessa")
        for id_ in (7, 0, 2 ** 40):
            w.send({"type": "call", "id": id_, "method": "echo",
                    "args": ["v"]})
            frame = w.recv_type("result")
            self.assertEqual(frame, {"type": "result", "id": id_, "ok": True,
                                     "value": "v"})

    def test_error_result_has_exactly_type_id_ok_code_error(self):
        srv = self.start(self.folder(fail='return function() '
                                          'error("nope", 0) end\n'))
        w = srv.wire("Vanessa")
        w.send({"type": "call", "id": 9, "method": "fail", "args": []})
        frame = w.recv_type("result")
        self.assertEqual(frame, {"type": "result", "id": 9, "ok": False,
                                 "code": "failed", "error": "nope"})

    def test_results_carry_their_own_call_id_out_of_order(self):
        srv = self.start(self.folder(
            slow='return function(x) delay_process(0.3) return x end\n',
            echo=ECHO))
        w = srv.wire("Vanessa")
        w.send({"type": "call", "id": 1, "method": "slow", "args": ["one"]})
        w.send({"type": "call", "id": 2, "method": "echo", "args": ["two"]})
        first, second = w.recv_type("result"), w.recv_type("result")
        self.assertEqual((first["id"], first["value"]), (2, "two"))
        self.assertEqual((second["id"], second["value"]), (1, "one"))

    def test_result_that_is_not_json_is_an_error(self):
        srv = self.start(self.folder(
            fn="return function() return print end\n",
            nan="return function() return 0/0 end\n",
            inf="return function() return { x = math.huge } end\n",
            echo=ECHO))
        w = srv.wire("Vanessa")
        for i, name in enumerate(("fn", "nan", "inf"), start=1):
            with self.subTest(method=name):
                err = self.failed(self.call(w, name, id=i))
                self.assertIn(f"method {name}", err)
                self.assertIn("JSON", err)
        self.assertEqual(self.ok(self.call(w, "echo", "alive", id=9)),
                         "alive")

    def test_bad_args_are_refused(self):
        srv = self.start(self.folder(echo=ECHO))
        w = srv.wire("Vanessa")
        for i, args in enumerate(("x", 5, True, list(range(65))), start=1):
            with self.subTest(args=args):
                w.send({"type": "call", "id": i, "method": "echo",
                        "args": args})
                err = self.failed(self.result(w, i))
                self.assertIn("args", err)
        w.send({"type": "call", "id": 10, "method": "echo",
                "args": list(range(64))})
        self.assertEqual(self.ok(self.result(w, 10)), 0)
        w.send({"type": "call", "id": 11, "method": "echo"})
        self.assertIsNone(self.ok(self.result(w, 11)))


# A method file that must never run: at load and when called, it sends a
# message to everyone, which the test's client would see.
TRAP = """
send_message_to_remote_user("TRAP LOADED {name}")
return function() send_message_to_remote_user("TRAP CALLED {name}")
  return "TRAP {name}" end
"""


class RefusedAndBroken(MethodsTest):
    def test_unknown_method(self):
        srv = self.start(self.folder())
        w = srv.wire("Vanessa")
        frame = self.call(w, "nosuch")
        err = self.failed(frame)
        self.assertEqual(frame.get("code"), "unknown_method", frame)
        # Where the server looked, relative to the scripts folder only.
        self.assertEqual(err, "unknown method 'nosuch' (no file "
                              "methods/nosuch.lua in the scripts folder)")
        r = srv.cli("call", "nosuch")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown method 'nosuch' (no file methods/nosuch.lua "
                      "in the scripts folder)", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_a_missing_scripts_folder_is_a_warning_at_start(self):
        d = tempfile.mkdtemp(prefix="herald-methods-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        missing = os.path.join(d, "nosuch")
        srv = self.start(missing)
        srv.wait_log(r"warn: scripts folder " + re.escape(missing) +
                     r" does not exist: no method can be called and no "
                     r"job script found")
        # A warning, not a refusal: the server serves.
        w = srv.wire("Vanessa")
        self.assertIn("methods/echo.lua", self.failed(self.call(w, "echo")))
        self.assertEqual(srv.lua("print(1 + 1)"), "2\n")
        # An existing folder gets no such warning.
        other = self.start(self.folder(echo=ECHO))
        other.lua("print(1)")
        self.assertNotIn("scripts folder", other.log.text())

    def test_refused_names_run_nothing(self):
        d = self.folder(ok='return function() return "ok" end\n')
        traps = {
            os.path.join(d, "x.lua"): "../x",
            os.path.join(d, "methods", "a.b.lua"): "a.b",
            os.path.join(d, "methods", "5.lua"): "5",
            os.path.join(d, "methods", "5.0.lua"): "5.0",
        }
        os.mkdir(os.path.join(d, "methods", "a"))
        traps[os.path.join(d, "methods", "a", "b.lua")] = "a/b"
        for path, name in traps.items():
            with open(path, "w") as f:
                f.write(TRAP.format(name=name))
        before = {p: (os.stat(p).st_mtime_ns, os.stat(p).st_size)
                  for p in traps}
        srv = self.start(d)
        w = srv.wire("Vanessa")
        methods = ["../x", "a.b", "a/b", "", "a" * 65, "x y", "..",
                   "methods/ok", "ok\n", "\u00e9", 5, 5.0, True, None,
                   ["ok"], {"name": "ok"}]
        frames = []
        for i, method in enumerate(methods, start=1):
            w.send({"type": "call", "id": i, "method": method, "args": []})
        w.send({"type": "call", "id": 100, "args": []})  # no method at all
        w.send({"type": "call", "id": 101, "method": "ok", "args": []})
        while True:
            frame = w.recv()
            self.assertIsNotNone(frame, "connection closed")
            frames.append(frame)
            if frame.get("type") == "result" and frame.get("id") == 101:
                break
        messages = [f for f in frames if f.get("type") == "message"]
        self.assertEqual(messages, [])
        results = {f["id"]: f for f in frames if f.get("type") == "result"}
        for i, method in enumerate(methods, start=1):
            with self.subTest(method=method):
                self.assertIn(i, results)
                err = self.failed(results[i])
                self.assertIn("method", err)
                self.assertNotIn("TRAP", err)
        self.failed(results[100])
        self.assertEqual(self.ok(results[101]), "ok")
        # The first message the server ever sends gets id 1: none before.
        out = srv.lua('print(select(2, send_message_to_remote_user("p")))')
        self.assertEqual(out.strip(), "1")
        after = {p: (os.stat(p).st_mtime_ns, os.stat(p).st_size)
                 for p in traps}
        self.assertEqual(after, before)
        self.assertNotRegex(srv.log.text(), "TRAP (LOADED|CALLED)")

    def test_name_of_64_characters_is_accepted(self):
        name = "m" * 63 + "9"
        srv = self.start(self.folder(**{name: 'return function() '
                                              'return "long" end\n'}))
        w = srv.wire("Vanessa")
        self.assertEqual(self.ok(self.call(w, name)), "long")

    def test_file_that_does_not_return_a_function(self):
        srv = self.start(self.folder(number="return 42\n",
                                     nothing="local x = 1\n",
                                     table="return { f = function() end }\n"))
        w = srv.wire("Vanessa")
        for i, (name, kind) in enumerate((("number", "number"),
                                          ("nothing", "nil"),
                                          ("table", "table")), start=1):
            with self.subTest(method=name):
                err = self.failed(self.call(w, name, id=i))
                self.assertIn("must return a function", err)
                self.assertIn(kind, err)

    def test_syntax_error_names_the_file_and_line_not_the_path(self):
        d = self.folder(bad="return function()\n  local x =\nend\n")
        srv = self.start(d)
        w = srv.wire("Vanessa")
        err = self.failed(self.call(w, "bad"))
        self.assertIn("methods/bad.lua:3:", err)
        self.no_paths(err, d)
        r = srv.cli("call", "bad")
        self.assertEqual(r.returncode, 1)
        self.assertIn("methods/bad.lua:3:", r.stderr)
        self.no_paths(r.stderr, d)

    def test_error_raised_by_a_method(self):
        d = self.folder()
        self.write(d, "raise", 'return function()\n  error("boom")\nend\n')
        self.write(d, "deep", 'local function inner(t)\n'
                              '  return t.missing.field\nend\n'
                              'return function() return inner({}) end\n')
        srv = self.start(d)
        w = srv.wire("Vanessa")
        err = self.failed(self.call(w, "raise", id=1))
        self.assertIn("boom", err)
        self.assertIn("methods/raise.lua:2:", err)
        self.assertNotIn("\n", err)  # the traceback stays in the log
        self.no_paths(err, d)
        err = self.failed(self.call(w, "deep", id=2))
        self.assertIn("methods/deep.lua:2:", err)
        self.no_paths(err, d)
        srv.wait_log("method raise failed: .*boom")
        # The connection is still usable after failures.
        err = self.failed(self.call(w, "raise", id=3))
        self.assertIn("boom", err)


class Sessions(MethodsTest):
    def test_current_session_is_the_callers(self):
        srv = self.start(self.folder(me="return function() "
                                        "return current_session() end\n"))
        a = srv.wire("Vanessa", machineName="vanessa-laptop",
                     systemUserName="vanessa")
        b = srv.wire("Marc")
        got_a = self.ok(self.call(a, "me", id=1))
        got_b = self.ok(self.call(b, "me", id=2))
        self.assertEqual(got_a["userName"], "Vanessa")
        self.assertEqual(got_a["ID"], a.welcome["sessionID"])
        self.assertEqual(got_a["machineName"], "vanessa-laptop")
        self.assertEqual(got_a["systemUserName"], "vanessa")
        self.assertEqual(got_a["type"], "remote")
        self.assertEqual(got_b["userName"], "Marc")
        self.assertEqual(got_b["ID"], b.welcome["sessionID"])
        self.assertEqual(srv.lua("print(current_session())").strip(), "nil")

    def test_running_method_is_a_type_1_process_of_the_caller(self):
        srv = self.start(self.folder(slow="return function() "
                                          "delay_process(1) return 'done' "
                                          "end\n"))
        w = srv.wire("Vanessa")
        other = srv.wire("Marc")
        w.send({"type": "call", "id": 5, "method": "slow", "args": []})
        sync(w)  # the call has started
        out = srv.lua(r"""
for _, p in ipairs(get_process_activity(PROCESSES_ONLY).processes) do
  if p.type == 1 then
    print(p.type, p.name, p.sessionID, p.state)
  end
end
for _, p in ipairs(get_process_activity(%s).processes) do
  print("session", p.name, p.session and p.session.userName)
end
print("other", #get_process_activity(%s).processes)
""" % (json.dumps(w.welcome["sessionID"]),
       json.dumps(other.welcome["sessionID"])))
        lines = out.splitlines()
        self.assertIn(f"1\tslow\t{w.welcome['sessionID']}\t1", lines)
        self.assertEqual(len([l for l in lines if l.startswith("1\t")]), 1,
                         out)
        self.assertIn("session\tslow\tVanessa", lines)
        self.assertIn("other\t0", lines)
        self.assertEqual(self.ok(self.result(w, 5)), "done")
        out = srv.lua("local n = 0 for _, p in ipairs(get_process_activity("
                      "PROCESSES_ONLY).processes) do if p.type == 1 then "
                      "n = n + 1 end end print(n)")
        self.assertEqual(out.strip(), "0")


SANDBOX = r"""
return function()
  local r = {}
  for _, name in ipairs({ "io", "package", "debug", "require", "dofile",
                          "loadfile", "collectgarbage" }) do
    r[name] = type(_G[name])
  end
  r.os_execute = type(os.execute)
  r.os_exit = type(os.exit)
  r.os_getenv = type(os.getenv)
  r.os_remove = type(os.remove)
  r.os_time = type(os.time)
  local binary = string.dump and string.dump(function() return 1 end)
    or "\27Lua\84\0"
  local f, err = load(binary)
  r.load_binary = f == nil
  r.load_binary_error = tostring(err)
  f = load(binary, "x", "b")
  r.load_binary_mode_b = f == nil
  r.load_text = load("return 1 + 1")()
  local ok, werr = pcall(function() string.upper = nil end)
  r.string_write_ok = ok
  r.string_write_error = tostring(werr)
  r.upper_after = string.upper("abc")
  local ok2 = pcall(function() math.pi = 3 end)
  r.math_write_ok = ok2
  r.pi = math.pi
  r.string_metatable = getmetatable("") == nil
  r.method_syntax = ("abc"):upper()
  return r
end
"""


class Sandbox(MethodsTest):
    def test_sandbox(self):
        srv = self.start(self.folder(sandbox=SANDBOX))
        w = srv.wire("Vanessa")
        r = self.ok(self.call(w, "sandbox"))
        for name in ("io", "package", "debug", "require", "dofile",
                     "loadfile", "collectgarbage", "os_execute", "os_exit",
                     "os_getenv", "os_remove"):
            with self.subTest(name=name):
                self.assertEqual(r[name], "nil")
        self.assertEqual(r["os_time"], "function")
        self.assertTrue(r["load_binary"], r)
        self.assertIn("binary", r["load_binary_error"])
        self.assertTrue(r["load_binary_mode_b"], r)
        self.assertEqual(r["load_text"], 2)
        self.assertFalse(r["string_write_ok"])
        self.assertIn("read-only", r["string_write_error"])
        self.assertEqual(r["upper_after"], "ABC")
        self.assertFalse(r["math_write_ok"])
        self.assertAlmostEqual(r["pi"], 3.141592653589793, places=10)
        self.assertTrue(r["string_metatable"])
        self.assertEqual(r["method_syntax"], "ABC")
        # The server's own libraries are untouched.
        self.assertEqual(srv.lua('print(string.upper("x"), type(io))')
                         .split(), ["X", "table"])

    def test_globals_of_one_method_are_not_seen_by_another(self):
        srv = self.start(self.folder(
            seta="return function() secret = 'A' counter = (counter or 0) "
                 "+ 1 return counter end\n",
            getb="return function() return { type(secret), "
                 "type(counter) } end\n"))
        w = srv.wire("Vanessa")
        self.assertEqual(self.ok(self.call(w, "seta", id=1)), 1)
        self.assertEqual(self.ok(self.call(w, "getb", id=2)), ["nil", "nil"])
        self.assertEqual(srv.lua("print(type(secret), type(counter))")
                         .split(), ["nil", "nil"])

    def test_rawset_on_a_library_does_not_reach_another_method(self):
        srv = self.start(self.folder(
            evil="return function() rawset(string, 'upper', function() "
                 "return 'pwned' end) rawset(os, 'time', function() "
                 "return 0 end) return string.upper('x') end\n",
            victim="return function() return { string.upper('x'), "
                   "os.time() > 0 } end\n"))
        w = srv.wire("Vanessa")
        self.call(w, "evil", id=1)
        self.assertEqual(self.ok(self.call(w, "victim", id=2)), ["X", True])

    def test_environment_metatable_does_not_reach_another_method(self):
        srv = self.start(self.folder(
            evil="""
return function()
  local mt = getmetatable(_G)
  local base = type(mt) == "table" and mt.__index
  if type(base) ~= "table" then return "no base" end
  base.injected = "pwned"
  base.tostring = function() return "pwned" end
  base.send_message_to_remote_user = function() return 0 end
  return "changed"
end
""",
            victim="return function() return { type(injected), "
                   "tostring(1), (send_message_to_remote_user('hi')) } end\n"))
        w = srv.wire("Vanessa")
        self.call(w, "evil", id=1)
        victim = self.ok(self.call(w, "victim", id=2))
        self.assertEqual(victim, ["nil", "1", 1])


class Limits(MethodsTest):
    def test_runaway_loop_times_out(self):
        srv = self.start(self.folder(
            spin="return function() while true do end end\n"))
        w = srv.wire("Vanessa")
        t0 = time.monotonic()
        err = self.failed(self.call(w, "spin", timeout=10))
        elapsed = time.monotonic() - t0
        self.assertEqual(err, "method spin: timed out after 1 s")
        self.assertGreater(elapsed, 0.9)
        self.assertLess(elapsed, 2.0)

    def test_runaway_inside_pcall_times_out(self):
        srv = self.start(self.folder(
            pspin="return function() while true do pcall(function() "
                  "while true do end end) end end\n",
            xspin="return function() while true do xpcall(function() "
                  "while true do end end, function() while true do end end)"
                  " end end\n",
            cospin="return function() while true do coroutine.resume("
                   "coroutine.create(function() while true do end end)) "
                   "end end\n"))
        w = srv.wire("Vanessa")
        for i, name in enumerate(("pspin", "xspin", "cospin"), start=1):
            with self.subTest(method=name):
                t0 = time.monotonic()
                err = self.failed(self.call(w, name, id=i, timeout=10))
                elapsed = time.monotonic() - t0
                if name == "cospin":
                    # A nested coroutine cannot yield to the loop: it may
                    # hold it max_blocking (0.5 s), not its whole timeout.
                    self.assertEqual(
                        err, "method cospin: held the server for more than "
                        "0.5 s where it could not yield (a nested "
                        "coroutine, a metamethod or a function called "
                        "from C)")
                    self.assertLess(elapsed, 1.0)
                else:
                    self.assertEqual(err,
                                     f"method {name}: timed out after 1 s")
                    self.assertLess(elapsed, 2.0)

    def test_server_keeps_serving_during_a_runaway(self):
        srv = self.start(self.folder(
            spin="return function() while true do end end\n"),
            config="method_timeout = 2\n")
        caller = srv.wire("Vanessa")
        other = srv.wire("Marc")
        t0 = time.monotonic()
        caller.send({"type": "call", "id": 1, "method": "spin", "args": []})
        sync(caller)  # the call spins (it yields its slices)
        other.send({"type": "ping"})
        self.assertEqual(other.recv_type("pong", timeout=1)["type"], "pong")
        pong_at = time.monotonic() - t0
        out = srv.lua(
            "local n = send_message_to_remote_user('during', %s)\n"
            "for _, p in ipairs(get_process_activity(PROCESSES_ONLY)"
            ".processes) do if p.type == 1 then print(p.name, p.state) end "
            "end\nprint(n)" % json.dumps(other.welcome["sessionID"]))
        self.assertEqual(out.split(), ["spin", "0", "1"])
        self.assertEqual(other.recv_type("message", timeout=1)["text"],
                         "during")
        message_at = time.monotonic() - t0
        err = self.failed(self.result(caller, 1, timeout=10))
        done_at = time.monotonic() - t0
        self.assertEqual(err, "method spin: timed out after 2 s")
        self.assertLess(pong_at, 1.0)
        self.assertLess(message_at, done_at)
        self.assertGreater(done_at, 1.9)

    def test_pattern_matching_bomb_blocks_only_while_in_c(self):
        # Backtracking inside string.find runs in C, where no hook fires
        # (README: a single C call cannot be interrupted). Once it returns,
        # the server serves everyone again, and the method's next Lua
        # instructions count against its timeout.
        srv = self.start(self.folder(
            bomb="return function() (('a'):rep(200)):find('.-.-.-b') "
                 "while true do end end\n"))
        caller = srv.wire("Vanessa")
        other = srv.wire("Marc")
        caller.send({"type": "call", "id": 1, "method": "bomb", "args": []})
        time.sleep(0.2)
        other.send({"type": "ping"})
        other.recv_type("pong", timeout=30)
        frame = self.result(caller, 1, timeout=30)
        self.assertIn("timed out", self.failed(frame))
        self.assertEqual(srv.lua("print(1 + 1)").strip(), "2")

    def test_memory_bomb(self):
        limit = 64 * 1024 * 1024
        srv = self.start(self.folder(
            bomb="""
return function()
  local t = {}
  for i = 1, 1e9 do t[i] = string.rep("x", 1024) .. i end
  return #t
end
""",
            big='return function() return #string.rep("x", 100 * 1024 * '
                '1024) end\n',
            ok='return function() return "still here" end\n'),
            # Time enough that memory runs out first, even under ASan or
            # valgrind.
            config=FAST + "lua_memory_limit = 64 * 1024 * 1024\n"
            "method_timeout = 30\n")
        w = srv.wire("Vanessa")
        for i, name in enumerate(("bomb", "big"), start=1):
            with self.subTest(method=name):
                err = self.failed(self.call(w, name, id=i, timeout=10))
                self.assertIn("memory", err)
                self.assertIn(f"method {name}", err)
        self.assertEqual(self.ok(self.call(w, "ok", id=3)), "still here")
        other = srv.wire("Marc")
        self.assertEqual(self.ok(self.call(other, "ok", id=4)), "still here")
        used = float(srv.lua('print(collectgarbage("count") * 1024)'))
        self.assertLess(used, limit / 4)


class HotReload(MethodsTest):
    def test_changed_file_is_reloaded_and_broken_one_is_not_served(self):
        d = self.folder()
        self.write(d, "hot", 'return function() return "one" end\n')
        srv = self.start(d)
        w = srv.wire("Vanessa")
        self.assertEqual(self.ok(self.call(w, "hot", id=1)), "one")
        self.assertEqual(self.ok(self.call(w, "hot", id=2)), "one")
        self.write(d, "hot", 'return function() return "two" end\n', bump=10)
        self.assertEqual(self.ok(self.call(w, "hot", id=3)), "two")
        self.write(d, "hot", 'return function()\n  return "three" +\nend\n',
                   bump=20)
        err = self.failed(self.call(w, "hot", id=4))
        self.assertIn("methods/hot.lua:3:", err)
        err = self.failed(self.call(w, "hot", id=5))  # still not "two"
        self.assertIn("methods/hot.lua:3:", err)
        self.write(d, "hot", "return 7\n", bump=30)
        self.assertIn("must return a function",
                      self.failed(self.call(w, "hot", id=6)))
        self.write(d, "hot", 'return function() return "four" end\n',
                   bump=40)
        self.assertEqual(self.ok(self.call(w, "hot", id=7)), "four")
        os.remove(os.path.join(d, "methods", "hot.lua"))
        self.assertIn("unknown method", self.failed(self.call(w, "hot",
                                                              id=8)))
        self.assertEqual(srv.proc.poll(), None)  # never restarted

    def test_same_size_rewrite_within_the_same_second_is_seen(self):
        d = self.folder()
        path = self.write(d, "hot", 'return function() return "aaa" end\n')
        srv = self.start(d)
        w = srv.wire("Vanessa")
        self.assertEqual(self.ok(self.call(w, "hot", id=1)), "aaa")
        st = os.stat(path)
        self.write(d, "hot", 'return function() return "bbb" end\n')
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
        self.assertEqual(self.ok(self.call(w, "hot", id=2)), "bbb")


class Concurrency(MethodsTest):
    def test_two_slow_calls_run_at_once(self):
        srv = self.start(self.folder(
            slow="return function(x) delay_process(1) return x end\n"))
        a, b = srv.wire("Vanessa"), srv.wire("Marc")
        results = {}

        def run(w, name):
            results[name] = self.call(w, "slow", name, timeout=10)

        threads = [threading.Thread(target=run, args=(a, "a")),
                   threading.Thread(target=run, args=(b, "b"))]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        elapsed = time.monotonic() - t0
        self.assertEqual(self.ok(results["a"]), "a")
        self.assertEqual(self.ok(results["b"]), "b")
        self.assertGreater(elapsed, 0.95)
        self.assertLess(elapsed, 1.6)

    def test_one_client_two_calls_in_flight(self):
        srv = self.start(self.folder(
            slow="return function(x) delay_process(1) return x end\n"))
        w = srv.wire("Vanessa")
        t0 = time.monotonic()
        w.send({"type": "call", "id": 1, "method": "slow", "args": [1]})
        w.send({"type": "call", "id": 2, "method": "slow", "args": [2]})
        got = {}
        for _ in range(2):
            frame = w.recv_type("result", timeout=5)
            got[frame["id"]] = self.ok(frame)
        elapsed = time.monotonic() - t0
        self.assertEqual(got, {1: 1, 2: 2})
        self.assertLess(elapsed, 1.6)

    def test_pipelined_calls_of_busy_clients_are_answered_in_order(self):
        # Several clients each write many calls at once, so that the
        # server reads more than one connection per loop turn and holds
        # its replies until the turn's reading is done (conn_send_soon).
        # Every reply comes, each client's in the order of its calls, and
        # a message sent meanwhile by one of the calls is not lost.
        srv = self.start(self.folder(
            echo=ECHO,
            shout="return function(x) send_message_to_remote_user(x) "
                  "return x end\n"), config=FAST +
            "max_calls_per_session = 100\n")
        wires = [srv.wire("user%d" % i) for i in range(6)]
        per = 40
        for k, w in enumerate(wires):
            frames = b"".join(
                (json.dumps({"type": "call", "id": i, "method":
                             "shout" if (k, i) == (0, 20) else "echo",
                             "args": ["%d-%d" % (k, i)]}) + "\n").encode()
                for i in range(1, per + 1))
            w.send_raw(frames)
        for k, w in enumerate(wires):
            ids, messages = [], []
            while len(ids) < per or len(messages) < 1:
                frame = w.recv(timeout=10)
                if frame["type"] == "result":
                    self.assertEqual(self.ok(frame), "%d-%d" % (k, frame["id"]))
                    ids.append(frame["id"])
                elif frame["type"] == "message":
                    messages.append(frame["text"])
            self.assertEqual(ids, list(range(1, per + 1)))
            self.assertEqual(messages, ["0-20"])

    def test_a_call_and_a_bye_in_one_packet_get_the_result_first(self):
        # While other clients keep the server busy its replies wait for
        # the end of the turn; a bye read meanwhile ends the session, and
        # the waiting result must still go out before the connection ends.
        srv = self.start(self.folder(echo=ECHO))
        others = [srv.wire("user%d" % i) for i in range(4)]
        burst = b"".join(
            (json.dumps({"type": "call", "id": i, "method": "echo",
                         "args": [i]}) + "\n").encode() for i in range(1, 30))
        for round_ in range(15):
            w = srv.wire("leaver%d" % round_)
            for o in others:
                o.send_raw(burst)
            w.send_raw((json.dumps({"type": "call", "id": 7, "method": "echo",
                                    "args": [round_]}) + "\n" +
                        json.dumps({"type": "bye"}) + "\n").encode())
            frames = []
            while (frame := w.recv(timeout=10)) is not None:
                frames.append(frame)
            self.assertIn({"type": "result", "id": 7, "ok": True,
                           "value": round_}, frames)
            for o in others:
                for _ in range(1, 30):
                    o.recv_type("result", timeout=10)

    def test_a_client_gone_with_replies_waiting_harms_no_one(self):
        # Its replies wait for the end of the turn; it closes before they
        # can be written. The others are answered, the server lives on.
        srv = self.start(self.folder(echo=ECHO))
        others = [srv.wire("user%d" % i) for i in range(4)]
        for round_ in range(20):
            gone = srv.wire("gone%d" % round_)
            burst = b"".join(
                (json.dumps({"type": "call", "id": i, "method": "echo",
                             "args": [i]}) + "\n").encode()
                for i in range(1, 30))
            for w in others:
                w.send_raw(burst)
            gone.send_raw(burst)
            gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 b"\x01\x00\x00\x00\x00\x00\x00\x00")
            gone.close()
            for w in others:
                got = [w.recv_type("result", timeout=10)["id"]
                       for _ in range(1, 30)]
                self.assertEqual(got, list(range(1, 30)))
        self.assertEqual(self.ok(self.call(others[0], "echo", "alive",
                                           id=99)), "alive")


class RepositoryMethods(MethodsTest):
    """scripts/methods of the repository, the harness's default folder."""

    def test_whoami(self):
        srv = self.server()
        r = srv.cli("call", "--user", "Bob", "whoami")
        self.assertEqual(r.returncode, 0, r.stderr)
        me = json.loads(r.stdout)
        self.assertEqual(me["userName"], "Bob")
        self.assertRegex(me["ID"], r"^[0-9A-F]{32}$")
        self.assertEqual(me["state"], "active")

    def test_broadcast(self):
        srv = self.server()
        w = srv.wire("Ann")
        r = srv.cli("call", "broadcast", '"hi"')
        self.assertEqual(r.returncode, 0, r.stderr)
        # The wire client and the caller's own session.
        self.assertEqual(json.loads(r.stdout), 2)
        self.assertEqual(w.recv_type("message")["text"], "hi")

    def test_failed_call_exits_1_with_the_error_on_stderr(self):
        srv = self.server()
        r = srv.cli("call", "broadcast", "5")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("broadcast: text must be a string, got number",
                      r.stderr)
        self.assertTrue(r.stderr.startswith("herald: "), r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_argument_that_is_not_json_exits_2(self):
        srv = self.server()
        w = srv.wire("Ann")
        for arg in ("{not json", "hi", "'x'", "[1,"):
            with self.subTest(arg=arg):
                r = srv.cli("call", "broadcast", arg)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("not valid JSON", r.stderr)
                self.assertEqual(r.stdout, "")
        # Nothing was called: no message reached the wire client.
        out = srv.lua('print(select(2, send_message_to_remote_user("p")))')
        self.assertEqual(out.strip(), "1")
