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

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent.parent
DIST_NAME = "OctoPrint-MQTT"


def project_version() -> str:
    """The release's version: Cargo.toml's, the core's (tests/test_packaging.py checks that the
    plugin's pyproject.toml says the same and pins the core to it)."""
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


# Cargo's overrides of Cargo.toml's [profile.release] for builds that prove a wheel builds,
# installs and loads rather than how fast it runs (the cross-built ARM wheels, the core's sdist
# compiled by pip): unoptimised, without link-time optimisation, with parallel code generation.
# Optimisation changes neither what a wheel holds nor how it links and loads, and costs most of
# the time on 2 cores (fat LTO about 2 minutes a build, unoptimised under one). scripts/demo.sh
# sets the same three for the same reason.
UNOPTIMISED_PROFILE = {
    "CARGO_PROFILE_RELEASE_OPT_LEVEL": "0",
    "CARGO_PROFILE_RELEASE_LTO": "off",
    "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16",
}
# Their own cargo target folder, so that they neither invalidate the release build in
# target/release nor rebuild each other's dependencies (the cross builds' build scripts and
# proc-macros are host code, shared with an unoptimised native build).
UNOPTIMISED_TARGET_DIR = ROOT / "target" / "unoptimised"


def unoptimised_build_env() -> dict[str, str]:
    """build_env() for the unoptimised builds (UNOPTIMISED_PROFILE)."""
    return {**build_env(), **UNOPTIMISED_PROFILE, "CARGO_TARGET_DIR": str(UNOPTIMISED_TARGET_DIR)}


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
    """A release's distributions: the plugin (pure Python; `sdist` is the one archive for every
    machine) and its native part, octoprint-mqtt-core (a wheel for this machine, and the sdist
    that is the fallback where no wheel fits)."""

    wheel: Path
    sdist: Path
    core_wheel: Path
    core_sdist: Path

    @property
    def folder(self) -> Path:
        """A find-links folder holding all four: what PyPI offers pip, here."""
        return self.wheel.parent


def build_dists(out: Path) -> None:
    """Built by scripts/env.sh's build_dists, the one recipe for a release's distributions."""
    script = 'source scripts/env.sh >/dev/null && build_dists "$1"'
    run(["bash", "-c", script, "build_dists", out], 1200, env=build_env(), cwd=ROOT)


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

    def one(pattern: str) -> Path:
        found = sorted(folder.glob(pattern))
        assert len(found) == 1, f"expected one {pattern} in {folder}: {found}"
        return found[0]

    return Dists(
        wheel=one("octoprint_mqtt-*.whl"),
        sdist=one("octoprint_mqtt-*.tar.gz"),
        core_wheel=one("octoprint_mqtt_core-*.whl"),
        core_sdist=one("octoprint_mqtt_core-*.tar.gz"),
    )


def write_standin_wheel(out: Path, version: str, native: bool = False) -> Path:
    """A minimal plugin distributed as OctoPrint-MQTT `version`: same distribution name,
    package and plugin identifier, the classic plugin's base-topic default, and a module of its
    own (`standin_marker.py`) whose disappearance shows pip removed the old files. native=True
    gives it 1.0.0's layout: one platform wheel with the native module inside the plugin's
    package (`octoprint_mqtt/_core.abi3.so`), which the split into two distributions ended."""
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
    tag = "cp38-abi3-manylinux_2_17_x86_64" if native else "py3-none-any"
    files = {
        "octoprint_mqtt/__init__.py": init,
        "octoprint_mqtt/standin_marker.py": "STANDIN = True\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: octoprint-mqtt tests\n"
            f"Root-Is-Purelib: {'false' if native else 'true'}\nTag: {tag}\n"
        ),
        f"{info}/entry_points.txt": "[octoprint.plugin]\nmqtt = octoprint_mqtt\n",
    }
    if native:
        files["octoprint_mqtt/_core.abi3.so"] = "not loaded by the stand-in\n"
    path = out / f"OctoPrint_MQTT-{version}-{tag}.whl"
    write_wheel(path, {name: text.encode() for name, text in files.items()}, info)
    return path


def write_wheel(path: Path, files: dict[str, bytes], info: str) -> None:
    """A wheel of `files` with the RECORD pip checks (`info` is the dist-info folder)."""
    record = []
    for name, data in files.items():
        if name != f"{info}/RECORD":
            digest = urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files = {**files, f"{info}/RECORD": ("\n".join(record) + "\n").encode()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)


def restamped_wheel(wheel: Path, version: str, out: Path, platform: str | None = None) -> Path:
    """A copy of one of our wheels as release `version`: the plugin's pins the core of that
    version; `platform` replaces the core wheel's platform tag (a wheel for another machine).
    What a later release would publish, for the update and upgrade tests."""
    name, old, rest = wheel.name.split("-", 2)
    old_info, new_info = f"{name}-{old}.dist-info", f"{name}-{version}.dist-info"
    files = {}
    with zipfile.ZipFile(wheel) as source:
        for member in source.namelist():
            data = source.read(member)
            if member.startswith(old_info + "/"):
                member = new_info + member[len(old_info) :]
                if member.endswith(("/METADATA", "/WHEEL")):
                    text = data.decode().replace(f"Version: {old}\n", f"Version: {version}\n")
                    text = text.replace(
                        f"octoprint-mqtt-core=={old}", f"octoprint-mqtt-core=={version}"
                    )
                    if platform:
                        text = re.sub(r"(Tag: cp38-abi3-).*", rf"\g<1>{platform}", text)
                    data = text.encode()
            files[member] = data
    if platform:
        rest = re.sub(r"(cp38-abi3-).*(\.whl)$", rf"\g<1>{platform}\2", rest)
    path = out / f"{name}-{version}-{rest}"
    write_wheel(path, files, new_info)
    return path


def write_simple_index(root: Path, files: list[Path]) -> Path:
    """A package index in `root` as a static site serves it (PEP 503 HTML pages), holding
    `files`, for pip's --index-url and the plugin's update check. Returns root/"simple"."""
    simple = root / "simple"
    projects: dict[str, list[Path]] = {}
    for file in files:
        project = canonicalize_name(file.name.split("-", 1)[0])
        projects.setdefault(project, []).append(file)
    for project, members in projects.items():
        folder = simple / project
        folder.mkdir(parents=True, exist_ok=True)
        links = []
        for file in members:
            shutil.copy(file, folder / file.name)
            links.append(f'<a href="{file.name}" data-requires-python="&gt;=3.8">{file.name}</a>')
        (folder / "index.html").write_text(
            "<html><body>\n" + "<br>\n".join(links) + "\n</body></html>\n"
        )
    return simple


def no_compiler_env(venv_bin: Path) -> dict[str, str]:
    """The environment of a machine without a compiler for pip: only the virtualenv's own
    commands on PATH (no cc, gcc, cargo or rustc), no compiler variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CARGO", "RUSTUP", "RUSTC", "CC", "CXX", "MATURIN"))
    }
    env["PATH"] = str(venv_bin)
    for compiler in ("cc", "gcc", "cargo", "rustc", "maturin"):
        found = shutil.which(compiler, path=env["PATH"])
        assert found is None, f"{compiler} is on the no-compiler PATH: {found}"
    return env


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

    def pip(self, *args: object, timeout: float = 900, env: dict | None = None) -> str:
        return run(
            [self.python, "-m", "pip", "--disable-pip-version-check", *args],
            timeout,
            env=env or build_env(),
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
