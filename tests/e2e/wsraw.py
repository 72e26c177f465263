"""A raw WebSocket (RFC 6455) client and a raw HTTP/1.1 request, for
conformance and hostile tests: every frame can be built by hand, broken
ones included (unmasked, reserved bits, bad opcodes, lying lengths), which
no library would send. Standard library only.

    c = connect(port)                        # GET /ws, checked 101
    c.send_json({"type": "hello", "userName": "v", "protocol": 1})
    welcome = c.recv_json()
    c.send_frame(OP_BINARY, b"\\x00")         # not allowed by herald
    self.assertEqual(c.recv_close()[0], 1002)

    status, headers, body = http_get(port, "/nope")   # (404, {...}, b"...")

Timeouts are in seconds, times HERALD_SLOW (as in harness.py).
"""
import base64
import collections
import hashlib
import json
import os
import socket
import ssl
import struct
import time

SLOW = float(os.environ.get("HERALD_SLOW", "1"))
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, 1.3

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

Frame = collections.namedtuple("Frame", "fin opcode payload")
Frame.__doc__ = """A received frame: fin (bool), opcode (int), payload
(bytes). Also a tuple: fin, opcode, payload = conn.recv_frame()."""
HttpResponse = collections.namedtuple("HttpResponse", "status headers body")
HttpResponse.__doc__ = """status (int), headers ({lowercase name: value},
repeated headers joined with ", "), body (bytes, de-chunked)."""


class UpgradeRefused(AssertionError):
    """The server answered the upgrade with another status than 101."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        super().__init__(f"upgrade refused: {status} {headers} {body[:500]!r}")


class WsClosed(AssertionError):
    """The connection ended while a message was expected: code and reason
    of the server's close frame, both None when the TCP connection just
    ended."""

    def __init__(self, code, reason):
        self.code = code
        self.reason = reason
        what = (f"close frame, code {code}, reason {reason!r}"
                if reason is not None else "connection ended, no close frame")
        super().__init__(f"WebSocket closed: {what}")


class WsProtocolError(AssertionError):
    """The server broke RFC 6455 (a masked frame, reserved bits, a bad
    length, a bad handshake answer)."""


def accept_for(key):
    """The Sec-WebSocket-Accept value that answers key (a str)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode())
                            .digest()).decode()


def mask_bytes(payload, key):
    """payload XOR the 4-byte key repeated (masking and unmasking)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big")
            ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0,
                 mask_key=None, length=None):
    """One frame's bytes. opcode: any 0..15; rsv: the three reserved bits
    as a number 0..7 (4 = RSV1); mask: mask it (with mask_key, or a random
    one); length: the length to announce, when it should lie (the payload
    is sent as it is). A str payload is sent as UTF-8."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        return head + key + mask_bytes(payload, key)
    return head + payload


def decode_frame(buf):
    """Parses one frame at the start of buf: ((fin, rsv, opcode, masked,
    payload unmasked), bytes used), or (None, 0) when buf holds less than
    a whole frame."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    at = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack_from("!H", buf, 2)[0]
        at = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack_from("!Q", buf, 2)[0]
        at = 10
    masked = bool(b1 & 0x80)
    key = None
    if masked:
        if len(buf) < at + 4:
            return None, 0
        key = bytes(buf[at:at + 4])
        at += 4
    if len(buf) < at + n:
        return None, 0
    payload = bytes(buf[at:at + n])
    if masked:
        payload = mask_bytes(payload, key)
    return (bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF, masked, payload), \
        at + n


def close_payload(code=None, reason=b""):
    """A close frame's payload: nothing, or the code and reason."""
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def _tls_context(tls_ca, tls):
    if tls is not None:
        return tls
    if tls_ca is not None:
        return ssl.create_default_context(cafile=tls_ca)
    return None


