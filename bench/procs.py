"""Starting the benchmark's processes (Python workers, the Rust ceiling binaries) and reading
their one-line JSON answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
CEILING_BIN = HERE / "ceiling" / "target" / "release"


class Proc:
    """A child process whose stdout is read line by line on a thread of its own, so that
    waiting for "ready" or for the final JSON never blocks on a full pipe."""

    def __init__(self, argv: list[str], cwd: Path, name: str) -> None:
        self.name = name
        self.stderr_path = cwd / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, text: str, timeout: float) -> None:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: text in self.lines or self.proc.poll() is not None, timeout
            )
        if not ok or text not in self.lines:
            raise RuntimeError(f"{self.name} did not print {text!r}: {self.failure()}")

    def result(self, timeout: float) -> dict:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise RuntimeError(
                f"{self.name} took longer than {timeout} s: {self.failure()}"
            ) from None
        self._reader.join(5)
        self._stderr.close()
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{self.name} printed no result: {self.failure()}")

    def failure(self) -> str:
        self._stderr.flush()
        tail = self.stderr_path.read_text(errors="replace")[-2000:]
        return f"exit {self.proc.poll()}, stdout {self.lines[-5:]}, stderr:\n{tail}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def worker(cwd: Path, impl: str, mode: str, port: int, name: str, wrap: tuple = (), **opts) -> Proc:
    """`wrap`: a command the worker runs under (the profile's perf)."""
    argv = [*wrap, sys.executable, str(HERE / "worker.py"), impl, mode, "--port", str(port)]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return Proc(argv, cwd, name)


def ceiling(
    cwd: Path, binary: str, mode: str | None, port: int, name: str, wrap: tuple = (), **opts
) -> Proc:
    argv = [*wrap, str(CEILING_BIN / binary)] + ([mode] if mode else []) + ["--port", str(port)]
    for key, value in opts.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return Proc(argv, cwd, name)


def subscriber(cwd: Path, port: int, name: str, **opts) -> Proc:
    """bench-sub, started and subscribed (it printed "ready")."""
    sub = ceiling(cwd, "bench-sub", None, port, name, **opts)
    sub.wait_line("ready", 15)
    return sub


def classic_venv() -> Path:
    """The classic plugin's OctoPrint virtualenv (figures 8, 10, 11), which scripts/bench.sh
    makes and names in BENCH_CLASSIC_VENV."""
    classic = os.environ.get("BENCH_CLASSIC_VENV")
    if not classic:
        raise RuntimeError("BENCH_CLASSIC_VENV is not set: run the benchmark with scripts/bench.sh")
    return Path(classic)
