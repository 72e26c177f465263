"""WebSocket and HTTP from the outside (protocol.md, "WebSocket" and
"HTTP"): the real build/herald with its browser side on a free port, a raw
HTTP/1.1 client and a raw RFC 6455 client (wsraw.py) that can send any
frame, broken ones included.

  1. HTTP: the pages, the static files, HEAD, the headers every answer
     carries, 404, 405, 413, 408 (slow and idle clients), 400 and 403 for a
     bad or cross-site upgrade.
  2. A WebSocket session is a session like a TCP one: hello, welcome,
     listing, max_sessions, messages and acks, calls, resume (also across
     transports and after a restart), drop, bye, the hello deadline and
     the refusals.
  3. Frames: fragments, control frames, close codes, binary, unmasked,
     reserved bits, unknown opcodes, bad UTF-8, max_frame, bad JSON.
  4. Load and hostility: slow consumers, 200 clients at once, TLS (https,
     wss, plaintext on the TLS port).

In each hostile case a BYSTANDER pair, a TCP session and a WebSocket
session greeted before it, must still get its pong and its message
promptly."""
import base64
import json
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import wsraw
from harness import (HERALD, SLOW, HeraldTest, Wire, add_user, message_status,
                     states, wait_until)
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                   UpgradeRefused, WsClosed, WsConn)

HANDSHAKE = 1.0
MAX_FRAME = 1024
# A short handshake timeout keeps the deadline cases fast; the heartbeat
# stays long so that no ping comes between the frames the tests read.
CONFIG = (f"handshake_timeout = {HANDSHAKE}\nheartbeat = 30\n"
          f"max_frame = {MAX_FRAME}\n")
# How long a bystander may wait for its pong or its message.
PROMPT = 2.0 * SLOW
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; "
       "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
WEB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "web")
HEX32 = r"^[0-9A-F]{32}$"
NO_CLOSE = "no close frame"


