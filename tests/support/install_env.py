"""The plugin's distributions and fresh virtualenvs to install them into, for the install tests.

scripts/test.sh builds the wheel and the sdist once and names their folder in
OCTOPRINT_MQTT_DIST; without it (pytest run by hand) they are built here, once per session.
Fresh virtualenvs get OctoPrint from uv, which takes seconds from its cache where pip takes most
of a minute; pip is seeded into them, and the plugin itself is always installed by that pip, as
users and OctoPrint's plugin manager do.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DIST_NAME = "OctoPrint-MQTT"


def project_version() -> str:
    """The package version: Cargo.toml's (pyproject.toml takes it from there)."""
    text = (ROOT / "Cargo.toml").read_text()
    return re.search(r'^version = "([^"]+)"', text, re.M).group(1)


def octoprint_requirement() -> str:
    """The OctoPrint line of tests/requirements.txt, so fresh venvs match the test venv."""
    for line in (ROOT / "tests" / "requirements.txt").read_text().splitlines():
        if line.lower().startswith("octoprint"):
            return line.strip()
    raise AssertionError("no OctoPrint requirement in tests/requirements.txt")


def build_env() -> dict[str, str]:
    """Environment for anything that may build the plugin (pip, maturin, OctoPrint's plugin
    manager): cargo shares the checkout's target directory, so a build from an sdist unpacked
    somewhere else reuses the compiled dependencies and compiles only the plugin's crate."""
    return {**os.environ, "CARGO_TARGET_DIR": str(ROOT / "target")}


def run(cmd: list, timeout: float, env: dict | None = None, cwd: Path | None = None) -> str:
    """Runs cmd, returns stdout and stderr together; fails with both when it fails. Run Python
    away from the checkout (cwd): its octoprint_mqtt folder would shadow the installed one."""
    done = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"{cmd} exited with {done.returncode}:\n{output[-6000:]}")
    return output


def tool(name: str) -> str:
    """A command of the test virtualenv (maturin, uv, auditwheel), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise AssertionError(f"{name} is not installed (pip install -r tests/requirements.txt)")
    return found


# --------------------------------------------------------------------------
# Distributions
# --------------------------------------------------------------------------


@dataclass
class Dists:
    wheel: Path
    sdist: Path


def build_dists(out: Path) -> None:
    """The same two commands as scripts/env.sh."""
    run([tool("maturin"), "build", "--release", "--out", out], 900, env=build_env(), cwd=ROOT)
    run([tool("maturin"), "sdist", "--out", out], 300, env=build_env(), cwd=ROOT)


def restamped_sdist(sdist: Path, out: Path) -> Path:
    """A copy of `sdist` whose members are dated now. maturin dates them in 2006 (reproducible
    builds), so cargo, sharing the target directory, would take the checkout's build as up to
    date and never compile the sdist's own sources; dated after that build, they are."""
    now = time.time() + 2
    copy = out / sdist.name
    with tarfile.open(sdist) as source, tarfile.open(copy, "w:gz") as target:
        for member in source.getmembers():
            member.mtime = now
            data = source.extractfile(member) if member.isfile() else None
            target.addfile(member, data)
    return copy


def find_dists(fallback_dir: Path) -> Dists:
    given = os.environ.get("OCTOPRINT_MQTT_DIST")
    folder = Path(given) if given else fallback_dir
    if not given:
        build_dists(folder)
    wheels = sorted(folder.glob("*.whl"))
    sdists = sorted(folder.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, f"expected one wheel and one sdist: {folder}"
    return Dists(wheels[0], sdists[0])


def write_standin_wheel(out: Path, version: str) -> Path:
    """A minimal pure-Python plugin distributed as OctoPrint-MQTT `version`, standing in for
    the classic plugin (which is not on PyPI): same distribution name, package and plugin
    identifier, its base-topic default, a setuptools-style dist-info name, and a module of its
    own (`standin_marker.py`) whose disappearance shows pip removed the old files."""
    init = (
        "import octoprint.plugin\n\n\n"
        "class StandIn(octoprint.plugin.SettingsPlugin):\n"
        "    def get_settings_defaults(self):\n"
        '        return {"broker": {"url": None, "port": 1883},'
        ' "publish": {"baseTopic": "octoPrint/"}}\n\n\n'
        '__plugin_name__ = "MQTT"\n'
        f'__plugin_version__ = "{version}"\n'
        '__plugin_pythoncompat__ = ">=2.7,<4"\n'
        "__plugin_implementation__ = StandIn()\n"
    )
    info = f"OctoPrint_MQTT-{version}.dist-info"
    files = {
        "octoprint_mqtt/__init__.py": init,
        "octoprint_mqtt/standin_marker.py": "STANDIN = True\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: octoprint-mqtt tests\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": "[octoprint.plugin]\nmqtt = octoprint_mqtt\n",
    }
    record = []
    for name, text in files.items():
        data = text.encode()
        digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"

    path = out / f"OctoPrint_MQTT-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return path


# --------------------------------------------------------------------------
# Virtualenvs
# --------------------------------------------------------------------------


class Venv:
    """A fresh virtualenv with pip (and OctoPrint unless told otherwise)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.python = self.path / "bin" / "python"

    @classmethod
    def create(cls, path: Path, python: str | None = None, octoprint: bool = True) -> Venv:
        uv = tool("uv")
        run([uv, "venv", "--quiet", "--seed", "--python", python or sys.executable, path], 120)
        venv = cls(path)
        if octoprint:
            run(
                [uv, "pip", "install", "--quiet", "--python", venv.python, octoprint_requirement()],
                600,
            )
        return venv

    def pip(self, *args: object, timeout: float = 900) -> str:
        return run(
            [self.python, "-m", "pip", "--disable-pip-version-check", *args],
            timeout,
            env=build_env(),
            cwd=self.path,
        )

    def installed_version(self, dist: str = DIST_NAME) -> str | None:
        script = (
            "import importlib.metadata as m, sys\n"
            "try:\n    print(m.version(sys.argv[1]))\n"
            "except m.PackageNotFoundError:\n    print('')\n"
        )
        return run([self.python, "-c", script, dist], 60, cwd=self.path).strip() or None

    def site_packages(self) -> Path:
        found = list(self.path.glob("lib/python3*/site-packages"))
        assert len(found) == 1, found
        return found[0]

    def dist_infos(self) -> list[str]:
        """The dist-info folders of the plugin's distribution, whatever their spelling."""
        return sorted(
            p.name
            for p in self.site_packages().iterdir()
            if re.match(r"(?i)octoprint_mqtt-", p.name)
        )


def find_python(version: str) -> str | None:
    """An interpreter of `version` (e.g. "3.8") installed by pyenv or on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}"))
    if candidates:
        return str(candidates[-1])
    found = shutil.which(f"python{version}")
    # pyenv's shims are on PATH even for versions that are not selected, and then fail.
    return found if found and "/shims/" not in found else None


# --------------------------------------------------------------------------
# OctoPrint
# --------------------------------------------------------------------------


@contextlib.contextmanager
def serve_directory(directory: Path):
    """A loopback HTTP server for `directory`; yields its base URL. OctoPrint's plugin manager
    downloads install URLs with requests, which has no file:// support, so a "local URL" is
    one of these."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def loaded_plugin_version(log_text: str, name: str = "MQTT") -> str | None:
    """The version of plugin `name` in the last plugin list OctoPrint logged at startup."""
    found = re.findall(rf"^\|\s+{re.escape(name)} \(([^)]*)\) = ", log_text, re.M)
    return found[-1] if found else None
