"""SSH port forwarding, with a fake transport: bytes go through; refusals are recorded."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from typing import Any

import pgprov.catalog.tunnel
import pytest
from pgprov.catalog.tunnel import forward


def echo(sock: socket.socket) -> None:
    with sock:
        while data := sock.recv(65536):
            sock.sendall(data)


class EchoTransport:
    """Each channel is one end of a socketpair; the other end echoes in a thread."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, tuple[str, int], Any]] = []

    def open_channel(self, kind: str, dest: tuple[str, int], src: Any) -> socket.socket:
        self.opened.append((kind, dest, src))
        ours, theirs = socket.socketpair()
        threading.Thread(target=echo, args=(theirs,), daemon=True).start()
        return ours


class RefusingTransport:
    def open_channel(self, kind: str, dest: tuple[str, int], src: Any) -> socket.socket:
        raise ConnectionRefusedError("administratively prohibited")


def roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_bytes_sent_to_the_local_port_travel_through_the_channel_and_back() -> None:
    transport = EchoTransport()
    with forward(transport, "127.0.0.1", 5432) as tunnel:
        payload = b"\x00\x00\x00\x08\x04\xd2\x16\x2f" * 1000
        assert roundtrip(tunnel.port, payload) == payload
        assert roundtrip(tunnel.port, b"second connection") == b"second connection"
    assert [(kind, dest) for kind, dest, _ in transport.opened] == [
        ("direct-tcpip", ("127.0.0.1", 5432)),
        ("direct-tcpip", ("127.0.0.1", 5432)),
    ]
    assert tunnel.errors == []


def test_tunnel_stops_listening_on_exit() -> None:
    with forward(EchoTransport(), "db", 5432) as tunnel:
        port = tunnel.port
        assert roundtrip(port, b"ping") == b"ping"
    time.sleep(0.05)
    probe = socket.socket()
    try:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        probe.close()


def test_refused_channel_is_recorded_and_the_client_is_closed() -> None:
    with forward(RefusingTransport(), "db.internal", 5432) as tunnel:
        with socket.create_connection(("127.0.0.1", tunnel.port), timeout=5) as client:
            assert client.recv(1) == b""  # closed by the tunnel, not left hanging
        deadline = time.monotonic() + 5
        while not tunnel.errors and time.monotonic() < deadline:
            time.sleep(0.01)
    assert tunnel.errors == ["db.internal:5432: administratively prohibited"]


class LateThread(threading.Thread):
    """A thread that is scheduled late, as a busy controller may do."""

    def run(self) -> None:
        time.sleep(0.2)
        super().run()


def test_tunnel_closed_before_its_thread_runs_ends_cleanly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))
    monkeypatch.setattr(
        pgprov.catalog.tunnel,
        "threading",
        SimpleNamespace(Thread=LateThread, Event=threading.Event),
    )
    with forward(EchoTransport(), "db", 5432):
        pass
    assert failures == []
