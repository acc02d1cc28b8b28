"""Run `pqscep serve` as a real process on a loopback port, for end-to-end and interop tests."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from peers import free_port

PQSCEP = [sys.executable, "-m", "pqscep.cli.main"]


def pqscep(*args: str, env: dict | None = None, check: bool = True, timeout: float = 120,
           input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the `pqscep` command line; on failure show everything it printed."""
    proc = subprocess.run([*PQSCEP, *map(str, args)], capture_output=True, env={**os.environ, **(env or {})},
                          timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"pqscep {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"stdout: {proc.stdout.decode(errors='replace')}\nstderr: {proc.stderr.decode(errors='replace')}"
        )
    return proc


def init_data(data_dir: Path, *, challenge: str = "secret", config_text: str | None = None,
              env: dict | None = None) -> Path:
    """`pqscep init`, then optionally replace the configuration (profiles get keys on start)."""
    pqscep("init", "--data", data_dir, "--challenge", challenge, env=env)
    if config_text is not None:
        (data_dir / "pqscep.toml").write_text(config_text)
    return data_dir


class ServerProcess:
    def __init__(self, data_dir: Path, *, port: int | None = None, workers: int = 1, env: dict | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.workers = workers
        self.env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/scep") -> str:
        return self.base + path

    @functools.cached_property
    def http(self) -> httpx.Client:
        """An HTTP client for this server (the in-process server offers the same attribute)."""
        return httpx.Client(timeout=60)

    def start(self, timeout: float = 60) -> ServerProcess:
        with open(self.log_path, "wb") as log:  # the server writes to its own copy of the descriptor
            self.proc = subprocess.Popen(
                [*PQSCEP, "serve", "--data", str(self.data_dir), "--port", str(self.port),
                 "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"pqscep serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"pqscep serve did not answer /health in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if "http" in self.__dict__:
            self.__dict__.pop("http").close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
