"""The test harness itself: servers end with the session, even an interrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SLOW_TEST = """
import json, os, time
def test_waits(pg_server):
    cluster = pg_server.cluster
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    with open(os.environ["PGPROV_HARNESS_OUT"], "w") as fh:
        json.dump({"pid": pid, "base": cluster.base}, fh)
    time.sleep(120)
"""


def default_sigint() -> None:
    """Run in the child before exec: Ctrl-C acts as it does at a terminal, however this suite
    was started. A shell that backgrounds a job without job control (``nohup make test &``,
    some CI runners) sets SIGINT to ignored, and an ignored signal stays ignored across exec,
    so the inner pytest would never see the signal this test sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_session_stops_its_local_server(tmp_path: Path, signum: int) -> None:
    (tmp_path / "test_slow.py").write_text(SLOW_TEST)
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403\n")
    out = tmp_path / "server.json"
    env = {
        **os.environ,
        "PGPROV_TEST_BACKEND": "local",
        "PGPROV_HARNESS_OUT": str(out),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.exists(), "the inner session never started its server"
    server = json.loads(out.read_text())
    assert alive(server["pid"])
    proc.send_signal(signum)
    proc.communicate(timeout=60)
    assert not alive(server["pid"]), "the postmaster outlived the interrupted session"
    assert not Path(server["base"]).exists(), "the cluster's directory was left behind"
