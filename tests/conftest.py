"""Shared fixtures: small real data (scikit-learn's digits) and small models."""

import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import exburn_nb as xb


@pytest.fixture(scope="session")
def digits():
    """``(x, y), (tx, ty)`` from scikit-learn's digits, standardised."""
    return xb.datasets.digits()


@pytest.fixture
def mlp():
    """A factory for a small seeded digits MLP."""
    def make(optimizer="adam", learning_rate=1e-3, **kw):
        spec = (xb.input("input", shape=(None, 64)).dense(32, activation="relu", name="hidden")
                .dense(10, name="output"))
        return xb.compile(spec, optimizer=optimizer, learning_rate=learning_rate, seed=0, **kw)
    return make


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_reaches_python():
    """The tests that press Ctrl-C (``os.kill(pid, SIGINT)``) need Python's own handler.
    A process started in the background of a non-interactive shell (``nohup ... &``)
    inherits SIGINT ignored, and Python then installs no handler: those tests would train
    to their last epoch (100,000) instead of stopping. Give it the handler an interactive
    start has (its children then get the default disposition too)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True)
def no_leftover_training_threads():
    """Every test must leave no training thread running."""
    yield
    alive = [t for t in threading.enumerate() if t.name == "exburn-fit"]
    for t in alive:
        t.join(10)
    assert not [t for t in alive if t.is_alive()], "a training thread outlived its test"


RANKS_TIMEOUT_S = 120  # a data-parallel test's limit: ranks that disagree would hang


@pytest.fixture
def ranks_timeout():
    """A data-parallel test ends within :data:`RANKS_TIMEOUT_S` (SIGALRM) and leaves no
    rank behind (use with ``pytestmark = pytest.mark.usefixtures("ranks_timeout")``)."""
    def expire(signum, frame):
        raise TimeoutError(f"test ran past {RANKS_TIMEOUT_S} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(RANKS_TIMEOUT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert multiprocessing.active_children() == []


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- PostgreSQL
POSTGRES_BINARIES = ("initdb", "pg_ctl")


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (the newest version), or the one
    on PATH; None when there is none."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if all((folder / name).exists() for name in POSTGRES_BINARIES):
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when they can."""
    if postgres_bin() is None:
        return ("POSTGRES TESTS SKIPPED: no initdb/pg_ctl (under /usr/lib/postgresql/*/bin or "
                "on PATH); `make postgres-deps` (root) or `apt-get install postgresql`")
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1 drives postgresql:// URLs with it)
    except ImportError as exc:
        return (f"POSTGRES TESTS SKIPPED: the psycopg driver is not importable ({exc}); "
                "install the dev extras: pip install -e '.[dev]'")
    if os.getuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return ("POSTGRES TESTS SKIPPED: running as root and there is no 'postgres' user "
                    "for initdb (it refuses to run as root)")
    return None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """The URL of a PostgreSQL server of our own: a new cluster in a temporary folder
    (``initdb``), started by ``pg_ctl`` on a free port with its unix socket in that folder
    (no TCP), stopped by its PID at the end. Run as the ``postgres`` user when we are root
    (initdb refuses root). Skips saying why when PostgreSQL or psycopg is missing; with
    XB_REQUIRE_POSTGRES=1 (set by ``.ci/run``) that is a failure instead."""
    reason = postgres_unavailable()
    if reason and os.environ.get("XB_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason.replace("SKIPPED", "REQUIRED (XB_REQUIRE_POSTGRES=1)"), pytrace=False)
    if reason:
        print(f"\n{reason}", file=sys.stderr)
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="xb-pg-"))  # short: a socket path has ~100 bytes
    as_user: list[str] = []
    if os.getuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, binaries = folder / "data", postgres_bin()
    run = lambda *command: subprocess.run([*as_user, *command], check=True,  # noqa: E731
                                          capture_output=True, text=True, timeout=120)
    pid = None
    try:
        run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "exburn",
            "--no-sync", "-E", "UTF8")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
            "-t", "60", "-o", f"-p {port} -k {folder} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off", "start")
        pid = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://exburn@/postgres?host={folder}&port={port}"
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"PostgreSQL could not start: {exc.cmd}\n{exc.stdout}\n{exc.stderr}",
                    pytrace=False)
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGINT)  # the server's "fast" shutdown: only the one we started
            for _ in range(300):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        shutil.rmtree(folder, ignore_errors=True)