def _open(port, host, timeout, tls_ca=None, tls=None, server_hostname=None):
    sock = socket.create_connection((host, port), timeout=timeout * SLOW)
    ctx = _tls_context(tls_ca, tls)
    if ctx is not None:
        try:
            sock = ctx.wrap_socket(sock,
                                   server_hostname=server_hostname or host)
        except BaseException:
            sock.close()
            raise
    return sock


def _request(method, path, host_header, headers, body=None):
    """An HTTP/1.1 request's bytes: headers in order, given ones replacing
    the defaults (a None value removes one)."""
    h = {"Host": host_header}
    extra = dict(headers or {})
    lower = {k.lower(): k for k in extra}
    for default in list(h):
        if default.lower() in lower:
            del h[default]
    h.update(extra)
    if body is not None and not any(k.lower() == "content-length"
                                    for k in h):
        h["Content-Length"] = str(len(body))
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in h.items() if v is not None]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if body is not None:
        data += body if isinstance(body, bytes) else body.encode()
    return data


def _parse_head(head):
    """(status, headers) of an answer's head (bytes before the blank
    line)."""
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or \
            not parts[1].isdigit():
        raise WsProtocolError(f"bad status line: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise WsProtocolError(f"bad header line: {line!r}")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = (headers[name] + ", " + value) if name in headers \
            else value
    return int(parts[1]), headers


def _read_until_eof(sock, deadline, got=b"", limit=64 << 20):
    """Everything sock sends until EOF; raises TimeoutError with what came
    when the deadline passes first."""
    chunks = [got]
    size = len(got)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the server did not close the connection "
                               f"in time; got {b''.join(chunks)[:2000]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        except ssl.SSLError as e:
            if "UNEXPECTED_EOF" in str(e) or "EOF occurred" in str(e):
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise WsProtocolError(f"more than {limit} bytes")
    return b"".join(chunks)


def _dechunk(body):
    out = b""
    while True:
        line, sep, rest = body.partition(b"\r\n")
        if not sep:
            raise WsProtocolError("truncated chunked body")
        n = int(line.split(b";")[0].strip(), 16)
        if n == 0:
            return out
        out += rest[:n]
        body = rest[n + 2:]


def exchange(port, data, host="127.0.0.1", timeout=5, tls_ca=None,
             tls=None, server_hostname=None, shutdown=False):
    """Sends data (bytes) as it is and returns everything the server sends
    back until it closes the connection (b"" when it just closes).
    shutdown: also end our side of the stream after data."""
    sock = _open(port, host, timeout, tls_ca, tls, server_hostname)
    try:
        deadline = time.monotonic() + timeout * SLOW
        try:
            sock.sendall(data)
            if shutdown:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed early: what it said is still there
        return _read_until_eof(sock, deadline)
    finally:
        sock.close()


def http_get(port, path="/", method="GET", headers=None, body=None,
             raw=None, host="127.0.0.1", timeout=5, tls_ca=None, tls=None,
             server_hostname=None):
    """One HTTP/1.1 request over a fresh connection, read until the server
    closes it: HttpResponse(status, headers, body). headers add to or
    replace Host (a None value removes it); body is sent with its
    Content-Length; raw replaces the whole request with these bytes. A
    HEAD answer's body is whatever came (b"" from a correct server)."""
    if raw is None:
        raw = _request(method, path, f"{host}:{port}", headers,
                       body if body is None or isinstance(body, bytes)
                       else body.encode())
    data = exchange(port, raw, host, timeout, tls_ca, tls, server_hostname)
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise WsProtocolError(f"no complete answer: {data[:2000]!r}")
    status, hdrs = _parse_head(head)
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        rest = _dechunk(rest)
    return HttpResponse(status, hdrs, rest)


def connect(port, path="/ws", host="127.0.0.1", origin=None, headers=None,
            timeout=5, tls_ca=None, tls=None, server_hostname=None,
            key=None):
    """Opens a WebSocket: a real HTTP upgrade (Host, Upgrade, Connection,
    a random Sec-WebSocket-Key, Sec-WebSocket-Version: 13, Origin when
    given; headers add to or replace those, a None value removes one).
    TLS (wss) with tls_ca (a CA file) or tls (an ssl.SSLContext).

    Returns a WsConn; raises UpgradeRefused(status, headers, body) when
    the answer is not 101, and WsProtocolError when a 101 lacks the right
    Upgrade, Connection or Sec-WebSocket-Accept."""
    key = key or base64.b64encode(os.urandom(16)).decode()
    h = {"Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
    if origin is not None:
        h["Origin"] = origin
    extra = dict(headers or {})
    lower = {k.lower() for k in extra}
    h = {k: v for k, v in h.items() if k.lower() not in lower}
    h.update(extra)
    request = _request("GET", path, f"{host}:{port}", h)
    sock = _open(port, host, timeout, tls_ca, tls, server_hostname)
    try:
        deadline = time.monotonic() + timeout * SLOW
        sock.sendall(request)
        buf = b""
        while b"\r\n\r\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no upgrade answer within {timeout} s; "
                                   f"got {buf[:2000]!r}")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise WsClosed(None, None) if not buf else \
                    WsProtocolError(f"connection closed in the upgrade "
                                    f"answer: {buf[:2000]!r}")
            buf += chunk
            if len(buf) > 65536:
                raise WsProtocolError("upgrade answer head over 64 KiB")
        head, _, rest = buf.partition(b"\r\n\r\n")
        status, hdrs = _parse_head(head)
        if status != 101:
            n = hdrs.get("content-length")
            if n is not None and n.isdigit() and len(rest) < int(n):
                try:
                    rest = _read_until_eof(sock, deadline, rest)
                except TimeoutError:
                    pass
            raise UpgradeRefused(status, hdrs, rest)
        if hdrs.get("upgrade", "").lower() != "websocket":
            raise WsProtocolError(f"101 without Upgrade: websocket: {hdrs}")
        if "upgrade" not in [t.strip().lower() for t in
                             hdrs.get("connection", "").split(",")]:
            raise WsProtocolError(f"101 without Connection: Upgrade: {hdrs}")
        if hdrs.get("sec-websocket-accept") != accept_for(key):
            raise WsProtocolError(
                f"Sec-WebSocket-Accept {hdrs.get('sec-websocket-accept')!r}"
                f", expected {accept_for(key)!r}")
    except BaseException:
        sock.close()
        raise
    return WsConn(sock, rest, status, hdrs, timeout)


class WsConn:
    """An open WebSocket (client side). status and headers: the upgrade
    answer's. strict (default True): a frame from the server that is
    masked or has reserved bits raises WsProtocolError. auto_pong (True):
    recv_message, recv_json and recv_type answer WebSocket pings."""

    def __init__(self, sock, buf=b"", status=101, headers=None, timeout=5):
        self.sock = sock
        self.buf = bytearray(buf)
        self.status = status
        self.headers = headers or {}
        self.timeout = timeout
        self.strict = True
        self.auto_pong = True
        self.eof = False
        self.close_sent = False
        self.close_received = None  # (code, reason) once one came
        self.max_size = 64 << 20

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- sending ----------------------------------------------------------

    def send_raw(self, data):
        """Sends bytes as they are (a partial frame, garbage...)."""
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", fin=True, mask=True, rsv=0,
                   mask_key=None, length=None):
        """One frame, any combination (see encode_frame)."""
        if opcode == OP_CLOSE:
            self.close_sent = True
        self.sock.sendall(encode_frame(opcode, payload, fin, mask, rsv,
                                       mask_key, length))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text.encode()
                        if isinstance(text, str) else text)

    def send_binary(self, data):
        self.send_frame(OP_BINARY, data)

    def send_json(self, obj):
        """obj as JSON in one text frame (no trailing newline)."""
        self.send_text(json.dumps(obj))

    def send_fragments(self, parts, opcode=OP_TEXT):
        """One message in len(parts) frames: opcode, then continuations,
        fin on the last."""
        for i, part in enumerate(parts):
            self.send_frame(opcode if i == 0 else OP_CONT, part,
                            fin=i == len(parts) - 1)

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    def send_ping(self, payload=b""):
        self.send_frame(OP_PING, payload)

    def send_pong(self, payload=b""):
        self.send_frame(OP_PONG, payload)

    # -- receiving --------------------------------------------------------

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None
                                   else timeout) * SLOW

    def _frame(self, deadline):
        """The next frame (fin, rsv, opcode, masked, payload), None at EOF;
        TimeoutError after the deadline."""
        while True:
            if len(self.buf) >= 10:
                n = self.buf[1] & 0x7F
                if n == 127 and \
                        struct.unpack_from("!Q", self.buf, 2)[0] > \
                        self.max_size:
                    raise WsProtocolError("server frame over max_size: "
                                          f"{bytes(self.buf[:10])!r}")
            frame, used = decode_frame(self.buf)
            if frame is not None:
                del self.buf[:used]
                return frame
            if self.eof:
                if self.buf:
                    raise WsProtocolError(
                        f"connection ended inside a frame: "
                        f"{bytes(self.buf[:200])!r}")
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame in time"
                                   + (f"; have {bytes(self.buf[:200])!r}"
                                      if self.buf else ""))
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except ssl.SSLError as e:
                if "UNEXPECTED_EOF" not in str(e) and \
                        "EOF occurred" not in str(e):
                    raise
                chunk = b""
            if not chunk:
                self.eof = True
            self.buf += chunk

    def recv_frame(self, timeout=None):
        """The next frame as Frame(fin, opcode, payload), or None when the
        connection ended (EOF) first. A close frame is also noted in
        close_received. Raises TimeoutError when none comes in time, and
        (when strict) WsProtocolError for a masked frame or reserved
        bits."""
        frame = self._frame(self._deadline(timeout))
        if frame is None:
            return None
        fin, rsv, opcode, masked, payload = frame
        if self.strict and masked:
            raise WsProtocolError(f"masked frame from the server "
                                  f"(opcode {opcode})")
        if self.strict and rsv:
            raise WsProtocolError(f"reserved bits {rsv} from the server "
                                  f"(opcode {opcode})")
        if opcode == OP_CLOSE:
            self.close_received = parse_close(payload)
        return Frame(fin, opcode, payload)

    def recv_message(self, timeout=None):
        """The next whole data message as (opcode, payload bytes),
        continuations joined. Pings are answered (auto_pong) and pongs
        skipped; a close frame or EOF raises WsClosed."""
        deadline = self._deadline(timeout)
        opcode, parts = None, []
        while True:
            left = max(0.0, deadline - time.monotonic()) / SLOW
            f = self.recv_frame(left)
            if f is None:
                raise WsClosed(None, None)
            if f.opcode == OP_CLOSE:
                raise WsClosed(*self.close_received)
            if f.opcode == OP_PING:
                if self.auto_pong and not self.close_sent:
                    self.send_pong(f.payload)
                continue
            if f.opcode == OP_PONG:
                continue
            if f.opcode == OP_CONT:
                if opcode is None:
                    raise WsProtocolError("continuation without a start")
            elif f.opcode in (OP_TEXT, OP_BINARY):
                if opcode is not None:
                    raise WsProtocolError("new message inside a fragmented "
                                          "one")
                opcode = f.opcode
            else:
                raise WsProtocolError(f"unknown opcode {f.opcode}")
            parts.append(f.payload)
            if f.fin:
                return opcode, b"".join(parts)

    def recv_text(self, timeout=None):
        """The next text message as str (WsProtocolError for a binary one
        or bad UTF-8)."""
        opcode, payload = self.recv_message(timeout)
        if opcode != OP_TEXT:
            raise WsProtocolError(f"binary message: {payload[:200]!r}")
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WsProtocolError(f"text not UTF-8: {e}") from None

    def recv_json(self, timeout=None):
        """The next text message, decoded from JSON. Raises WsClosed (with
        the close code) when the connection closes first."""
        return json.loads(self.recv_text(timeout))

    def recv_type(self, type_, timeout=None):
        """Skips messages until one whose "type" is type_, answering this
        protocol's {"type":"ping"} with {"type":"pong"} on the way."""
        deadline = self._deadline(timeout)
        seen = []
        while True:
            left = max(0.0, deadline - time.monotonic()) / SLOW
            try:
                obj = self.recv_json(left)
            except TimeoutError:
                raise TimeoutError(f"no {type_!r} in time; skipped "
                                   f"{seen[-20:]}") from None
            if isinstance(obj, dict) and obj.get("type") == type_:
                return obj
            if isinstance(obj, dict) and obj.get("type") == "ping":
                self.send_json({"type": "pong"})
            seen.append(obj)

    def recv_close(self, timeout=None, reply=True):
        """Reads (and drops) frames until a close frame or EOF: (code,
        reason) of the close frame (code None when it had no body), or
        (None, None) at EOF without one. reply: answer the close with a
        close, as RFC 6455 wants (errors ignored)."""
        deadline = self._deadline(timeout)
        while True:
            left = max(0.0, deadline - time.monotonic()) / SLOW
            f = self.recv_frame(left)
            if f is None:
                return None, None
            if f.opcode == OP_CLOSE:
                if reply and not self.close_sent:
                    try:
                        code = self.close_received[0]
                        self.send_close(code if code not in
                                        (None, 1005, 1006, 1015) else None)
                    except OSError:
                        pass
                return self.close_received

    def closed_by_server(self, timeout=None):
        """True when the server ends the TCP connection within timeout
        (frames before, a close included, are dropped; a close is not
        answered), False when it is still open then."""
        deadline = self._deadline(timeout)
        try:
            while True:
                left = max(0.0, deadline - time.monotonic()) / SLOW
                if self.recv_frame(left) is None:
                    return True
        except TimeoutError:
            return False

    def close(self):
        """Closes the socket (no close frame: send_close() first for
        that)."""
        try:
            self.sock.close()
        except OSError:
            pass


