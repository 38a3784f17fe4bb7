"""The platform served for real on loopback, for browser, API-client and deployment tests.

``LiveServer`` gives the app its own database (a new database on the throw-away PostgreSQL
cluster of scripts/testenv.py, else an SQLite file), its own DATA_DIR, migrates it, and runs
``manage.py serve`` (uvicorn: HTTP + websockets) in a subprocess on a free port. Tests prepare
data with ``server.shell(code)`` / ``server.manage(...)``, which run against the same database,
and wait for the model with ``server.wait_for("/readyz")``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.support.waiting import WaitTimeout, wait_until

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from throwaway_services import free_port  # noqa: E402


class LiveServerError(RuntimeError):
    pass


def _read_timeout(deadline: float) -> float:
    """What is left of the caller's deadline (a poll's read never outlives it, nor ends before it)."""
    return max(0.1, deadline - time.monotonic())


class LiveServer:
    def __init__(
        self,
        directory: Path,
        *,
        model_path: Path | None = None,
        env: dict[str, str] | None = None,
        profile: str = "test",
        database_url: str | None = None,
        runserver: bool = False,
    ) -> None:
        self.directory = directory
        self.runserver = runserver  # served by `manage.py runserver` (daphne, as `make run`) instead
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self._database_name: str | None = None
        self._server_url = os.environ.get("DATABASE_URL", "")
        self.env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DATA_DIR", "REDIS_URL"}}
        self.env.update(
            PLATFORM_PROFILE=profile,
            DATA_DIR=str(directory / "data"),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            PYTHONUNBUFFERED="1",
            # stop() sends SIGTERM: answers still running get this long before they are ended
            SHUTDOWN_GRACE_SECONDS="2",
        )
        if model_path is not None:
            self.env["MODEL_PATH"] = str(model_path)
        self.env.update(env or {})
        self._shared_database_url = database_url
        self._process: subprocess.Popen | None = None
        self.log_path = directory / "server.log"

    # --- database -------------------------------------------------------------------------------
    def _create_database(self) -> None:
        if self._shared_database_url:
            # Another process of the same installation (scale-out): same database, nothing to create.
            self.env["DATABASE_URL"] = self._shared_database_url
            return
        if self._server_url.startswith("postgres"):
            import psycopg

            self._database_name = f"live_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(self._server_url, autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{self._database_name}"')
            self.env["DATABASE_URL"] = self._server_url.rsplit("/", 1)[0] + "/" + self._database_name
        else:
            self.env["DATABASE_URL"] = f"sqlite:///{self.directory / 'data' / 'db.sqlite3'}"

    def _drop_database(self) -> None:
        if self._database_name:
            import psycopg

            with psycopg.connect(self._server_url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{self._database_name}" WITH (FORCE)')

    # --- commands against the same database -------------------------------------------------------
    def manage(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise LiveServerError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def shell(self, code: str) -> str:
        """Run Python in the app's context (Django set up) and return what it printed."""
        return self.manage("shell", "--no-imports", "-c", code).stdout.strip()

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, *, timeout: float = 120, prepare=None, behind_proxy: bool = False) -> LiveServer:
        """Create the database, migrate, run ``prepare(self)`` if given, then serve.

        Served as in production, by ``manage.py serve``. ``behind_proxy``: the platform believes
        X-Forwarded-For from 127.0.0.1 (TRUSTED_PROXIES), where the tests' nginx runs; then
        administration needs a network other than loopback (start-up refuses one that contains
        the proxy), a documentation range unless the test names one.
        """
        if behind_proxy:
            self.env.setdefault("TRUSTED_PROXIES", "127.0.0.1/32")
            self.env.setdefault("ADMIN_ALLOWED_NETWORKS", "192.0.2.0/24")
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        self._create_database()
        self.manage("migrate", "--noinput")
        if prepare is not None:
            prepare(self)
        if self.runserver:
            command = [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{self.port}"]
        else:
            command = [sys.executable, str(ROOT / "manage.py"), "serve", "--host", "127.0.0.1"]
            command += ["--port", str(self.port), "--log-level", "warning"]
        log = self.log_path.open("w")
        self._process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        try:
            wait_until(lambda: self._healthy(deadline), timeout=timeout, interval=0.2)
        except WaitTimeout:
            self.stop()
            raise LiveServerError(f"the server did not answer /healthz within {timeout:.0f}s") from None
        return self

    def _healthy(self, deadline: float) -> bool:
        self._check_running()
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=_read_timeout(deadline)) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False

    def _check_running(self) -> None:
        if self._process is None or self._process.poll() is not None:
            raise LiveServerError(f"the server exited:\n{self.log()[-3000:]}")

    def wait_for(self, path: str = "/readyz", *, headers: dict[str, str] | None = None, timeout: float = 180) -> dict:
        """Poll ``path`` until it answers 200 and return its JSON body.

        503 means "not yet" (the model loads in the background after the first request); any
        other answer, or the server exiting, fails at once.
        """
        request = urllib.request.Request(f"{self.base_url}{path}", headers=headers or {})  # noqa: S310 - loopback
        last: list[str] = ["no answer yet"]
        deadline = time.monotonic() + timeout

        def answered() -> dict | None:
            self._check_running()
            try:
                # A slow answer still counts until the deadline (no fixed per-read limit).
                with urllib.request.urlopen(request, timeout=_read_timeout(deadline)) as response:  # noqa: S310
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                last[0] = error.read().decode(errors="replace")
                if error.code != 503:
                    raise LiveServerError(f"{path} answered {error.code}: {last[0][:1000]}") from None
            except OSError as error:
                last[0] = repr(error)
            return None

        try:
            return wait_until(answered, timeout=timeout, interval=0.25)
        except WaitTimeout:
            detail = f"{path} did not answer 200 within {timeout:.0f}s: {last[0][:1000]}"
            raise WaitTimeout(f"{detail}\n{self.log()[-2000:]}") from None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()  # SIGTERM: the server drains (inference/shutdown.py) and exits
            try:
                grace = float(self.env.get("SHUTDOWN_GRACE_SECONDS", "20"))
                self._process.wait(timeout=grace + 30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._drop_database()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
