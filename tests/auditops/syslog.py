"""Test helpers: a real syslog receiver (TCP with RFC 6587 octet counting, or UDP)
and strict parsers for RFC 5424 and CEF, so formats are checked by parsing."""

from __future__ import annotations

import re
import socket
import threading
import time
from typing import Any


class SyslogReceiver:
    """Accepts TCP connections on a fixed port; each frame is ``LEN SP MSG``.
    ``stop`` drains what connections sent, then closes; ``start`` listens again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[str] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._running = False

    def start(self) -> SyslogReceiver:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        listener.settimeout(0.2)
        self._listener = listener
        self._running = True
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self) -> None:
        while self._running:
            try:
                conn, _ = self._listener.accept()  # type: ignore[union-attr]
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            with self._lock:
                self.connections += 1
                self._conns.append(conn)
            t = threading.Thread(target=self._read, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                if not self._running:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            buffer = self._frames(buffer)
        conn.close()

    def _frames(self, buffer: bytes) -> bytes:
        while True:
            space = buffer.find(b" ")
            if space < 0:
                return buffer
            length_text = buffer[:space]
            assert length_text.isdigit() and not length_text.startswith(b"0"), f"bad frame length {length_text!r}"
            length = int(length_text)
            if len(buffer) < space + 1 + length:
                return buffer
            message = buffer[space + 1 : space + 1 + length]
            with self._lock:
                self.messages.append(message.decode("utf-8"))
            buffer = buffer[space + 1 + length :]

    def stop(self) -> None:
        """Stop listening; readers drain what is already in their sockets, then close."""
        self._running = False
        if self._listener is not None:
            self._listener.close()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []
        self._conns = []

    def seqs(self) -> set[int]:
        with self._lock:
            return {int(parse_rfc5424(m)["sd"]["coffre@32473"]["seq"]) for m in self.messages}

    def wait_for(self, seqs: set[int], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if seqs <= self.seqs():
                return
            time.sleep(0.1)
        raise AssertionError(f"missing seqs: {sorted(seqs - self.seqs())[:20]}")


# --- RFC 5424 (strict) ------------------------------------------------------------

_HEADER = re.compile(
    r"^<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) "
    r"(?P<timestamp>-|\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})) "
    r"(?P<hostname>[\x21-\x7e]{1,255}) (?P<app>[\x21-\x7e]{1,48}) (?P<procid>[\x21-\x7e]{1,128}) "
    r"(?P<msgid>[\x21-\x7e]{1,32}) "
)
_SD_NAME = re.compile(r"[\x21-\x7e]{1,32}")


def parse_rfc5424(line: str) -> dict[str, Any]:
    """Parse one RFC 5424 message; raise ValueError on anything the ABNF forbids."""
    m = _HEADER.match(line)
    if not m:
        raise ValueError(f"bad header: {line[:80]!r}")
    pri = int(m["pri"])
    if pri > 191:
        raise ValueError("PRI out of range")
    rest = line[m.end() :]
    sd: dict[str, dict[str, str]] = {}
    if rest.startswith("-"):
        rest = rest[1:]
    else:
        while rest.startswith("["):
            i = 1
            name = _SD_NAME.match(rest, i)
            if not name or any(c in name.group() for c in '= ]"'):
                raise ValueError("bad SD-ID")
            sd_id = re.match(r'[^= \]"]+', rest[i:]).group()  # type: ignore[union-attr]
            i += len(sd_id)
            params: dict[str, str] = {}
            while rest[i] == " ":
                i += 1
                pname = re.match(r'[^= \]"]{1,32}', rest[i:])
                if not pname:
                    raise ValueError("bad PARAM-NAME")
                i += len(pname.group())
                if rest[i : i + 2] != '="':
                    raise ValueError('expected ="')
                i += 2
                value = []
                while True:
                    c = rest[i]
                    if c == "\\" and rest[i + 1] in '"\\]':
                        value.append(rest[i + 1])
                        i += 2
                    elif c == '"':
                        i += 1
                        break
                    elif c == "]":
                        raise ValueError("unescaped ] in PARAM-VALUE")
                    else:
                        value.append(c)
                        i += 1
                params[pname.group()] = "".join(value)
            if rest[i] != "]":
                raise ValueError("expected ]")
            if sd_id in sd:
                raise ValueError("duplicate SD-ID")
            sd[sd_id] = params
            rest = rest[i + 1 :]
    if rest and not rest.startswith(" "):
        raise ValueError("expected SP before MSG")
    return {
        "facility": pri // 8,
        "severity": pri % 8,
        "version": int(m["version"]),
        "timestamp": m["timestamp"],
        "hostname": m["hostname"],
        "app": m["app"],
        "procid": m["procid"],
        "msgid": m["msgid"],
        "sd": sd,
        "msg": rest[1:],
    }


# --- CEF -----------------------------------------------------------------------------


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Split a CEF line per the spec: 7 header fields separated by unescaped '|'
    (escapes \\| and \\\\), then key=value pairs whose values escape = and \\ and
    end where the next unescaped ``key=`` begins."""
    header: list[str] = []
    field: list[str] = []
    i = 0
    while len(header) < 7:
        c = line[i]
        if c == "\\":
            nxt = line[i + 1]
            if nxt not in "|\\":
                raise ValueError(f"bad header escape \\{nxt}")
            field.append(nxt)
            i += 2
        elif c == "|":
            header.append("".join(field))
            field = []
            i += 1
        else:
            field.append(c)
            i += 1
    if header[0] != "CEF:0":
        raise ValueError("not CEF:0")
    ext: dict[str, str] = {}
    text = line[i:]
    # tokens: find each unescaped '=' preceded by a key
    pos = 0
    key_re = re.compile(r"([A-Za-z0-9_]+)=")
    m = key_re.match(text, pos)
    while m:
        key = m.group(1)
        j = m.end()
        value: list[str] = []
        while j < len(text):
            c = text[j]
            if c == "\\":
                nxt = text[j + 1]
                value.append({"n": "\n", "r": "\r", "=": "=", "\\": "\\"}[nxt])
                j += 2
                continue
            if c == "=":
                raise ValueError("unescaped = in a value")
            if c == " ":
                nm = key_re.match(text, j + 1)
                if nm:
                    break
            value.append(c)
            j += 1
        ext[key] = "".join(value)
        m = key_re.match(text, j + 1) if j < len(text) else None
    return header, ext