def parse_close(payload):
    """(code, reason bytes) of a close frame's payload; (None, b"") when
    empty. A one-byte payload (invalid) gives (-1, payload)."""
    if not payload:
        return None, b""
    if len(payload) == 1:
        return -1, payload
    return struct.unpack("!H", payload[:2])[0], payload[2:]


def _self_check():
    """The encoder against the decoder, and the accept key of RFC 6455's
    own example."""
    assert accept_for("dGhlIHNhbXBsZSBub25jZQ==") == \
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    # RFC 6455 5.7: a masked "Hello"
    assert encode_frame(OP_TEXT, b"Hello", mask_key=b"\x37\xfa\x21\x3d") \
        == bytes.fromhex("818537fa213d7f9f4d5158")
    assert encode_frame(OP_TEXT, b"Hello", mask=False) == \
        bytes.fromhex("810548656c6c6f")
    assert encode_frame(OP_PING, b"Hello", mask=False) == \
        bytes.fromhex("890548656c6c6f")
    assert encode_frame(OP_BINARY, b"\0" * 256, mask=False)[:4] == \
        bytes.fromhex("827e0100")
    assert encode_frame(OP_BINARY, b"\0" * 65536, mask=False)[:10] == \
        bytes.fromhex("827f0000000000010000")
    for n in (0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 70000, 1 << 20):
        payload = os.urandom(n)
        for mask in (True, False):
            for fin in (True, False):
                for rsv in (0, 1, 4, 7):
                    for op in (OP_CONT, OP_TEXT, OP_CLOSE, 0xB, 0xF):
                        data = encode_frame(op, payload, fin, mask, rsv)
                        frame, used = decode_frame(data + b"tail")
                        assert used == len(data), (n, used, len(data))
                        assert frame == (fin, rsv, op, mask, payload), n
                        # any prefix is incomplete
                        for cut in {0, 1, 2, len(data) // 2, len(data) - 1}:
                            if cut < len(data):
                                assert decode_frame(data[:cut]) == (None, 0)
    assert decode_frame(encode_frame(OP_TEXT, b"ab", length=5)) == (None, 0)
    assert parse_close(close_payload(1009, "too big")) == (1009, b"too big")
    assert parse_close(b"") == (None, b"")
    st, h = _parse_head(b"HTTP/1.1 101 Switching Protocols\r\n"
                        b"Upgrade: websocket\r\nX-A: 1\r\nx-a: 2")
    assert st == 101 and h == {"upgrade": "websocket", "x-a": "1, 2"}
    assert _dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n") == b"abcde"
    req = _request("GET", "/ws", "h:1", {"host": None, "X-Y": "z"})
    assert req == b"GET /ws HTTP/1.1\r\nX-Y: z\r\n\r\n", req

    # A whole conversation over a socket pair, this module on both ends:
    # a client's frames read by a "server" without strictness, and a
    # server's unmasked frames (split in every possible way) read by
    # WsConn.
    a, b = socket.socketpair()
    client = WsConn(a, timeout=2)
    server = WsConn(b, timeout=2)
    server.strict = False
    client.send_json({"type": "hello", "n": 1})
    client.send_fragments([b"fr", b"ag", "\u00e9"])
    client.send_ping(b"p")
    got = [server.recv_frame() for _ in range(5)]
    assert got[0] == (True, OP_TEXT, b'{"type": "hello", "n": 1}'), got
    assert [f.opcode for f in got[1:]] == [OP_TEXT, OP_CONT, OP_CONT,
                                          OP_PING]
    assert got[1].fin is False and got[3] == (True, OP_CONT, b"\xc3\xa9")
    stream = (encode_frame(OP_PING, b"x", mask=False)
              + encode_frame(OP_TEXT, b'{"type":"ping"}', mask=False)
              + encode_frame(OP_TEXT, b'{"type":', fin=False, mask=False)
              + encode_frame(OP_PONG, b"", mask=False)
              + encode_frame(OP_CONT, b'"welcome"}', mask=False)
              + encode_frame(OP_TEXT, b"z" * 70000, mask=False)
              + encode_frame(OP_CLOSE, close_payload(1009), mask=False))
    import threading  # a writer: the socket pair's buffer is small

    def dribble():
        for i in range(0, len(stream), 997):
            b.sendall(stream[i:i + 997])
    writer = threading.Thread(target=dribble)
    writer.start()
    assert client.recv_type("welcome") == {"type": "welcome"}
    assert server.recv_frame() == (True, OP_PONG, b"x")       # auto pong
    assert server.recv_json() == {"type": "pong"}             # recv_type's
    assert client.recv_text() == "z" * 70000
    writer.join()
    try:
        client.recv_json()
        raise AssertionError("no WsClosed")
    except WsClosed as e:
        assert e.code == 1009 and e.reason == b""
    b.sendall(encode_frame(OP_CLOSE, close_payload(1002, "x"), mask=False))
    assert client.recv_close() == (1002, b"x")
    assert server.recv_frame() == (True, OP_CLOSE, b"\x03\xea")  # echoed
    assert server.close_received == (1002, b"")
    b.sendall(encode_frame(OP_TEXT, b"masked"))
    try:
        client.recv_frame()
        raise AssertionError("masked frame accepted")
    except WsProtocolError:
        pass
    t = time.monotonic()
    assert client.closed_by_server(0.2) is False
    assert 0.15 < time.monotonic() - t < 1
    b.sendall(encode_frame(OP_TEXT, b"last", mask=False))
    b.close()
    assert client.closed_by_server(2) is True
    assert client.recv_frame() is None
    assert client.recv_close() == (None, None)
    client.close()
    print("wsraw: self-check passed")


if __name__ == "__main__":
    _self_check()
