"""The request path's Redis connection: a plain socket, RESP written by hand, hiredis reads.

A recommendation request sends one pipeline of four small commands. Through
redis-py's connection and parser objects that round trip costs the worker
~60-90 µs of CPU; on a socket of our own with ``hiredis.Reader`` (the C
reply parser redis-py itself uses) it costs ~15 µs. ``WireConnection`` is
that socket: it connects to a ``redis://`` or ``unix://`` URL (password,
user name and database as redis-py reads them from the URL), sends packed
commands and reads exactly as many replies. TLS URLs (``rediss://``) are not
handled here: ``WireConnection.supports(url)`` tells, and the gateway then
keeps redis-py's connection.

Errors: socket failures and timeouts raise ``OSError`` (``TimeoutError``,
``ConnectionError``); an error reply raises ``redis.ResponseError``. After
either, the connection is closed and the next call connects again.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import hiredis
import redis
from redis.connection import parse_url

_SCHEMES = ("redis", "unix")
_READ_BYTES = 65_536


class WireConnection:
    """One blocking connection to Redis for pipelined request-path reads."""

    def __init__(self, url: str, timeout_s: float):
        if not self.supports(url):
            raise ValueError(f"WireConnection takes redis:// or unix:// URLs, not {url!r}")
        self.options = parse_url(url)
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._reader: hiredis.Reader | None = None

    @staticmethod
    def supports(url: str) -> bool:
        """True for the URL schemes this connection speaks (plain TCP and unix sockets)."""
        return urlsplit(url).scheme in _SCHEMES

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def call(self, packed: bytes, n_replies: int) -> list:
        """Send ``packed`` (RESP commands) and return the next ``n_replies`` replies."""
        if self._sock is None:
            self._connect()
        try:
            self._sock.sendall(packed)
            return self._read(n_replies)
        except BaseException:
            self.close()  # replies may be left unread: never reuse this socket
            raise

    def close(self) -> None:
        """Close the socket (the next ``call`` connects again)."""
        sock, self._sock, self._reader = self._sock, None, None
        if sock is not None:
            sock.close()

    def _read(self, n_replies: int) -> list:
        reader, sock = self._reader, self._sock
        out = []
        while len(out) < n_replies:
            reply = reader.gets()
            if reply is False:
                data = sock.recv(_READ_BYTES)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                reader.feed(data)
                continue
            out.append(reply)
        for reply in out:
            if isinstance(reply, hiredis.ReplyError):
                raise redis.ResponseError(str(reply))
        return out

    def _connect(self) -> None:
        opts = self.options
        if "path" in opts:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(opts["path"])
            except BaseException:
                sock.close()
                raise
        else:
            address = (opts.get("host") or "localhost", int(opts.get("port") or 6379))
            sock = socket.create_connection(address, timeout=self.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._reader = sock, hiredis.Reader()
        handshake = []
        password, user = opts.get("password"), opts.get("username")
        if password is not None:
            handshake.append(("AUTH", user, password) if user else ("AUTH", password))
        if int(opts.get("db") or 0):
            handshake.append(("SELECT", int(opts["db"])))
        if handshake:
            self.call(pack_commands(handshake), len(handshake))


def pack_commands(commands: list[tuple]) -> bytes:
    """Commands in the Redis protocol (RESP), ready to write."""
    parts = []
    for command in commands:
        parts.append(f"*{len(command)}\r\n")
        for arg in command:
            if isinstance(arg, bytes):
                return _pack_bytes(commands)
            text = str(arg)
            if not text.isascii():  # key names are ASCII; anything else goes as UTF-8
                return _pack_bytes(commands)
            parts.append(f"${len(text)}\r\n{text}\r\n")
    return "".join(parts).encode()


def _pack_bytes(commands: list[tuple]) -> bytes:
    parts = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
