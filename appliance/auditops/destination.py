"""Where audit entries are forwarded: ``syslog+tcp://``, ``syslog+udp://`` or
``syslog+tls://`` ``host:port``, and the socket that sends them.

TCP and TLS frame each message by octet counting (RFC 6587 section 3.4.1,
``LEN SP MSG``, what RFC 5425 mandates for TLS); UDP sends one message per
datagram (RFC 5426). Every operation has a timeout: a dead receiver costs the
forwarder a few seconds, never a request.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = {"syslog+tcp": "tcp", "syslog+udp": "udp", "syslog+tls": "tls"}
TIMEOUT_SECONDS = 5.0


class DestinationError(ValueError):
    """The forwarding address is not one Coffre can send to."""


class SendFailed(Exception):
    """The receiver could not be reached or dropped the connection."""


@dataclass(frozen=True)
class Destination:
    transport: str  # tcp, udp or tls
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"syslog+{self.transport}://{host}:{self.port}"


def parse_destination(url: str) -> Destination:
    if not isinstance(url, str):
        raise DestinationError("must be a string such as syslog+tcp://siem.example:6514")
    parts = urlsplit(url)
    transport = SCHEMES.get(parts.scheme)
    if transport is None:
        raise DestinationError(f"{url!r}: the scheme must be one of {', '.join(sorted(SCHEMES))}")
    try:
        port = parts.port
    except ValueError:
        raise DestinationError(f"{url!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname or port is None or port == 0:
        raise DestinationError(f"{url!r}: give a host and a port, e.g. syslog+tcp://siem.example:514")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise DestinationError(f"{url!r}: only scheme://host:port is accepted")
    return Destination(transport, parts.hostname, port)


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the message length in decimal, a space, the message."""
    return str(len(message)).encode("ascii") + b" " + message


class Sender:
    """One connection to the receiver, opened on first use and after any failure."""

    def __init__(self, destination: Destination, ca_file: str | None = None) -> None:
        self.destination = destination
        self.ca_file = ca_file
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        d = self.destination
        if d.transport == "udp":
            info = socket.getaddrinfo(d.host, d.port, type=socket.SOCK_DGRAM)[0]
            sock = socket.socket(info[0], socket.SOCK_DGRAM)
            sock.settimeout(TIMEOUT_SECONDS)
            sock.connect(info[4])
            return sock
        raw = socket.create_connection((d.host, d.port), timeout=TIMEOUT_SECONDS)
        if d.transport == "tcp":
            return raw
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            return context.wrap_socket(raw, server_hostname=d.host)
        except BaseException:
            raw.close()
            raise

    def send(self, messages: Sequence[bytes]) -> None:
        """Send every message, or raise SendFailed (the caller sends them again later)."""
        try:
            if self._sock is None:
                self._sock = self._connect()
            elif self._peer_closed(0):
                self.close()
                self._sock = self._connect()
            sock = self._sock
            if self.destination.transport == "udp":
                for message in messages:
                    sock.send(message)
                return
            sock.sendall(b"".join(octet_frame(m) for m in messages))
            # A receiver that went away accepts the bytes into our buffer and answers
            # with a reset: look for it before the caller moves its cursor.
            if self._peer_closed(0.05):
                raise SendFailed("the receiver closed the connection")
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise SendFailed(f"{self.destination}: {exc}") from None
        except SendFailed:
            self.close()
            raise

    def _peer_closed(self, wait: float) -> bool:
        """Whether the receiver closed or reset the stream (syslog receivers never answer)."""
        sock = self._sock
        if sock is None or self.destination.transport == "udp":
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        readable, _, _ = select.select([sock], [], [], wait)
        if not readable:
            return False
        sock.settimeout(0)  # readable may only mean TLS session tickets: never block here
        try:
            data = sock.recv(1) if isinstance(sock, ssl.SSLSocket) else sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(TIMEOUT_SECONDS)
        return data == b""

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
