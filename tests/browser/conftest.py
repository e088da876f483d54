"""Fixtures for the real-browser tests: JupyterLab / Voilà servers and headless Chromium.

The tests drive Debian's Chromium (``/usr/bin/chromium``, or ``$CHROMIUM``) through the
``playwright`` package; ``playwright install`` is never needed. They skip, saying why, only
when that browser or the playwright package is missing (a failure with XB_REQUIRE_BROWSER=1);
anything else that goes wrong fails. Screenshots go to ``tests/artifacts/``.
Servers run on free local ports with every Jupyter directory in a temporary folder, and are
shut down (only the process each fixture started) when the fixture ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_js import FIGURE  # beside this file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NOTEBOOK = HERE / "dashboard.ipynb"
ARTIFACTS = REPO / "tests" / "artifacts"
DOCS = REPO / "docs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
TOKEN = "exburn-browser-test"
SERVER_START_TIMEOUT_S = 120  # generous: the machine may be busy with other test runs


# --------------------------------------------------------------------------- availability
def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"BROWSER TESTS SKIPPED: no Chromium executable at {CHROMIUM} "
                "(run `make browser-deps` or `apt-get install chromium`, or set $CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return (f"BROWSER TESTS SKIPPED: the playwright package is not importable ({exc}); "
                "install the dev extras: pip install -e '.[dev]'")
    return None


@pytest.fixture(scope="session")
def browser_available() -> None:
    """Skip (saying why) when the browser tests cannot run; with XB_REQUIRE_BROWSER=1
    (for CI) that is a failure instead."""
    reason = browser_unavailable()
    if reason and os.environ.get("XB_REQUIRE_BROWSER") == "1":
        pytest.fail(reason.replace("SKIPPED", "REQUIRED (XB_REQUIRE_BROWSER=1)"), pytrace=False)
    if reason:
        pytest.skip(reason)


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(probe: str, proc: subprocess.Popen, timeout: float) -> float:
    """Wait until ``probe`` answers: ``tcp:PORT`` (a connect) or an HTTP URL (status 200)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} while starting")
        try:
            if probe.startswith("tcp:"):  # a GET / on Voilà would execute the notebook
                socket.create_connection(("127.0.0.1", int(probe[4:])), timeout=2).close()
                return time.monotonic() - t0
            with urllib.request.urlopen(probe, timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server did not answer {probe} within {timeout:.0f}s")


class Server:
    """A Jupyter server process with isolated config/data/runtime dirs under ``root``."""

    def __init__(self, cmd: list[str], root: Path, probe: str | None, name: str,
                 shutdown_url: str | None = None, cwd: Path | None = None,
                 env: dict | None = None):
        self.root, self.name, self.shutdown_url = root, name, shutdown_url
        self.log_path = root / f"{name}.log"
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / "cfg"),
                   JUPYTER_RUNTIME_DIR=str(root / "rt"), JUPYTER_DATA_DIR=str(root / "data"),
                   JUPYTERLAB_WORKSPACES_DIR=str(root / "ws"), IPYTHONDIR=str(root / "ipy"),
                   JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1", **(env or {}))
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        # The "get notified about Jupyter news?" toast can cover widgets: disable it.
        labconfig = root / "cfg" / "labconfig"
        labconfig.mkdir(parents=True, exist_ok=True)
        (labconfig / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        # A session of its own: `make serve-*` runs the server as its child, and stop()
        # ends that group (only what this fixture started).
        self.proc = subprocess.Popen(cmd, cwd=cwd or root / "nb", env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if probe is None:  # the server prints its URL: wait for it, then probe that
                self.url = self._printed_url()
                probe = (f"tcp:{self.url.split(':')[2].split('/')[0]}" if "token=" not in
                         self.url else self.url.split("/lab")[0] + "/api/status?token="
                         + self.url.split("token=")[1])
                if "token=" in self.url:
                    self.shutdown_url = probe.replace("/api/status", "/api/shutdown")
            self.startup_s = _wait_ready(probe, self.proc, SERVER_START_TIMEOUT_S)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"{name} did not start: {exc}\n--- {self.log_path} ---\n"
                               f"{self.log_tail()}") from None

    def _printed_url(self) -> str:
        t0 = time.monotonic()
        while time.monotonic() - t0 < SERVER_START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode}")
            for word in self.log_path.read_text(errors="replace").split():
                if word.startswith("http://127.0.0.1:") or word.startswith("http://localhost:"):
                    return word
            time.sleep(0.2)
        raise TimeoutError("no URL printed")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Ask the server to shut down (it stops its kernels), then end its process group
        (the one this fixture started: `make` and the server under it)."""
        proc = self.proc
        asked = False
        if proc.poll() is None and self.shutdown_url:
            with contextlib.suppress(OSError):  # then the signals below
                urllib.request.urlopen(urllib.request.Request(self.shutdown_url, method="POST"),
                                       timeout=10).close()
                asked = True
        for sig in ((None,) if asked else ()) + (signal.SIGTERM, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
            try:
                proc.wait(20)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # a server left behind by make
            os.killpg(proc.pid, signal.SIGTERM)
        self._log.close()


def _copy_notebook(root: Path) -> Path:
    (root / "nb").mkdir(parents=True)
    return Path(shutil.copy(NOTEBOOK, root / "nb" / NOTEBOOK.name))


@pytest.fixture(scope="session")
def lab_server(browser_available, tmp_path_factory) -> Iterator[dict]:
    """One JupyterLab for the session (a test opens its own notebook copy and workspace)."""
    root = tmp_path_factory.mktemp("lab")
    _copy_notebook(root)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={TOKEN}",
           f"--ServerApp.root_dir={root / 'nb'}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    server = Server(cmd, root, f"{base}/api/status?token={TOKEN}", "jupyterlab",
                    shutdown_url=f"{base}/api/shutdown?token={TOKEN}")
    print(f"\n[browser] JupyterLab ready in {server.startup_s:.1f}s on port {port}")
    yield {"base": base, "token": TOKEN, "dir": root / "nb", "server": server}
    t0 = time.monotonic()
    server.stop()
    print(f"\n[browser] JupyterLab shut down in {time.monotonic() - t0:.1f}s "
          f"(exit status {server.proc.returncode})")


@pytest.fixture
def voila_server(browser_available, tmp_path) -> Iterator[dict]:
    """Voilà serving a fresh copy of the dashboard notebook (one per test)."""
    nb = _copy_notebook(tmp_path)
    port = free_port()
    cmd = [sys.executable, "-m", "voila", nb.name, "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1"]
    server = Server(cmd, tmp_path, f"tcp:{port}", "voila")
    print(f"\n[browser] Voila listening after {server.startup_s:.1f}s on port {port}")
    yield {"base": f"http://127.0.0.1:{port}", "server": server}
    server.stop()


# --------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser(browser_available):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS, headless=True)
        yield b
        b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(browser, request):
    """A fresh browser context and page; ``page.errors`` collects uncaught page errors.

    When the test fails, a screenshot goes to ``tests/artifacts/fail_<test>.png``.
    """
    ctx = browser.new_context(viewport={"width": 1400, "height": 1400})
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"fail_{request.node.name}.png"
        try:
            pg.screenshot(path=str(shot))
            print(f"\n[browser] failure screenshot: {shot}")
        except Exception as exc:  # the page may be gone; the failure itself is what matters
            print(f"\n[browser] no failure screenshot: {exc}")
        if pg.errors:
            print("[browser] page errors:\n  " + "\n  ".join(pg.errors))
        for name in ("lab_server", "voila_server"):
            if name in request.fixturenames:
                server = request.getfixturevalue(name)["server"]
                print(f"--- {server.log_path} (tail) ---\n{server.log_tail()}")
    ctx.close()


# --------------------------------------------------------------------------- the dashboard


class Dashboard:
    """The TrainingDashboard as the browser shows it, found by its ``xb-*`` CSS classes."""

    def __init__(self, page):
        self.page = page

    def screenshot(self, path: Path) -> None:
        """A screenshot with the dashboard in view and the mouse off the plot (no modebar)."""
        self.page.mouse.move(0, 0)
        self.page.locator(".xb-dashboard").scroll_into_view_if_needed()
        self.page.wait_for_timeout(500)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))

    def wait_rendered(self, timeout_ms: int = 120_000) -> None:
        self.page.wait_for_selector("button.xb-start", timeout=timeout_ms)
        self.page.wait_for_selector(".js-plotly-plot.xb-figure .main-svg", timeout=timeout_ms)

    def points(self, trace: int) -> int:
        return self.page.evaluate(f"{FIGURE}?.data?.[{trace}]?.x?.length ?? -1")

    def status(self) -> str:
        return self.page.inner_text(".xb-status").strip()

    def wait_status(self, prefix: str, timeout_ms: int = 60_000) -> None:
        self.page.wait_for_function(
            "p => (document.querySelector('.xb-status')?.textContent ?? '').trim().startsWith(p)",
            arg=prefix, timeout=timeout_ms)

    def wait_points(self, trace: int, more_than: int, timeout_ms: int = 60_000) -> int:
        self.page.wait_for_function(
            f"n => ({FIGURE}?.data?.[{trace}]?.x?.length ?? -1) > n", arg=more_than,
            timeout=timeout_ms)
        return self.points(trace)

    def assert_healthy(self, root: str) -> None:
        """No widget failed to load, no error shown, no anywidget/plotly page error."""
        text = self.page.inner_text(root)
        assert "Loading widget" not in text and "Error displaying widget" not in text, text[:2000]
        assert "drawn by its kernel" not in text, "a live figure fell back to its static copy"
        visible = self.page.eval_on_selector_all(
            f"{root} .xb-export-only", "es => es.filter(e => e.offsetParent !== null).length")
        assert visible == 0, "an export-only copy of a figure shows beside the live one"
        errors = " ".join(self.page.eval_on_selector_all(".xb-error", "es => es.map(e => e.textContent)"))
        assert not errors.strip(), errors
        bad = [e for e in self.page.errors if "anywidget" in e.lower() or "plotly" in e.lower()]
        assert not bad, bad


@pytest.fixture
def dashboard(page) -> Dashboard:
    return Dashboard(page)


# --------------------------------------------------------------------------- make demo / app
def _repo_copy(root: Path) -> Path:
    """What `make serve-demo` / `serve-app` need (Makefile, binder/, notebooks/), copied, so
    a test that saves a notebook leaves the work tree as it was. exburn_nb itself comes
    from the repository (PYTHONPATH)."""
    copy = root / "repo"
    copy.mkdir()
    shutil.copy(REPO / "Makefile", copy)
    for folder in ("binder", "notebooks"):
        shutil.copytree(REPO / folder, copy / folder)
    return copy


MAKE_ENV = {"XB_QUICKSTART_EPOCHS": "400", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.fixture(scope="session")
def demo_server(browser_available, tmp_path_factory) -> Iterator[Server]:
    """`make serve-demo` (what `make demo` runs), as a newcomer starts it; ``.url`` is the
    URL it printed."""
    root = tmp_path_factory.mktemp("demo")
    copy = _repo_copy(root)
    (root / "nb").mkdir()
    server = Server(["make", "-s", "serve-demo", f"PY={sys.executable}", f"PORT={free_port()}"],
                    root, None, "demo", cwd=copy, env=MAKE_ENV)
    server.notebooks = copy / "notebooks"
    print(f"\n[browser] make demo printed {server.url} ({server.startup_s:.1f}s)")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_server(browser_available, tmp_path_factory) -> Iterator[Server]:
    """`make serve-app` (what `make app` runs): Voilà on notebooks/app.ipynb."""
    root = tmp_path_factory.mktemp("app")
    copy = _repo_copy(root)
    (root / "nb").mkdir()
    server = Server(["make", "-s", "serve-app", f"PY={sys.executable}", f"PORT={free_port()}"],
                    root, None, "app", cwd=copy, env=MAKE_ENV)
    print(f"\n[browser] make app printed {server.url} ({server.startup_s:.1f}s)")
    yield server
    server.stop()
