"""SSH port forwarding over pyinfra's own connection, for controller-side database work.

Hosts reached over SSH often have PostgreSQL listening only on their localhost. The
migrations run on the controller (Aerich is Python), so they reach the database through a
``direct-tcpip`` channel of the same paramiko transport pyinfra already opened — the
inventory's keys and host-key policy apply, and no extra process or port is opened on the
target.

    with forward(host.connector.client.get_transport(), "127.0.0.1", 5432) as tunnel:
        psycopg.connect(host="127.0.0.1", port=tunnel.port, ...)
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any


def _pump(client: socket.socket, channel: Any) -> None:
    try:
        while True:
            readable, _, _ = select.select([client, channel], [], [], 1.0)
            if client in readable:
                data = client.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in readable:
                data = channel.recv(65536)
                if not data:
                    break
                client.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(Exception):
            channel.close()
        with contextlib.suppress(OSError):
            client.close()


# paramiko logs every refused channel on its own line without naming the host; the deploy
# reports the failure itself, once, with the host.
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)


class Tunnel:
    """A running forward: ``port`` on 127.0.0.1, and what the SSH server refused so far."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.errors: list[str] = []


@contextlib.contextmanager
def forward(transport: Any, remote_host: str, remote_port: int) -> Iterator[Tunnel]:
    """Listen on 127.0.0.1:<ephemeral>; each connection opens one channel to the remote end."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = threading.Event()
    tunnel = Tunnel(port)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            try:
                channel = transport.open_channel("direct-tcpip", (remote_host, remote_port), peer)
            except Exception as exc:  # paramiko.ChannelException and friends
                tunnel.errors.append(f"{remote_host}:{remote_port}: {exc}")
                client.close()
                continue
            threading.Thread(target=_pump, args=(client, channel), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield tunnel
    finally:
        stop.set()
        listener.close()
        acceptor.join(timeout=2)


def endpoint_problem(host: Any, remote_host: str, remote_port: int, *, tunnel: bool) -> str | None:
    """Why the controller could not reach the database for the migrations, or None.

    Checked before provisioning when migrations are pending, so a closed endpoint stops the
    run before anything changes instead of after roles and grants were committed.
    """
    where = f"{remote_host}:{remote_port}"
    if not tunnel:
        try:
            socket.create_connection((remote_host, remote_port), timeout=5).close()
        except OSError as exc:
            return f"the migrations cannot reach the database at {where} ({exc.strerror or exc})"
        return None
    client = getattr(host.connector, "client", None)
    if client is None:
        return f"pg_tunnel needs a host reached over SSH; {host.name} is not"
    try:
        channel = client.get_transport().open_channel(
            "direct-tcpip", (remote_host, remote_port), ("127.0.0.1", 0), timeout=10
        )
        channel.close()
    except Exception as exc:  # paramiko.ChannelException, SSHException, socket errors
        reason = exc.args[1] if len(getattr(exc, "args", ())) > 1 else exc
        return f"the migrations cannot reach the database (SSH tunnel: {where}: {reason})"
    return None