def web_file(name):
    with open(os.path.join(WEB, name), "rb") as f:
        return f.read()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(port, key, path="/ws", extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n").encode()


def finish_upgrade(sock, key, timeout=5):
    """Reads the answer to an upgrade sent by hand on sock: a WsConn, or
    AssertionError when it is not a right 101."""
    deadline = time.monotonic() + timeout * SLOW
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no upgrade answer in time: {buf[:300]!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed in the upgrade: {buf[:300]!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status, headers = wsraw._parse_head(head)
    if status != 101 or \
            headers.get("sec-websocket-accept") != wsraw.accept_for(key):
        raise AssertionError(f"bad upgrade answer: {status} {headers}")
    return WsConn(sock, rest, status, headers)


def until_close(c, timeout=5):
    """Every text message (decoded JSON) c gets until the server's close
    frame, and that frame's code (None for a close without one; NO_CLOSE
    when the connection just ended). The close is answered. Fails when
    neither comes in time."""
    deadline = time.monotonic() + timeout * SLOW
    messages = []
    while True:
        left = max(0.0, deadline - time.monotonic()) / SLOW
        try:
            f = c.recv_frame(left)
        except TimeoutError:
            raise AssertionError(f"no close within {timeout} s; got "
                                 f"{messages}") from None
        if f is None:
            return messages, NO_CLOSE
        if f.opcode == OP_TEXT:
            messages.append(json.loads(f.payload))
        elif f.opcode == OP_PING:
            pass
        elif f.opcode == OP_CLOSE:
            if not c.close_sent:
                try:
                    c.send_close(c.close_received[0]
                                 if c.close_received[0] not in
                                 (None, 1005, 1006, 1015) else None)
                except OSError:
                    pass
            return messages, c.close_received[0]


def read_all(sock, timeout):
    """What sock receives until the server closes it (b"" for nothing);
    None when it is still open after timeout seconds (scaled)."""
    deadline = time.monotonic() + timeout * SLOW
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return data
        except ssl.SSLError:
            return data
        if not chunk:
            return data
        data += chunk


def lua_str(text):
    """A Lua string literal for text (ASCII)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TlsWire(Wire):
    """A raw protocol connection over TLS, trusting ca."""

    def __init__(self, port, ca, timeout=5):
        ctx = ssl.create_default_context(cafile=ca)
        raw = socket.create_connection(("127.0.0.1", port),
                                       timeout=timeout * SLOW)
        self.sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""


class WsTest(HeraldTest):
    """Base: a server with its browser side, WebSocket sessions, and the
    bystanders."""

    def start(self, config=CONFIG, **kw):
        return self.server(config=config, http=True, **kw)

    def ws(self, srv, **kw):
        c = wsraw.connect(srv.http_port, **kw)
        self.addCleanup(c.close)
        return c

    def hello(self, c, user="web", **fields):
        frame = {"type": "hello", "userName": user, "protocol": 1,
                 "hostType": "browser"}
        frame.update(fields)
        c.send_json(frame)
        return c.recv_json()

    def ws_session(self, srv, user="web", connect=None, **fields):
        """A WebSocket greeted as user: c.welcome, c.sid, c.token."""
        c = self.ws(srv, **(connect or {}))
        welcome = self.hello(c, user, **fields)
        self.assertEqual(welcome.get("type"), "welcome", welcome)
        c.welcome = welcome
        c.sid = welcome["sessionID"]
        c.token = welcome["resumeToken"]
        return c

    def tcp_session(self, srv, user="tcp", **fields):
        w = srv.wire(user, **fields)
        w.sid = w.welcome["sessionID"]
        w.token = w.welcome["resumeToken"]
        return w

    # the bystanders

    def bystanders(self, srv, tls_ca=None):
        """(TCP session, WebSocket session), greeted now."""
        if tls_ca is None:
            tcp = self.tcp_session(srv, "tcp-bystander")
        else:
            tcp = TlsWire(srv.port, tls_ca)
            srv.wires.append(tcp)
            tcp.welcome = tcp.hello("tcp-bystander")
            self.assertEqual(tcp.welcome["type"], "welcome", tcp.welcome)
            tcp.sid = tcp.welcome["sessionID"]
        ws = self.ws_session(srv, "ws-bystander",
                             connect={"tls_ca": tls_ca} if tls_ca else None)
        return tcp, ws

    def tcp_pong(self, w, what):
        sent = time.monotonic()
        w.send({"type": "ping"})
        try:
            w.recv_type("pong", timeout=PROMPT / SLOW + 5)
        except (socket.timeout, AssertionError, OSError) as e:
            self.fail(f"{what}: the TCP bystander got no pong: {e}")
        rtt = time.monotonic() - sent
        self.assertLess(rtt, PROMPT, f"{what}: the TCP bystander's pong "
                                     f"took {rtt:.2f} s")

    def ws_pong(self, c, what):
        sent = time.monotonic()
        c.send_json({"type": "ping"})
        try:
            c.recv_type("pong", timeout=PROMPT / SLOW + 5)
        except (TimeoutError, WsClosed, OSError) as e:
            self.fail(f"{what}: the WebSocket bystander got no pong: {e}")
        rtt = time.monotonic() - sent
        self.assertLess(rtt, PROMPT, f"{what}: the WebSocket bystander's "
                                     f"pong took {rtt:.2f} s")

    def assert_served(self, srv, tcp, ws, what):
        """Both bystanders get their pong, then a message from `herald run`
        (each its own), within PROMPT; the messages are acknowledged."""
        self.tcp_pong(tcp, what)
        self.ws_pong(ws, what)
        text = f"to the bystanders after {what}"
        out = srv.lua(f"""
local n1, a = send_message_to_remote_user({lua_str(text)}, "{tcp.sid}")
local n2, b = send_message_to_remote_user({lua_str(text)}, "{ws.sid}")
print(n1, a, n2, b)""").split()
        sent = time.monotonic()
        self.assertEqual((out[0], out[2]), ("1", "1"),
                         f"{what}: a bystander is gone: {out}")
        try:
            m = tcp.recv_type("message", timeout=PROMPT / SLOW + 5)
        except (socket.timeout, AssertionError, OSError) as e:
            self.fail(f"{what}: no message for the TCP bystander: {e}")
        self.assertEqual((m["id"], m["text"]), (int(out[1]), text))
        tcp.send({"type": "ack", "id": m["id"]})
        try:
            m = ws.recv_type("message", timeout=PROMPT / SLOW + 5)
        except (TimeoutError, WsClosed, OSError) as e:
            self.fail(f"{what}: no message for the WebSocket bystander: {e}")
        self.assertEqual((m["id"], m["text"]), (int(out[3]), text))
        ws.send_json({"type": "ack", "id": m["id"]})
        took = time.monotonic() - sent
        self.assertLess(took, PROMPT, f"{what}: the bystanders' messages "
                                      f"took {took:.2f} s")

    # sessions

    def session_row(self, srv, sid):
        """(userName, machineName, systemUserName, IPAddress, hostType,
        state) of session sid, None when it is not listed."""
        out = srv.lua(f"""
local a = get_process_activity("{sid}")
if a == nil or a.sessions[1] == nil then print("none") return end
local s = a.sessions[1]
print(s.userName, s.machineName, s.systemUserName, s.IPAddress,
      s.hostType, s.state)""")
        if out.strip() == "none":
            return None
        return tuple(out.rstrip("\n").split("\t"))

    def assert_postponed(self, srv, sid, what=""):
        wait_until(lambda: states(srv).get(sid, (None, None))[1]
                   == "postponed", 5, what=f"{what}: session {sid} "
                                           "postponed")

    def assert_ended(self, srv, sid, token, what=""):
        """Session sid is gone for good: not listed, and a resume with its
        token gets unauthorized."""
        wait_until(lambda: sid not in states(srv), 5,
                   what=f"{what}: session {sid} gone")
        ca = getattr(srv, "tls_ca", None)
        w = srv.wire() if ca is None else TlsWire(srv.port, ca)
        answer = w.hello("again", resume={"sessionID": sid, "token": token})
        self.assertEqual((answer or {}).get("code"), "unauthorized",
                         f"{what}: a resume of the ended session got "
                         f"{answer}")
        w.close()

    def assert_close(self, c, code, what=""):
        """The server closes c with code, and no text message before."""
        messages, got = until_close(c)
        self.assertEqual(got, code, f"{what}: close code (messages before: "
                                    f"{messages})")
        self.assertEqual(messages, [], f"{what}: messages before the close")
        self.assertTrue(c.closed_by_server(5), f"{what}: the connection "
                                               "stays open after the close")

    def resume_ws(self, srv, sid, token, user="again", connect=None):
        c = self.ws(srv, **(connect or {}))
        welcome = self.hello(c, user, resume={"sessionID": sid,
                                              "token": token})
        self.assertEqual(welcome.get("type"), "welcome", welcome)
        self.assertEqual((welcome["sessionID"], welcome["resumeToken"]),
                         (sid.upper(), token))
        c.welcome, c.sid, c.token = welcome, sid.upper(), token
        return c


# --- 1. HTTP -----------------------------------------------------------------

class Http(WsTest):
    """The pages, the static files, and what any other request gets."""

    def assert_common(self, r, what):
        """The headers every answer carries, and Connection: close."""
        h = r.headers
        self.assertEqual(h.get("content-security-policy"), CSP, what)
        self.assertEqual(h.get("x-content-type-options"), "nosniff", what)
        self.assertEqual(h.get("referrer-policy"), "no-referrer", what)
        self.assertEqual(h.get("connection", "").lower(), "close", what)

    def get(self, srv, path, **kw):
        r = wsraw.http_get(srv.http_port, path, **kw)
        self.assert_common(r, f"{kw.get('method', 'GET')} {path}")
        return r

    def test_pages_and_static_files(self):
        srv = self.start()
        for path, name in (("/", "index.html"), ("/admin", "admin.html"),
                           ("/?user=vanessa", "index.html")):
            r = self.get(srv, path)
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.headers["content-type"].split(";")[0].strip(),
                             "text/html", path)
            self.assertEqual(r.headers.get("cache-control"), "no-cache", path)
            self.assertEqual(r.body, web_file(name), path)
            self.assertEqual(int(r.headers["content-length"]), len(r.body))
        for name, ctype in (("user.js", "text/javascript"),
                            ("admin.js", "text/javascript"),
                            ("style.css", "text/css"),
                            ("admin.css", "text/css")):
            path = "/static/" + name
            r = self.get(srv, path)
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.headers["content-type"].split(";")[0].strip(),
                             ctype, path)
            self.assertEqual(r.headers.get("cache-control"), "max-age=3600",
                             path)
            self.assertEqual(r.body, web_file(name), path)
            self.assertEqual(int(r.headers["content-length"]), len(r.body))
        # The pages name their own scripts and styles.
        self.assertIn(b"/static/user.js", self.get(srv, "/").body)
        self.assertIn(b"/static/admin.js", self.get(srv, "/admin").body)

    def test_head_has_no_body_and_the_length_of_get(self):
        srv = self.start()
        for path in ("/", "/admin", "/static/user.js", "/static/style.css"):
            full = self.get(srv, path)
            r = self.get(srv, path, method="HEAD")
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.body, b"", path)
            self.assertEqual(int(r.headers["content-length"]),
                             len(full.body), path)
            self.assertEqual(r.headers["content-type"],
                             full.headers["content-type"], path)
            self.assertEqual(r.headers["cache-control"],
                             full.headers["cache-control"], path)
        r = self.get(srv, "/nope", method="HEAD")
        self.assertEqual((r.status, r.body), (404, b""))

    def test_unknown_paths_and_escapes_are_404(self):
        srv = self.start()
        for path in ("/nope", "/static/../x", "/static/index.html",
                     "/static/admin.html", "/static/nope.js", "/static/",
                     "/static", "/static//user.js", "/static/./user.js",
                     "/static/../static/user.js", "/static/%2e%2e/x",
                     "/static/..%2fuser.js", "/STATIC/user.js",
                     "/static/user.js/", "/static/user.js%00.css",
                     "/admin/", "/wss", "/ws/x", "/../../etc/passwd",
                     "/static/../../../../etc/passwd", "/favicon.ico"):
            with self.subTest(path=path):
                r = self.get(srv, path)
                self.assertEqual(r.status, 404, path)
                self.assertNotIn(b"<html", r.body.lower())
                self.assertNotIn(b"root:", r.body)

    def test_other_methods_are_405_with_allow(self):
        srv = self.start()
        for method, path in (("POST", "/"), ("PUT", "/"), ("DELETE", "/"),
                             ("PATCH", "/admin"), ("OPTIONS", "/"),
                             ("POST", "/ws"), ("PUT", "/static/user.js")):
            with self.subTest(method=method, path=path):
                r = self.get(srv, path, method=method)
                self.assertEqual(r.status, 405)
                allowed = {m.strip() for m in
                           r.headers.get("allow", "").split(",")}
                self.assertEqual(allowed, {"GET", "HEAD"})
        # With a body, too (which of the two refusals comes first is not
        # said).
        r = self.get(srv, "/", method="POST", body=b"a=1")
        self.assertIn(r.status, (405, 413))

    def test_a_body_or_a_big_head_is_413(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        port = srv.http_port
        r = self.get(srv, "/", body=b"abc")
        self.assertEqual(r.status, 413)
        r = self.get(srv, "/ws", body=b"x" * 100)
        self.assertEqual(r.status, 413)
        # A chunked body.
        raw = (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        r = wsraw.http_get(port, raw=raw.encode())
        self.assertEqual(r.status, 413)
        self.assert_common(r, "chunked")
        # A head over 8 KiB, in one piece...
        r = self.get(srv, "/", headers={"X-Pad": "a" * 9000})
        self.assertEqual(r.status, 413)
        # ... in many headers ...
        r = self.get(srv, "/", headers={f"X-Pad-{i}": "b" * 90
                                         for i in range(100)})
        self.assertEqual(r.status, 413)
        # ... and dribbled, 1 KiB at a time: answered without waiting for
        # the end of a head that may never end.
        s = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
        try:
            s.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      .encode())
            data = None
            for i in range(12):
                try:
                    s.sendall(f"X-Pad-{i}: {'c' * 1000}\r\n".encode())
                except (BrokenPipeError, ConnectionResetError):
                    break
                time.sleep(0.02)
            data = read_all(s, 3)
        finally:
            s.close()
        self.assertIsNotNone(data, "a head over 8 KiB that never ends: "
                                   "the connection stays open")
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data[:200])
        # A head just under the limit is fine.
        r = self.get(srv, "/", headers={"X-Pad": "d" * 7000})
        self.assertEqual(r.status, 200)
        self.assert_served(srv, tcp, ws, "413")

    def test_a_request_that_never_completes_gets_408(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        port = srv.http_port
        started = time.monotonic()
        partial = socket.create_connection(("127.0.0.1", port))
        partial.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        .encode())
        upgrade = socket.create_connection(("127.0.0.1", port))
        upgrade.sendall(upgrade_request(port, new_key())[:-2])
        idle = [socket.create_connection(("127.0.0.1", port))
                for _ in range(50)]
        try:
            # Meanwhile everyone else is served, the pages included.
            self.assert_served(srv, tcp, ws, "slow requests")
            r = wsraw.http_get(port, "/")
            self.assertEqual(r.status, 200)
            c = self.ws_session(srv, "meanwhile")
            self.ws_pong(c, "slow requests")
            for s, what in ((partial, "partial request"),
                            (upgrade, "partial upgrade")):
                data = read_all(s, HANDSHAKE + 5)
                self.assertIsNotNone(data, f"{what}: still open")
                self.assertTrue(data.startswith(b"HTTP/1.1 408 "),
                                f"{what}: {data[:200]!r}")
                status, headers = wsraw._parse_head(
                    data.partition(b"\r\n\r\n")[0])
                self.assertEqual(headers.get("content-security-policy"), CSP)
            self.assertGreater(time.monotonic() - started, HANDSHAKE * 0.9)
            for s in idle:
                data = read_all(s, 5)
                self.assertIsNotNone(data, "an idle connection stays open")
                self.assertTrue(data == b"" or
                                data.startswith(b"HTTP/1.1 408 "), data)
        finally:
            for s in [partial, upgrade] + idle:
                s.close()
        self.assert_served(srv, tcp, ws, "slow requests (after)")

    def test_a_dribbled_request_is_not_kept_alive_by_its_bytes(self):
        # Slowloris: a byte every 0.1 s never ends the head; the deadline
        # counts from the connection, not from the last byte.
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        port = srv.http_port
        s = socket.create_connection(("127.0.0.1", port))
        started = time.monotonic()
        header = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode() + \
            b"X-Slow: " + b"z" * 10000
        data = b""
        closed_at = None
        try:
            for i in range(len(header)):
                ready, _, _ = select.select([s], [], [], 0.1)
                if ready:
                    data = read_all(s, 2) or b""
                    closed_at = time.monotonic()
                    break
                try:
                    s.sendall(header[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed_at = time.monotonic()
                    break
                if time.monotonic() - started > HANDSHAKE + 4 * SLOW:
                    break
                if i % 10 == 5:
                    self.tcp_pong(tcp, "slowloris")
        finally:
            s.close()
        self.assertIsNotNone(closed_at, "the dribbled request was never "
                                        "answered")
        self.assertLess(closed_at - started, HANDSHAKE + 3 * SLOW)
        self.assertTrue(data.startswith(b"HTTP/1.1 408 "), data[:200])
        self.assert_served(srv, tcp, ws, "slowloris")


# --- the upgrade -------------------------------------------------------------

class Upgrade(WsTest):
    """GET /ws: what makes a valid upgrade, and Origin."""

    def refused(self, srv, status, what, **kw):
        with self.assertRaises(UpgradeRefused, msg=what) as cm:
            self.ws(srv, **kw)
        self.assertEqual(cm.exception.status, status, what)
        h = cm.exception.headers
        self.assertEqual(h.get("content-security-policy"), CSP, what)
        self.assertEqual(h.get("x-content-type-options"), "nosniff", what)
        self.assertEqual(h.get("connection", "").lower(), "close", what)
        return cm.exception

    def test_no_origin_same_origin_and_browser_variants_are_101(self):
        srv = self.start()
        port = srv.http_port
        for what, kw in (
                ("no Origin", {}),
                ("same origin", {"origin": f"http://127.0.0.1:{port}"}),
                ("Firefox's Connection", {"headers": {
                    "Connection": "keep-alive, Upgrade",
                    "Origin": f"http://127.0.0.1:{port}"}}),
                ("any case", {"headers": {"Upgrade": "WebSocket",
                                          "Connection": "upgrade"}}),
                ("extra headers", {"headers": {
                    "Sec-WebSocket-Extensions": "permessage-deflate; "
                                                "client_max_window_bits",
                    "Sec-WebSocket-Protocol": "chat", "Cookie": "a=b",
                    "User-Agent": "Mozilla/5.0"}}),
                ("query string", {"path": "/ws?x=1"})):
            with self.subTest(what):
                c = self.ws(srv, **kw)
                self.assertEqual(c.status, 101)
                # No extension or subprotocol is agreed to.
                self.assertNotIn("sec-websocket-extensions", c.headers)
                self.assertNotIn("sec-websocket-protocol", c.headers)
                welcome = self.hello(c, what.replace(" ", "-")
                                     .replace("'", ""))
                self.assertEqual(welcome["type"], "welcome", what)
                c.send_json({"type": "bye"})

    def test_hello_in_the_same_packet_as_the_upgrade(self):
        srv = self.start()
        key = new_key()
        s = socket.create_connection(("127.0.0.1", srv.http_port),
                                     timeout=5 * SLOW)
        self.addCleanup(s.close)
        hello = json.dumps({"type": "hello", "userName": "eager",
                            "protocol": 1, "hostType": "browser"})
        s.sendall(upgrade_request(srv.http_port, key)
                  + wsraw.encode_frame(OP_TEXT, hello)
                  + wsraw.encode_frame(OP_TEXT, '{"type":"ping"}'))
        c = finish_upgrade(s, key)
        self.assertEqual(c.recv_json()["type"], "welcome")
        self.assertEqual(c.recv_json(), {"type": "pong"})

    def test_cross_site_origins_are_403(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        port = srv.http_port
        for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}",
                       "null", f"http://127.0.0.1:{port}.evil.example",
                       f"http://evil.example/http://127.0.0.1:{port}",
                       f"http://127.0.0.1:{port}@evil.example",
                       "http://127.0.0.1", "127.0.0.1", "file://"):
            with self.subTest(origin=origin):
                self.refused(srv, 403, origin, origin=origin)
        # The administrators' channel is guarded the same way.
        self.refused(srv, 403, "/admin/ws", path="/admin/ws",
                     origin="http://evil.example")
        # Without a Host to compare with, an Origin is not trusted.
        self.refused(srv, 403, "no Host", origin=f"http://127.0.0.1:{port}",
                     headers={"Host": None})
        self.assertEqual(set(states(srv)), {tcp.sid, ws.sid})
        self.assert_served(srv, tcp, ws, "cross-site upgrades")

    def test_an_upgrade_is_a_get_over_http_1_1(self):
        # RFC 6455 4.2.1: the opening handshake is "an HTTP/1.1 or higher
        # GET request"; anything else is not a valid upgrade (400), and a
        # HEAD, which asks only for the head of an answer, must not switch
        # protocols.
        srv = self.start()
        port = srv.http_port
        key = new_key()
        good = upgrade_request(port, key)
        for what, raw in (("HEAD", b"HEAD" + good[3:]),
                          ("HTTP/1.0", good.replace(b"HTTP/1.1", b"HTTP/1.0",
                                                    1))):
            with self.subTest(what):
                data = wsraw.exchange(port, raw, timeout=HANDSHAKE + 5)
                status, headers = wsraw._parse_head(
                    data.partition(b"\r\n\r\n")[0])
                self.assertEqual(status, 400, f"{what}: {data[:300]!r}")
        self.assertEqual(states(srv), {})

    def test_malformed_requests_get_an_error_and_a_close(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        port = srv.http_port
        for raw in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n",
                    b"get / HTTP/1.1\r\n\r\n",
                    b"GET / HTTP/1.1\r\n: x\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                    b"Content-Length: 2\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                    b"chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
                    # a TLS ClientHello on the plaintext port
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                    + bytes(64),
                    bytes(range(256)) * 12 + b"\r\n\r\n"):
            with self.subTest(raw=raw[:40]):
                data = wsraw.exchange(port, raw, timeout=HANDSHAKE + 5)
                self.assertRegex(data[:13], rb"^HTTP/1\.1 4\d\d ", data[:200])
                self.assertNotIn(b"<html", data.lower())
        self.assert_served(srv, tcp, ws, "malformed requests")

    def test_bad_upgrades_are_400(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        cases = [
            ("no upgrade at all", {"headers": {
                "Upgrade": None, "Connection": None,
                "Sec-WebSocket-Key": None, "Sec-WebSocket-Version": None}}),
            ("no Upgrade header", {"headers": {"Upgrade": None}}),
            ("Upgrade: h2c", {"headers": {"Upgrade": "h2c"}}),
            ("no Connection: Upgrade", {"headers": {
                "Connection": "keep-alive"}}),
            ("version 8", {"headers": {"Sec-WebSocket-Version": "8"}}),
            ("version 14", {"headers": {"Sec-WebSocket-Version": "14"}}),
            ("no version", {"headers": {"Sec-WebSocket-Version": None}}),
            ("no key", {"headers": {"Sec-WebSocket-Key": None}}),
            ("short key", {"key": "abc"}),
            ("15-byte key", {"key": base64.b64encode(b"x" * 15).decode()}),
            ("17-byte key", {"key": base64.b64encode(b"x" * 17).decode()}),
            ("not base64", {"key": "!!!!!!!!!!!!!!!!!!!!!!=="}),
            ("empty key", {"key": "", "headers": {
                "Sec-WebSocket-Key": ""}}),
            ("/admin/ws, no upgrade", {"path": "/admin/ws", "headers": {
                "Upgrade": None, "Connection": None}}),
        ]
        for what, kw in cases:
            with self.subTest(what):
                e = self.refused(srv, 400, what, **kw)
                if what.startswith("version"):
                    # RFC 6455 4.4: the versions the server speaks.
                    self.assertEqual(
                        e.headers.get("sec-websocket-version"), "13")
        # A plain GET of /ws, as a browser's address bar does.
        r = wsraw.http_get(srv.http_port, "/ws")
        self.assertEqual(r.status, 400)
        self.assertEqual(set(states(srv)), {tcp.sid, ws.sid})
        self.assert_served(srv, tcp, ws, "bad upgrades")


# --- 2. sessions over WebSocket ---------------------------------------------

class Sessions(WsTest):
    """A WebSocket session counts, lists and receives like a TCP one."""

    def test_hello_welcome_and_listing(self):
        srv = self.start()
        c = self.ws_session(srv, "vanessa", machineName="Linux x86_64",
                            systemUserName="vanessa")
        w = c.welcome
        self.assertRegex(w["sessionID"], HEX32)
        self.assertRegex(w["resumeToken"], HEX32)
        self.assertEqual(w["heartbeat"], 30)
        self.assertTrue(w["server"].startswith("herald/"), w)
        self.assertNotIn("groups", w)  # a server without users
        srv.wait_log(rf"session {c.sid} opened: vanessa@Linux x86_64 "
                     rf"\(127\.0\.0\.1\)")
        self.assertEqual(self.session_row(srv, c.sid),
                         ("vanessa", "Linux x86_64", "vanessa", "127.0.0.1",
                          "browser", "active"))
        # The server's frames: one unmasked text frame per protocol frame,
        # no trailing newline.
        c.send_json({"type": "ping"})
        f = c.recv_frame()
        self.assertEqual((f.fin, f.opcode), (True, OP_TEXT))
        self.assertEqual(json.loads(f.payload), {"type": "pong"})
        self.assertFalse(f.payload.endswith(b"\n"), f.payload)
        # A trailing newline from the client is tolerated.
        c.send_text('{"type":"ping"}\n')
        self.assertEqual(c.recv_json(), {"type": "pong"})
        # Blanks before the object are allowed, as on TCP.
        c.send_text(' \t{"type":"ping"}')
        self.assertEqual(c.recv_json(), {"type": "pong"})
        # The address is the socket's: headers a client writes do not
        # change it.
        spoof = self.ws_session(srv, "spoofer", connect={"headers": {
            "X-Forwarded-For": "10.1.2.3", "X-Real-IP": "10.9.9.9",
            "Forwarded": "for=10.2.2.2"}})
        self.assertEqual(self.session_row(srv, spoof.sid)[3], "127.0.0.1")
        spoof.send_json({"type": "bye"})
        wait_until(lambda: spoof.sid not in states(srv), 5, what="bye")
        # The hello's other hostTypes are kept as sent.
        d = self.ws_session(srv, "mac-user", hostType="mac")
        self.assertEqual(self.session_row(srv, d.sid)[4], "mac")
        tcp = self.tcp_session(srv, "tcp-user", hostType="linux")
        rows = states(srv)
        self.assertEqual(set(rows), {c.sid, d.sid, tcp.sid})

    def test_refusals_are_as_on_tcp(self):
        srv = self.start()
        for hello, code in (
                ({"type": "hello", "protocol": 1}, "bad_hello"),
                ({"type": "hello", "userName": "x", "hostType": "amiga"},
                 "bad_hello"),
                ({"type": "hello", "userName": "x", "protocol": 2},
                 "version"),
                ({"type": "hello", "userName": "x", "password": "p"},
                 "unauthorized"),
                ({"type": "hello", "userName": "x",
                  "resume": {"sessionID": "0" * 32, "token": "0" * 32}},
                 "unauthorized"),
                ({"type": "Hello", "userName": "x"}, "hello_required"),
                ({"type": "ping"}, "hello_required")):
            with self.subTest(hello=hello):
                c = self.ws(srv)
                c.send_json(hello)
                messages, close = until_close(c)
                self.assertEqual(len(messages), 1, messages)
                self.assertEqual(messages[0]["type"], "error")
                self.assertEqual(messages[0]["code"], code, messages)
                self.assertEqual(close, 1000)
                self.assertTrue(c.closed_by_server(5))
        self.assertEqual(states(srv), {})

    def test_no_hello_after_the_upgrade_is_a_timeout(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        c = self.ws(srv)
        upgraded = time.monotonic()
        messages, close = until_close(c, timeout=HANDSHAKE + 5)
        took = time.monotonic() - upgraded
        self.assertEqual([m.get("code") for m in messages], ["timeout"],
                         messages)
        self.assertEqual(messages[0]["type"], "error")
        self.assertEqual(close, 1000)
        self.assertTrue(c.closed_by_server(5))
        self.assertGreater(took, HANDSHAKE * 0.8)
        self.assertLess(took, HANDSHAKE + 3 * SLOW)
        # The deadline counts from the upgrade: an upgrade sent late in the
        # request's own window still has a whole handshake_timeout.
        # A crowd of upgraded connections that never say hello: each gets
        # its timeout, the bystanders are served meanwhile.
        crowd = [self.ws(srv) for _ in range(50)]
        self.assert_served(srv, tcp, ws, "50 silent upgrades")
        for q in crowd:
            messages, close = until_close(q, timeout=HANDSHAKE + 5)
            self.assertEqual([m.get("code") for m in messages], ["timeout"])
            self.assertEqual(close, 1000)
        self.assert_served(srv, tcp, ws, "the hello timeout")

    def test_the_hello_deadline_counts_from_the_upgrade(self):
        # An upgrade that comes late in the request's window still has a
        # whole handshake_timeout for its hello: 0.7 of it for the
        # request, 0.7 for the hello (more than the timeout, and more than
        # the server's tick of a quarter of it, since the connection).
        timeout = 2.0
        srv = self.start(f"handshake_timeout = {timeout}\n")
        s = socket.create_connection(("127.0.0.1", srv.http_port))
        self.addCleanup(s.close)
        key = new_key()
        req = upgrade_request(srv.http_port, key)
        s.sendall(req[:20])
        time.sleep(timeout * 0.7)
        s.sendall(req[20:])
        late = finish_upgrade(s, key)
        time.sleep(timeout * 0.7)
        self.assertEqual(self.hello(late, "late")["type"], "welcome")

    def test_rejecting_refuses_new_ws_sessions_but_not_resumes(self):
        srv = self.start()
        a = self.ws_session(srv, "early")
        srv.lua("reject_new_remote_connections(true)")
        c = self.ws(srv)
        c.send_json({"type": "hello", "userName": "late", "protocol": 1,
                     "hostType": "browser"})
        messages, close = until_close(c)
        self.assertEqual([m.get("code") for m in messages], ["rejected"])
        self.assertEqual(close, 1000)
        a.close()
        self.assert_postponed(srv, a.sid)
        b = self.resume_ws(srv, a.sid, a.token)
        b.send_json({"type": "ping"})
        self.assertEqual(b.recv_json(), {"type": "pong"})
        srv.lua("reject_new_remote_connections(false)")
        self.ws_session(srv, "later")

    def test_heartbeat_over_websocket(self):
        # The server's pings are this protocol's; a client that only sends
        # WebSocket pings is not heard, and is lost after three heartbeats.
        hb = 0.3
        srv = self.start(f"handshake_timeout = {HANDSHAKE}\n"
                         f"heartbeat = {hb}\n")
        a = self.ws_session(srv, "answers")
        self.assertEqual(a.welcome["heartbeat"], hb)
        b = self.ws_session(srv, "websocket-pings-only")
        deadline = time.monotonic() + 3 * hb + 4 * SLOW
        pings = 0
        lost = False
        while time.monotonic() < deadline:
            try:
                b.send_ping(b"still there?")
            except OSError:
                pass
            try:
                f = a.recv_json(0.1)
                if f == {"type": "ping"}:
                    pings += 1
                    a.send_json({"type": "pong"})
            except TimeoutError:
                pass
            if states(srv).get(b.sid, (None, None))[1] == "postponed":
                lost = True
                break
        self.assertTrue(lost, "a client that answers no ping is still "
                              "connected")
        srv.wait_log(rf"session {b.sid} \(websocket-pings-only\): no answer "
                     r"to ping")
        self.assertTrue(b.closed_by_server(5))
        self.assertGreaterEqual(pings, 1, "no ping for the live client")
        self.assertEqual(states(srv)[a.sid], ("answers", "active"))
        a.send_json({"type": "ping"})
        self.assertEqual(a.recv_type("pong"), {"type": "pong"})

    def test_counts_toward_max_sessions(self):
        srv = self.start(CONFIG + "max_sessions = 2\n")
        a = self.ws_session(srv, "a")
        b = self.tcp_session(srv, "b")
        c = self.ws(srv)
        c.send_json({"type": "hello", "userName": "c", "protocol": 1,
                     "hostType": "browser"})
        messages, close = until_close(c)
        self.assertEqual([m.get("code") for m in messages], ["busy"])
        self.assertEqual(close, 1000)
        w = srv.wire()
        self.assertEqual(w.hello("d")["code"], "busy")
        # Two WebSocket sessions fill it as well.
        b.send({"type": "bye"})
        wait_until(lambda: b.sid not in states(srv), 5, what="b gone")
        e = self.ws_session(srv, "e")
        w = srv.wire()
        self.assertEqual(w.hello("f")["code"], "busy")
        # A WebSocket session whose socket drops is postponed; a newcomer
        # ends it to make room.
        a.close()
        self.assert_postponed(srv, a.sid)
        g = self.tcp_session(srv, "g")
        srv.wait_log(rf"session {a.sid} \(a\) ended to make room")
        self.assertEqual(set(states(srv)), {e.sid, g.sid})

    def test_broadcast_reaches_ws_and_tcp_with_one_id_and_acks_count(self):
        srv = self.start()
        tcp = self.tcp_session(srv, "tcp")
        one = self.ws_session(srv, "one")
        two = self.ws_session(srv, "two")
        r = srv.run_script('print(send_message_to_remote_user("to all"))')
        self.assertEqual(r.returncode, 0, r.stderr)
        count, msg_id = (int(x) for x in r.stdout.split())
        self.assertEqual(count, 3)
        got = [tcp.recv_type("message"), one.recv_type("message"),
               two.recv_type("message")]
        for m in got:
            self.assertEqual((m["id"], m["text"]), (msg_id, "to all"))
            self.assertRegex(m["sentAt"],
                             r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(len({m["sentAt"] for m in got}), 1)
        wait_until(lambda: message_status(srv, msg_id)["delivered"] == 3, 5,
                   what="delivered to all three")
        one.send_json({"type": "ack", "id": msg_id})
        wait_until(lambda: message_status(srv, msg_id)["acknowledged"] == 1,
                   5, what="one ack")
        st = message_status(srv, msg_id)
        self.assertEqual(sorted(st["pending"]), sorted([tcp.sid, two.sid]))
        # An ack for an id it does not hold is ignored; a duplicate too.
        one.send_json({"type": "ack", "id": msg_id})
        one.send_json({"type": "ack", "id": msg_id + 1000})
        two.send_json({"type": "ack", "id": msg_id})
        tcp.send({"type": "ack", "id": msg_id})
        wait_until(lambda: message_status(srv, msg_id)["acknowledged"] == 3,
                   5, what="three acks")
        self.assertEqual(message_status(srv, msg_id)["pending"], [])
        # A message of max_message bytes comes whole, in one frame.
        big = "b" * 16384
        out = srv.lua(f'print(send_message_to_remote_user(string.rep("b", '
                      f'16384), "{one.sid}"))').split()
        self.assertEqual(out[0], "1")
        f = one.recv_frame()
        self.assertEqual((f.fin, f.opcode), (True, OP_TEXT))
        self.assertEqual(json.loads(f.payload)["text"], big)

    def test_method_calls(self):
        srv = self.start()
        tcp = self.tcp_session(srv, "tcp")
        c = self.ws_session(srv, "caller", machineName="Firefox",
                            systemUserName="caller")
        c.send_json({"type": "call", "id": 7, "method": "whoami",
                     "args": []})
        r = c.recv_type("result")
        self.assertEqual((r["id"], r["ok"]), (7, True), r)
        v = r["value"]
        self.assertEqual((v["ID"], v["userName"], v["machineName"],
                          v["systemUserName"], v["IPAddress"], v["hostType"],
                          v["state"], v["type"]),
                         (c.sid, "caller", "Firefox", "caller", "127.0.0.1",
                          "browser", "active", "remote"))
        # A call in fragments, args absent.
        c.send_fragments([b'{"type":"call",', b'"id":8,', b'"method":"noop"}'])
        r = c.recv_type("result")
        self.assertEqual((r["id"], r["ok"], r.get("value")), (8, True, None))
        # A method that sends: the message comes to both transports.
        c.send_json({"type": "call", "id": 9, "method": "broadcast",
                     "args": ["from a browser"]})
        frames = [c.recv_json(), c.recv_json()]
        result = [f for f in frames if f["type"] == "result"]
        message = [f for f in frames if f["type"] == "message"]
        self.assertEqual(len(result), 1, frames)
        self.assertEqual((result[0]["id"], result[0]["ok"],
                          result[0]["value"]), (9, True, 2))
        self.assertEqual(message[0]["text"], "from a browser")
        m = tcp.recv_type("message")
        self.assertEqual((m["id"], m["text"]),
                         (message[0]["id"], "from a browser"))
        # Refusals as on TCP.
        c.send_json({"type": "call", "id": 10, "method": "no_such_method"})
        r = c.recv_type("result")
        self.assertEqual((r["id"], r["ok"], r["code"]),
                         (10, False, "unknown_method"))
        c.send_json({"type": "call", "id": 11, "method": "whoami",
                     "args": None})
        r = c.recv_type("result")
        self.assertEqual((r["id"], r["ok"], r["code"]),
                         (11, False, "bad_args"))
        # Mistakes that keep the connection open.
        for frame in ({"type": "call", "id": "x", "method": "whoami"},
                      {"type": "status"}, {"type": "hello", "userName": "x",
                                           "protocol": 1}):
            c.send_json(frame)
            e = c.recv_json()
            self.assertEqual((e["type"], e["code"]), ("error", "bad_frame"),
                             frame)
        c.send_json({"type": "ping"})
        self.assertEqual(c.recv_json(), {"type": "pong"})

    def test_resume_over_websocket_after_the_socket_drops(self):
        srv = self.start()
        c = self.ws_session(srv, "roamer")
        c.close()  # no close frame: a lost connection
        srv.wait_log(rf"session {c.sid} \(roamer\): connection lost")
        self.assert_postponed(srv, c.sid)
        r = srv.lua(f'print(send_message_to_remote_user("while away", '
                    f'"{c.sid}"))').split()
        self.assertEqual(r[0], "1")
        msg_id = int(r[1])
        d = self.resume_ws(srv, c.sid, c.token)
        m = d.recv_json()
        self.assertEqual((m["type"], m["id"], m["text"]),
                         ("message", msg_id, "while away"))
        d.send_json({"type": "ack", "id": msg_id})
        wait_until(lambda: message_status(srv, msg_id)["acknowledged"] == 1,
                   5, what="ack after the resume")
        srv.wait_log(rf"session {c.sid} \(roamer\) resumed")
        # The session keeps its names and its hostType.
        self.assertEqual(self.session_row(srv, c.sid)[0::4],
                         ("roamer", "browser"))
        # The session ID may come in any case.
        d.close()
        self.assert_postponed(srv, c.sid)
        e = self.resume_ws(srv, c.sid.lower(), c.token)
        self.assertEqual(e.welcome["sessionID"], c.sid)

    def test_a_ws_session_resumed_over_tcp_and_back(self):
        srv = self.start()
        c = self.ws_session(srv, "both")
        c.close()
        self.assert_postponed(srv, c.sid)
        out = srv.lua(f'print(send_message_to_remote_user("one", '
                      f'"{c.sid}"))').split()
        w = srv.wire()
        welcome = w.hello("x", resume={"sessionID": c.sid,
                                       "token": c.token})
        self.assertEqual((welcome["type"], welcome["sessionID"]),
                         ("welcome", c.sid))
        m = w.recv()
        self.assertEqual((m["type"], m["id"]), ("message", int(out[1])))
        self.assertEqual(self.session_row(srv, c.sid)[4], "browser")
        # Back to WebSocket while TCP still holds it: a takeover.
        d = self.resume_ws(srv, c.sid, c.token)
        m = d.recv_json()  # not acknowledged: sent again
        self.assertEqual((m["type"], m["id"]), ("message", int(out[1])))
        drop = w.recv_type("drop")
        self.assertEqual(drop["reason"],
                         "session resumed from another connection")
        self.assertTrue(w.closed())
        # And a TCP session taken over by a WebSocket, the other way round.
        t = self.tcp_session(srv, "tcp")
        e = self.resume_ws(srv, t.sid, t.token)
        self.assertEqual(t.recv_type("drop")["reason"],
                         "session resumed from another connection")
        e.send_json({"type": "ping"})
        self.assertEqual(e.recv_json(), {"type": "pong"})

    def test_a_live_ws_session_taken_over_gets_drop_then_close(self):
        srv = self.start()
        c = self.ws_session(srv, "twice")
        d = self.resume_ws(srv, c.sid, c.token)
        messages, close = until_close(c)
        self.assertEqual(messages, [{"type": "drop", "reason":
                                     "session resumed from another "
                                     "connection"}])
        self.assertEqual(close, 1000)
        self.assertTrue(c.closed_by_server(5))
        srv.wait_log(rf"session {c.sid} \(twice\) taken over")
        d.send_json({"type": "ping"})
        self.assertEqual(d.recv_json(), {"type": "pong"})
        self.assertEqual(states(srv)[c.sid], ("twice", "active"))

    def test_drop_remote_user_gives_drop_then_close_1000(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        c = self.ws_session(srv, "dropped")
        d = self.ws_session(srv, "dropped-default")
        self.assertEqual(srv.lua(f'print(drop_remote_user("{c.sid}", '
                                 f'"go home"))').strip(), "true")
        messages, close = until_close(c)
        self.assertEqual(messages, [{"type": "drop", "reason": "go home"}])
        self.assertEqual(close, 1000)
        self.assertTrue(c.closed_by_server(5))
        self.assert_ended(srv, c.sid, c.token, "drop")
        srv.lua(f'drop_remote_user("{d.sid}")')
        messages, close = until_close(d)
        self.assertEqual(messages, [{"type": "drop", "reason":
                                     "dropped by an administrator"}])
        self.assertEqual(close, 1000)
        self.assert_ended(srv, d.sid, d.token, "drop")
        self.assert_served(srv, tcp, ws, "drop")

    def test_bye_ends_the_session(self):
        srv = self.start()
        c = self.ws_session(srv, "leaving")
        srv.lua(f'send_message_to_remote_user("unread", "{c.sid}")')
        c.recv_type("message")
        c.send_json({"type": "bye"})
        messages, close = until_close(c)
        self.assertEqual(messages, [], "bye has no answer")
        self.assertIn(close, (1000, NO_CLOSE))
        self.assertTrue(c.closed_by_server(5))
        self.assert_ended(srv, c.sid, c.token, "bye")
        self.assertNotIn(f"session {c.sid} (leaving) postponed",
                         srv.log.text())


# --- 3. frames ---------------------------------------------------------------

class Frames(WsTest):
    """Fragments, control frames, closes and broken frames."""

    def test_fragments_are_one_message(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        c = self.ws(srv)
        hello = json.dumps({"type": "hello", "userName": "frag",
                            "protocol": 1, "hostType": "browser"}).encode()
        c.send_fragments([hello[:5], hello[5:20], b"", hello[20:]])
        welcome = c.recv_json()
        self.assertEqual(welcome["type"], "welcome")
        # A ping between the fragments is answered at once, and the message
        # is whole after it.
        c.send_frame(OP_TEXT, b'{"type"', fin=False)
        c.send_ping(b"between")
        f = c.recv_frame()
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"between"))
        c.send_frame(OP_CONT, b':"pi', fin=False)
        c.send_frame(OP_PONG, b"unsolicited")  # ignored
        c.send_ping(b"again")
        c.send_frame(OP_CONT, b'ng"}', fin=True)
        got = [c.recv_frame(), c.recv_frame()]
        self.assertIn((OP_PONG, b"again"), [(f.opcode, f.payload)
                                            for f in got])
        self.assertIn((OP_TEXT, b'{"type":"pong"}'),
                      [(f.opcode, f.payload) for f in got])
        # A character split between fragments.
        c.send_fragments([b'{"type":"ping","x":"\xc3', b'\xa9"}'])
        self.assertEqual(c.recv_json(), {"type": "pong"})
        # Many one-byte fragments.
        c.send_fragments([bytes([b]) for b in b'{"type":"ping"}'])
        self.assertEqual(c.recv_json(), {"type": "pong"})
        self.assertEqual(states(srv)[welcome["sessionID"]],
                         ("frag", "active"))
        self.assert_served(srv, tcp, ws, "fragments")

    def test_websocket_ping_and_protocol_ping(self):
        srv = self.start()
        c = self.ws_session(srv, "pinger")
        for payload in (b"", b"hello", os.urandom(125)):
            c.send_ping(payload)
            f = c.recv_frame()
            self.assertEqual((f.fin, f.opcode, f.payload),
                             (True, OP_PONG, payload))
        c.send_json({"type": "ping"})
        self.assertEqual(c.recv_json(), {"type": "pong"})
        # A message exactly max_frame bytes long is accepted.
        head = '{"type":"ping","pad":"'
        text = head + "p" * (MAX_FRAME - len(head) - 2) + '"}'
        self.assertEqual(len(text), MAX_FRAME)
        c.send_text(text)
        self.assertEqual(c.recv_json(), {"type": "pong"})
        c.send_fragments([text[:500].encode(), text[500:].encode()])
        self.assertEqual(c.recv_json(), {"type": "pong"})

    def hostile(self, srv, send, code, log, before_hello=False, what=""):
        """A session (or, before_hello, a bare upgrade) sends something
        broken: the server answers with a close of code (no text before it,
        after the welcome), ends the session and logs log (a regex, with
        {sid})."""
        if before_hello:
            c = self.ws(srv)
        else:
            c = self.ws_session(srv, "attacker")
        send(c)
        messages, got = until_close(c)
        self.assertEqual([m for m in messages if m.get("type") != "error"],
                         [], f"{what}: messages before the close")
        self.assertTrue(c.closed_by_server(5), f"{what}: the connection "
                                               "stays open after the close")
        if not before_hello:
            self.assertNotIn(f"session {c.sid} (attacker) postponed",
                             srv.log.text(), what)
            self.assert_ended(srv, c.sid, c.token, what)
            srv.wait_log(log.format(sid=c.sid))
        self.assertEqual(got, code, f"{what}: the close's code")

    def run_cases(self, cases, code, log):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        for what, send in cases:
            with self.subTest(what):
                self.hostile(srv, send, code, log, what=what)
                self.tcp_pong(tcp, what)
                self.ws_pong(ws, what)
        # Before the hello, too (no session to end).
        for what, send in cases[:2]:
            with self.subTest(what + ", before hello"):
                self.hostile(srv, send, code, log, before_hello=True,
                             what=what + ", before hello")
        self.assert_served(srv, tcp, ws, "hostile frames")

    def test_protocol_errors_close_1002_and_end_the_session(self):
        proto = r"session {sid} \(attacker\): WebSocket: protocol error"
        big = b"x" * 200
        cases = [
            ("binary message", lambda c: c.send_binary(b'{"type":"ping"}')),
            ("unmasked frame", lambda c: c.send_frame(
                OP_TEXT, b'{"type":"ping"}', mask=False)),
            ("RSV1", lambda c: c.send_frame(OP_TEXT, b'{"type":"ping"}',
                                            rsv=4)),
            ("RSV2", lambda c: c.send_frame(OP_TEXT, b'{"type":"ping"}',
                                            rsv=2)),
            ("RSV3", lambda c: c.send_frame(OP_TEXT, b'{"type":"ping"}',
                                            rsv=1)),
            ("RSV on a ping", lambda c: c.send_frame(OP_PING, b"x", rsv=4)),
            ("opcode 3", lambda c: c.send_frame(3, b"{}")),
            ("opcode 7", lambda c: c.send_frame(7, b"{}")),
            ("opcode 0xB", lambda c: c.send_frame(0xB, b"")),
            ("opcode 0xF", lambda c: c.send_frame(0xF, b"")),
            ("continuation without a start",
             lambda c: c.send_frame(OP_CONT, b'{"type":"ping"}')),
            ("text inside a fragmented text", lambda c: (
                c.send_frame(OP_TEXT, b'{"type":', fin=False),
                c.send_frame(OP_TEXT, b'"ping"}'))),
            ("binary fragments", lambda c: c.send_fragments(
                [b'{"type":', b'"ping"}'], opcode=OP_BINARY)),
        ]
        self.run_cases(cases, 1002, proto)

    def test_malformed_control_frames_and_lengths_close_1002(self):
        # RFC 6455 5.2 and 5.5: control frames are never fragmented and
        # hold at most 125 bytes, a close's body is empty or starts with a
        # 2-byte code, a 64-bit length has its top bit clear. Each is a
        # malformed frame: close 1002, the session ends.
        proto = r"session {sid} \(attacker\): WebSocket: protocol error"
        big = b"x" * 200
        cases = [
            ("ping over 125 bytes", lambda c: c.send_ping(big)),
            ("fragmented ping", lambda c: c.send_frame(OP_PING, b"x",
                                                       fin=False)),
            ("fragmented close", lambda c: c.send_frame(
                OP_CLOSE, wsraw.close_payload(1000), fin=False)),
            ("close over 125 bytes", lambda c: c.send_frame(
                OP_CLOSE, wsraw.close_payload(1000, big))),
            ("64-bit length with the top bit", lambda c: c.send_raw(
                bytes([0x81, 0xFF]) + (1 << 63).to_bytes(8, "big")
                + os.urandom(4))),
            ("a one-byte close", lambda c: c.send_frame(OP_CLOSE, b"\x03")),
        ]
        self.run_cases(cases, 1002, proto)

    def test_text_that_is_not_utf8_closes_1007(self):
        utf8 = r"session {sid} \(attacker\): .*not UTF-8"
        cases = [
            ("0xFF", lambda c: c.send_text(b'{"type":"ping","x":"\xff"}')),
            ("overlong /", lambda c: c.send_text(
                b'{"type":"ping","x":"\xc0\xaf"}')),
            ("surrogate", lambda c: c.send_text(
                b'{"type":"ping","x":"\xed\xa0\x80"}')),
            ("beyond U+10FFFF", lambda c: c.send_text(
                b'{"type":"ping","x":"\xf4\x90\x80\x80"}')),
            ("truncated at the end", lambda c: c.send_text(
                b'{"type":"ping"}\xe2\x82')),
            ("bad in the second fragment", lambda c: c.send_fragments(
                [b'{"type":"ping",', b'"x":"\xc3\x28"}'])),
        ]
        self.run_cases(cases, 1007, utf8)

    def test_a_message_over_max_frame_closes_1009(self):
        big = (rf"session {{sid}} \(attacker\): frame longer than "
               rf"{MAX_FRAME} bytes; closing")
        head = '{"type":"ping","pad":"'
        over = head + "p" * (MAX_FRAME - len(head) - 1) + '"}'
        cases = [
            ("one byte over, one frame", lambda c: c.send_text(over)),
            ("in fragments", lambda c: c.send_fragments(
                [b'{"type":"ping","pad":"', b"q" * 600, b"q" * 600,
                 b'"}'])),
            ("one huge frame", lambda c: c.send_text("h" * 70000)),
            ("a terabyte announced", lambda c: c.send_raw(
                bytes([0x81, 0xFF]) + (1 << 40).to_bytes(8, "big")
                + os.urandom(4) + b"x" * 100)),
            ("fragments, each small", lambda c: [
                c.send_frame(OP_TEXT if i == 0 else OP_CONT, b"r" * 100,
                             fin=False) for i in range(11)]),
        ]
        self.assertEqual(len(over), MAX_FRAME + 1)
        self.run_cases(cases, 1009, big)

    def test_bad_json_gets_an_error_then_close(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        for what, payload in (("not JSON", b"not json"),
                              ("empty", b""),
                              ("not an object", b'[{"type":"ping"}]'),
                              ("nested too deep",
                               b'{"type":"ping","x":' + b"[" * 40 + b"1"
                               + b"]" * 40 + b"}"),
                              ("a NUL byte", b'{"type":"ping"}\x00'),
                              ("an escaped NUL in a string",
                               b'{"type":"ping","x":"\\u0000"}'),
                              ("two frames in one message",
                               b'{"type":"ping"}\n{"type":"ping"}')):
            with self.subTest(what):
                c = self.ws_session(srv, "attacker")
                c.send_text(payload)
                if what == "an escaped NUL in a string":
                    # Only hello's names may not hold one: it is a ping.
                    self.assertEqual(c.recv_json(), {"type": "pong"})
                    continue
                messages, close = until_close(c)
                self.assertEqual([(m["type"], m.get("code"))
                                  for m in messages],
                                 [("error", "bad_json")], what)
                self.assertEqual(close, 1000, what)
                self.assertTrue(c.closed_by_server(5))
                srv.wait_log(rf"session {c.sid} \(attacker\): .*; closing")
                self.assert_ended(srv, c.sid, c.token, what)
                self.tcp_pong(tcp, what)
                self.ws_pong(ws, what)
        self.assert_served(srv, tcp, ws, "bad JSON")

    def test_a_close_from_the_client_is_answered_and_postpones(self):
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        for what, code in (("1000", 1000), ("1001", 1001), ("4000", 4000),
                           ("3000", 3000), ("no code", None)):
            with self.subTest(what):
                c = self.ws_session(srv, "closer")
                c.send_close(code, b"bye for now" if code else b"")
                f = c.recv_frame(5)
                self.assertIsNotNone(f, f"{what}: no close in answer")
                self.assertEqual(f.opcode, OP_CLOSE, f)
                if code is not None:
                    self.assertIn(c.close_received[0], (code, 1000), what)
                self.assertTrue(c.closed_by_server(5), what)
                c.close()  # as a browser does once the closes crossed
                srv.wait_log(rf"session {c.sid} \(closer\): connection lost")
                self.assert_postponed(srv, c.sid, what)
                d = self.resume_ws(srv, c.sid, c.token)
                d.send_json({"type": "ping"})
                self.assertEqual(d.recv_json(), {"type": "pong"})
                d.send_json({"type": "bye"})
        self.assert_served(srv, tcp, ws, "client closes")

    def test_a_close_with_an_invalid_code_is_1002(self):
        proto = r"session {sid} \(attacker\): WebSocket: protocol error"
        cases = [(str(code), lambda c, code=code: c.send_close(code))
                 for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999,
                              5000, 65535)]
        self.run_cases(cases, 1002, proto)


# --- 4. load and hostility ---------------------------------------------------

BIG = "return function(n) return string.rep('x', n or 500000) end\n"


class Load(WsTest):

    def scripts(self, **methods):
        d = tempfile.mkdtemp(prefix="herald-ws-scripts-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        os.mkdir(os.path.join(d, "methods"))
        for name, source in methods.items():
            with open(os.path.join(d, "methods", name + ".lua"), "w") as f:
                f.write(source)
        return d

    def test_a_slow_consumer_is_dropped(self):
        # It never reads nor acks: past max_outbound_bytes of pending
        # messages it is dropped, and the others are served.
        srv = self.start(CONFIG + "max_outbound_bytes = 8192\n")
        tcp, ws = self.bystanders(srv)
        c = self.ws_session(srv, "sluggard")
        out = srv.lua(f"""
local n = 0
for i = 1, 50 do
  n = n + send_message_to_remote_user(string.rep("s", 1000), "{c.sid}")
end
print(n)""")
        self.assertLess(int(out), 50)
        srv.wait_log(rf"session {c.sid} \(sluggard\) dropped: slow consumer")
        self.assert_ended(srv, c.sid, c.token, "slow consumer")
        self.assert_served(srv, tcp, ws, "a slow consumer")
        # What it finds when it reads at last: messages, drop, close 1000.
        messages, close = until_close(c)
        self.assertEqual(messages[-1], {"type": "drop",
                                        "reason": "slow consumer"})
        self.assertTrue(all(m["type"] == "message" for m in messages[:-1]))
        self.assertEqual(close, 1000)

    def test_a_client_that_never_reads_is_cut_off(self):
        # Results of half a megabyte, and the client reads none of them:
        # past max_outbound_bytes waiting for its socket it is closed.
        srv = self.start(CONFIG + "max_outbound_bytes = 65536\n",
                         scripts=self.scripts(big=BIG))
        tcp, ws = self.bystanders(srv)
        c = self.ws_session(srv, "glutton")
        for i in range(60):
            try:
                c.send_json({"type": "call", "id": i, "method": "big"})
            except OSError:
                break  # cut off already
            time.sleep(0.01)
        srv.wait_log(rf"session {c.sid} \(glutton\) dropped: slow consumer",
                     timeout=10)
        self.assert_ended(srv, c.sid, c.token, "never reads")
        self.assert_served(srv, tcp, ws, "a client that never reads")

    def test_a_ping_flood_that_never_reads_its_pongs_is_cut_off(self):
        # WebSocket pings of 125 bytes, answered by pongs it never reads:
        # the pongs count toward max_outbound_bytes like any frame, so the
        # server holds at most that much for it, then closes it.
        srv = self.start(CONFIG + "max_outbound_bytes = 65536\n")
        tcp, ws = self.bystanders(srv)
        c = self.ws_session(srv, "pinger")
        # A thousand pings a write; the kernel's buffers hold some
        # megabytes of pongs before any wait in the server.
        burst = wsraw.encode_frame(OP_PING, b"p" * 125) * 1000
        for _ in range(300):
            try:
                c.send_raw(burst)
            except OSError:
                break  # cut off already
        srv.wait_log(rf"session {c.sid} \(pinger\) dropped: slow consumer",
                     timeout=10)
        self.assert_served(srv, tcp, ws, "a ping flood")

    def test_a_result_of_a_megabyte_comes_in_one_frame(self):
        srv = self.start(scripts=self.scripts(big=BIG))
        c = self.ws_session(srv, "reader")
        c.send_json({"type": "call", "id": 1, "method": "big",
                     "args": [1 << 20]})
        f = c.recv_frame(10)
        self.assertEqual((f.fin, f.opcode), (True, OP_TEXT))
        r = json.loads(f.payload)
        self.assertEqual((r["type"], r["id"], r["ok"], len(r["value"])),
                         ("result", 1, True, 1 << 20))

    def test_two_hundred_clients_at_once(self):
        n = 200
        srv = self.start()
        tcp, ws = self.bystanders(srv)
        port = srv.http_port
        socks, keys = [], []
        try:
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port),
                                             timeout=10 * SLOW)
                socks.append(s)
            for s in socks:
                key = new_key()
                keys.append(key)
                s.sendall(upgrade_request(port, key))
            self.tcp_pong(tcp, "200 upgrades")
            conns = [finish_upgrade(s, k, 10) for s, k in zip(socks, keys)]
            for i, c in enumerate(conns):
                c.send_json({"type": "hello", "userName": f"crowd{i}",
                             "protocol": 1, "hostType": "browser"})
            self.tcp_pong(tcp, "200 hellos")
            self.ws_pong(ws, "200 hellos")
            sids = set()
            for c in conns:
                welcome = c.recv_json(10)
                self.assertEqual(welcome["type"], "welcome")
                sids.add(welcome["sessionID"])
            self.assertEqual(len(sids), n)
            self.assertEqual(set(states(srv)), sids | {tcp.sid, ws.sid})
            # One send reaches them all, with one ID.
            out = srv.lua('print(send_message_to_remote_user("crowd"))')
            count, msg_id = (int(x) for x in out.split())
            self.assertEqual(count, n + 2)
            for c in conns:
                m = c.recv_type("message", 10)
                self.assertEqual((m["id"], m["text"]), (msg_id, "crowd"))
                c.send_json({"type": "ack", "id": msg_id})
            for w in (tcp, ws):
                m = w.recv_type("message")
                self.assertEqual(m["id"], msg_id)
                if w is tcp:
                    w.send({"type": "ack", "id": msg_id})
                else:
                    w.send_json({"type": "ack", "id": msg_id})
            wait_until(lambda: message_status(srv, msg_id)["acknowledged"]
                       == n + 2, 10, what="every ack")
            # They all vanish at once.
            for s in socks:
                s.close()
            wait_until(lambda: sum(1 for u, st in states(srv).values()
                                   if st == "postponed") == n, 10,
                       what="200 postponed")
            self.assert_served(srv, tcp, ws, "200 clients")
        finally:
            for s in socks:
                s.close()


# --- TLS ---------------------------------------------------------------------

class Tls(WsTest):
    """https and wss with a certificate from `herald cert`."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="herald-ws-tls-")
        r = subprocess.run([HERALD, "cert", "--out", cls.dir, "127.0.0.1",
                            "localhost"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        cls.crt = os.path.join(cls.dir, "server.crt")
        cls.key = os.path.join(cls.dir, "server.key")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def start_tls(self):
        srv = self.start(CONFIG + f'tls = {{ cert = "{self.crt}", '
                                  f'key = "{self.key}" }}\n')
        self.assertTrue(srv.url.startswith("https://"), srv.url)
        srv.tls_ca = self.crt
        return srv

    def test_https_pages_and_a_wss_session(self):
        srv = self.start_tls()
        r = wsraw.http_get(srv.http_port, "/", tls_ca=self.crt)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, web_file("index.html"))
        self.assertEqual(r.headers.get("content-security-policy"), CSP)
        r = wsraw.http_get(srv.http_port, "/static/user.js", tls_ca=self.crt)
        self.assertEqual((r.status, r.body), (200, web_file("user.js")))
        tcp, ws = self.bystanders(srv, tls_ca=self.crt)
        c = self.ws_session(srv, "secure", connect={"tls_ca": self.crt})
        c.send_json({"type": "call", "id": 1, "method": "whoami"})
        r = c.recv_type("result")
        self.assertEqual((r["value"]["hostType"], r["value"]["ID"]),
                         ("browser", c.sid))
        out = srv.lua('print(send_message_to_remote_user("over tls"))')
        count, msg_id = (int(x) for x in out.split())
        self.assertEqual(count, 3)
        self.assertEqual(c.recv_type("message")["id"], msg_id)
        self.assertEqual(tcp.recv_type("message")["id"], msg_id)
        self.assertEqual(ws.recv_type("message")["id"], msg_id)
        # A hostile frame over TLS is handled as in the clear.
        c.send_binary(b"x")
        self.assert_close(c, 1002, "binary over wss")
        self.assert_ended(srv, c.sid, c.token, "binary over wss")
        self.assert_served(srv, tcp, ws, "wss")

    def test_plaintext_on_the_tls_port_gets_no_http_answer(self):
        srv = self.start_tls()
        tcp, ws = self.bystanders(srv, tls_ca=self.crt)
        port = srv.http_port
        data = wsraw.exchange(port, f"GET / HTTP/1.1\r\nHost: 127.0.0.1:"
                                    f"{port}\r\n\r\n".encode())
        self.assertFalse(data.startswith(b"HTTP/"), data[:200])
        self.assertNotIn(b"<html", data.lower())
        # Nor an upgrade.
        try:
            c = wsraw.connect(port)
            c.close()
            self.fail("a plaintext upgrade on the TLS port got a 101")
        except (WsClosed, wsraw.WsProtocolError, UpgradeRefused,
                TimeoutError, OSError) as e:
            self.assertNotIsInstance(e, UpgradeRefused)
        # A TLS client that never finishes its handshake is let go too.
        s = socket.create_connection(("127.0.0.1", port))
        try:
            s.sendall(b"\x16\x03\x01\x00\xff\x01")  # a ClientHello's start
            data = read_all(s, HANDSHAKE + 5)
        finally:
            s.close()
        self.assertIsNotNone(data, "a stalled TLS handshake stays open")
        self.assertFalse(data.startswith(b"HTTP/"), data[:200])
        # A wrong CA is refused by the client, as it should be.
        other = tempfile.mkdtemp(prefix="herald-ws-tls-other-")
        self.addCleanup(shutil.rmtree, other, ignore_errors=True)
        subprocess.run([HERALD, "cert", "--out", other, "127.0.0.1"],
                       capture_output=True, timeout=60, check=True)
        with self.assertRaises(ssl.SSLCertVerificationError):
            wsraw.connect(port, tls_ca=os.path.join(other, "server.crt"))
        self.assert_served(srv, tcp, ws, "plaintext on the TLS port")


# --- a graceful stop ---------------------------------------------------------

class Stop(WsTest):

    def test_reconnect_then_close_at_a_stop_and_resume_after_restart(self):
        state = tempfile.mkdtemp(prefix="herald-ws-state-")
        self.addCleanup(shutil.rmtree, state, ignore_errors=True)
        config = CONFIG + f'state = "{state}/herald.db"\n'
        srv = self.start(config)
        c = self.ws_session(srv, "stayer")
        tcp = self.tcp_session(srv, "tcp")
        out = srv.lua(f'print(send_message_to_remote_user("keep me", '
                      f'"{c.sid}"))').split()
        msg_id = int(out[1])
        self.assertEqual(c.recv_type("message")["id"], msg_id)  # no ack
        srv.proc.send_signal(signal.SIGTERM)
        messages, close = until_close(c, 10)
        self.assertEqual(len(messages), 1, messages)
        self.assertEqual((messages[0]["type"], messages[0]["reason"]),
                         ("reconnect", "server restarting"))
        self.assertIsInstance(messages[0]["after"], (int, float))
        self.assertEqual(close, 1000)
        self.assertTrue(c.closed_by_server(5))
        self.assertEqual(tcp.recv_type("reconnect")["reason"],
                         "server restarting")
        self.assertEqual(srv.proc.wait(10 * SLOW), 0)
        # The same state, a new server: the WebSocket session resumes with
        # its token and gets the message it did not acknowledge.
        again = self.start(config)
        d = self.resume_ws(again, c.sid, c.token)
        m = d.recv_type("message")
        self.assertEqual((m["id"], m["text"]), (msg_id, "keep me"))
        self.assertEqual(self.session_row(again, c.sid)[0::4],
                         ("stayer", "browser"))


# --- administration over WebSocket -------------------------------------------

class Admin(WsTest):

    def test_admin_channel_without_users_is_unavailable_and_no_session(self):
        srv = self.start(CONFIG + "max_sessions = 1\n")
        c = self.ws(srv, path="/admin/ws")
        # Not a session: not listed, and does not fill max_sessions.
        d = self.ws_session(srv, "only")
        self.assertEqual(set(states(srv)), {d.sid})
        c.send_json({"type": "login", "userName": "alice",
                     "password": "secret"})
        messages, close = until_close(c, 10)
        self.assertEqual([(m["type"], m["code"]) for m in messages],
                         [("error", "unavailable")])
        self.assertEqual(close, 1000)
        # It sees no messages either: the session alone gets this one.
        out = srv.lua('print(send_message_to_remote_user("x"))').split()
        self.assertEqual(out[0], "1")

    def test_users_log_in_over_websocket_and_admins_reach_them(self):
        users = tempfile.mkdtemp(prefix="herald-ws-users-")
        self.addCleanup(shutil.rmtree, users, ignore_errors=True)
        path = os.path.join(users, "herald.users")
        for name, group in (("alice", "admin"), ("bob", "staff")):
            add_user(path, name, f"pw-{name}", group)
        srv = self.start(CONFIG + f'users_file = "{path}"\n'
                                  "auth_delay = 0.2\n")
        srv.wait_log(r"users file .*: 2 users")
        # A session needs its password, over WebSocket as over TCP.
        c = self.ws(srv)
        answer = self.hello(c, "bob", password="wrong")
        self.assertEqual((answer["type"], answer["code"]),
                         ("error", "unauthorized"))
        self.assertEqual(until_close(c)[1], 1000)
        c = self.ws(srv)
        answer = self.hello(c, "bob")
        self.assertEqual(answer["code"], "unauthorized")
        bob = self.ws_session(srv, "bob", password="pw-bob")
        self.assertEqual(bob.welcome["groups"], ["staff"])
        # The administrators' channel: a login that is not in group admin
        # is refused, an administrator gets ready and the sessions.
        c = self.ws(srv, path="/admin/ws")
        c.send_json({"type": "login", "userName": "bob",
                     "password": "pw-bob"})
        messages, close = until_close(c, 10)
        self.assertEqual([(m["type"], m["code"]) for m in messages],
                         [("error", "forbidden")])
        self.assertEqual(close, 1000)
        c = self.ws(srv, path="/admin/ws")
        c.send_json({"type": "login", "userName": "alice",
                     "password": "wrong"})
        messages, close = until_close(c, 10)
        self.assertEqual([(m["type"], m["code"]) for m in messages],
                         [("error", "unauthorized")])
        admin = self.ws(srv, path="/admin/ws")
        admin.send_json({"type": "login", "userName": "alice",
                         "password": "pw-alice"})
        ready = admin.recv_json(10)
        self.assertEqual((ready["type"], ready["userName"],
                          ready["rejecting"]), ("ready", "alice", False))
        self.assertTrue(ready["server"].startswith("herald/"))
        rows = None
        while rows is None:
            f = admin.recv_json(10)
            if f["type"] == "sessions":
                self.assertIs(f["reset"], True)
                rows = f.get("rows", [])
        self.assertEqual([(r["ID"], r["userName"], r["hostType"],
                           r["IPAddress"]) for r in rows],
                         [(bob.sid, "bob", "browser", "127.0.0.1")])
        # The administrator's channel is no session.
        self.assertEqual(set(states(srv)), {bob.sid})
        admin.send_json({"type": "request", "id": "r1", "op": "send",
                         "message": "from the admin page",
                         "sessions": [bob.sid]})
        reply = admin.recv_type("reply", 10)
        self.assertEqual((reply["id"], reply["ok"], reply["result"]["queued"]),
                         ("r1", True, 1))
        m = bob.recv_type("message")
        self.assertEqual((m["id"], m["text"]),
                         (reply["result"]["messageIDs"][0],
                          "from the admin page"))
