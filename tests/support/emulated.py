"""The native part's ARM wheels, cross-built here and installed in emulated ARM Debian systems.

What tests/test_install_emulated.py needs: `cross_build_wheel` builds a release wheel for an
ARM target with maturin and zig (manylinux2014, abi3, as the release workflow's); `rootfs`
gives a Debian bookworm root file system of that architecture with Python and venv but no
compiler, cached outside the checkout; `Chroot` runs commands in it under QEMU user emulation
(binfmt_misc), with the wheels and a work folder mounted in, and unmounts everything
whatever happens. A chroot shares the host's network, so a script in it reaches the tests'
Mosquitto on the host's loopback.

Everything here runs as root (chroot, mount): the development machine's tests do.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from octoprint_mqtt.update import CORE_DIST
from support.install_env import ROOT, run, tool, unoptimised_build_env

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# --------------------------------------------------------------------------
# The packaging layout (docs/install.md): the native part octoprint-mqtt-core, built by maturin
# from core/pyproject.toml, and the plugin, whose sdist is the one archive.
# --------------------------------------------------------------------------

# The pyproject.toml maturin builds the native wheel from (maturin runs in its folder).
NATIVE_PYPROJECT = ROOT / "core" / "pyproject.toml"
# The distribution that wheel is, as pip names it.
NATIVE_DIST = CORE_DIST
# The extension module in it.
NATIVE_MODULE = "octoprint_mqtt_core._core"


def dist_pattern(dist: str) -> str:
    """A regular expression for `dist` however pip spells it (- _ . are interchangeable)."""
    return "[-_.]+".join(re.escape(part) for part in re.split(r"[-_.]+", dist))


def wheel_stem(dist: str) -> str:
    """How a distribution's name starts its wheel's file name (PEP 427: runs of - _ . become _)."""
    return re.sub(r"[-_.]+", "_", dist).lower()


# --------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Arch:
    rust_target: str
    debian_arch: str
    # platform.machine() in the emulated system, and the wheel's platform tag's machine.
    machine: str
    # The binfmt_misc entry of Debian's qemu-user-static.
    binfmt: str


ARCHES = {
    "aarch64": Arch("aarch64-unknown-linux-gnu", "arm64", "aarch64", "qemu-aarch64"),
    "armv7": Arch("armv7-unknown-linux-gnueabihf", "armhf", "armv7l", "qemu-arm"),
}

# Outside the checkout: a root file system is built once per machine, reused by every run.
CACHE = Path(os.environ.get("OCTOPRINT_MQTT_EMULATION_CACHE", "/var/cache/octoprint-mqtt-test"))

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# python3-venv brings Python and the pip and setuptools wheels that `python3 -m venv` seeds a
# venv with (no python3-pip needed: the venv's pip is what installs the plugin); minbase has
# no compiler, and nothing of this pulls one in.
PACKAGES = ("python3-venv",)
# Written into a finished root file system; a different recipe means build it again.
RECIPE = f"1 {SUITE} minbase first-stage+extract {','.join(PACKAGES)}"
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "ld", "cargo", "rustc", "rustup", "zig")
PYTHON = "/usr/bin/python3"
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def require_root() -> None:
    if os.geteuid() != 0:
        raise AssertionError("the emulated install tests need root (chroot and mount)")


# --------------------------------------------------------------------------
# Cross builds
# --------------------------------------------------------------------------


def cross_build_wheel(arch: Arch, out: Path, pyproject: Path = NATIVE_PYPROJECT) -> Path:
    """Builds the wheel of `pyproject` for `arch` into `out` as a release is built (maturin
    --release, zig, manylinux2014, abi3); returns it. Zig links against glibc 2.17 symbols and
    compiles ring's C and assembly for the target, so no cross gcc is needed. Unoptimised,
    though (install_env.UNOPTIMISED_PROFILE: with fat LTO 7 minutes a target from cold,
    unoptimised about 1)."""
    if not shutil.which("rustup"):
        raise AssertionError("rustup is not on PATH: the Rust targets come from it")
    installed = run(["rustup", "target", "list", "--installed"], 60).split()
    if arch.rust_target not in installed:
        raise AssertionError(
            f"the Rust target {arch.rust_target} is missing: rustup target add {arch.rust_target}"
            " (scripts/test.sh does)"
        )
    bin_dir = Path(sys.executable).parent
    # maturin finds zig through `python -m ziglang` of the Python on PATH: the test venv's.
    if importlib.util.find_spec("ziglang") is None:
        raise AssertionError("ziglang is not installed (pip install -r tests/requirements.txt)")
    env = unoptimised_build_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("*.whl"))
    run(
        [tool("maturin"), "build", "--quiet", "--release", "--zig"]
        + ["--target", arch.rust_target, "--compatibility", "manylinux2014", "--out", out],
        3600,
        env=env,
        cwd=pyproject.parent,
    )
    built = sorted(p for p in set(out.glob(f"*_{arch.machine}.whl")) - before)
    assert len(built) == 1, f"expected one new {arch.machine} wheel in {out}: {built}"
    return built[0]


def build_backend_wheels(out: Path, python_version: str) -> list[Path]:
    """The plugin's build backend (pyproject.toml's build-system requires) and what it needs,
    as wheels for `python_version`, so that pip in a system with no index builds the one
    archive from a folder alone, as it builds it from PyPI elsewhere."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    out.mkdir(parents=True, exist_ok=True)
    run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", out]
        + ["--only-binary", ":all:", "--python-version", python_version, *requires],
        600,
    )
    return sorted(out.glob("*.whl"))


# --------------------------------------------------------------------------
# binfmt_misc and mounts
# --------------------------------------------------------------------------

BINFMT = Path("/proc/sys/fs/binfmt_misc")


def ensure_binfmt(arch: Arch) -> None:
    """QEMU runs the architecture's binaries, with the fix-binary flag (F): the kernel opens
    the interpreter when it is registered, so it works inside a chroot that has no QEMU."""
    if not (BINFMT / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], 30)
    entry = BINFMT / arch.binfmt
    if not entry.exists():
        if not shutil.which("update-binfmts"):
            raise AssertionError("binfmt-support and qemu-user-static are missing (apt)")
        run(["update-binfmts", "--enable", arch.binfmt], 30)
    if not entry.exists():
        raise AssertionError(f"{entry} is missing: apt install qemu-user-static binfmt-support")
    text = entry.read_text()
    if not text.startswith("enabled"):
        run(["update-binfmts", "--enable", arch.binfmt], 30)
        text = entry.read_text()
    flags = re.search(r"^flags: *(\S*)", text, re.M)
    if not text.startswith("enabled") or not flags or "F" not in flags.group(1):
        raise AssertionError(f"{entry} is not enabled with the fix-binary flag (F):\n{text}")


def mounts_under(root: Path) -> list[Path]:
    """Mount points at or below `root`, deepest first (the order to unmount them in)."""
    root = root.resolve()
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].replace("\\040", " "))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount(point: Path) -> None:
    """Unmounts `point`; lazily when it is busy (a process left over from a timeout), so that
    nothing stays mounted into a root file system that may be deleted later."""
    done = subprocess.run(["umount", str(point)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True, timeout=60)


def unmount_all_under(root: Path) -> None:
    for point in mounts_under(root):
        unmount(point)
    left = mounts_under(root)
    if left:
        raise AssertionError(f"still mounted below {root}: {left}")


def remove_tree(path: Path) -> None:
    """rm -rf that never follows a mount: a /dev bound into a root file system and then deleted
    would delete the host's device nodes."""
    if path.exists():
        unmount_all_under(path)
        shutil.rmtree(path)


# --------------------------------------------------------------------------
# Root file systems
# --------------------------------------------------------------------------


def rootfs(arch: Arch) -> Path:
    """A Debian bookworm root file system for `arch` with python3 and venv and no compiler,
    from the cache when it is there and works, else built (under 2 minutes: see
    build_rootfs). It is checked and built under an exclusive lock, used (Chroot) under a
    shared one: so leftover mounts can be cleared, and a rebuild can delete the old one,
    without pulling anything from under another run."""
    require_root()
    ensure_binfmt(arch)
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / f"rootfs-{arch.debian_arch}"
    with open(lock_path(root), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        problem = rootfs_problem(arch, root)
        if problem:
            print(f"building {root}: {problem}")
            build_rootfs(arch, root)
            problem = rootfs_problem(arch, root)
            assert not problem, f"{root} was just built and does not work: {problem}"
    return root


def lock_path(root: Path) -> Path:
    return root.with_name(root.name + ".lock")


def rootfs_problem(arch: Arch, root: Path) -> str | None:
    """Why `root` cannot be used as it is (None: it can)."""
    stamp = root / "etc" / "octoprint-mqtt-rootfs"
    if not stamp.exists():
        return "missing or unfinished"
    if stamp.read_text().strip() != RECIPE:
        return "built by another recipe"
    # A mount left by a run that was killed before it could clean up (no run uses it now: the
    # caller holds the exclusive lock).
    unmount_all_under(root)
    try:
        check = "import ensurepip, venv, platform; print(platform.machine())"
        machine = run(["chroot", root, PYTHON, "-c", check], 300).strip()
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        return f"its python3 does not run: {exc}"
    if machine != arch.machine:
        return f"its python3 says it runs on {machine!r}, not {arch.machine!r}"
    return None


def build_rootfs(arch: Arch, root: Path) -> None:
    """debootstrap's first stage (downloads and unpacks the essential packages; native, no
    emulation), then every downloaded package unpacked with dpkg-deb. That skips the second
    stage, which configures each package under emulation: 11 minutes against 2 on this
    machine. Nothing Python needs is done by a maintainer script except /etc/passwd and
    /etc/group (base-passwd's, written here) and byte-compiling the standard library (done
    here, once, so that each later interpreter start does not compile it again, emulated)."""
    for command in ("debootstrap", "dpkg-deb"):
        if not shutil.which(command):
            raise AssertionError(f"{command} is missing: apt install debootstrap")
    partial = root.with_name(root.name + ".partial")
    remove_tree(partial)
    remove_tree(root)
    run(
        ["debootstrap", "--foreign", "--variant=minbase", f"--arch={arch.debian_arch}"]
        + [f"--include={','.join(PACKAGES)}", SUITE, partial, MIRROR],
        1800,
    )
    debs = sorted((partial / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    assert debs, f"debootstrap downloaded nothing into {partial}"
    for deb in debs:
        run(["dpkg-deb", "--extract", deb, partial], 300)
        deb.unlink()
    shutil.rmtree(partial / "debootstrap", ignore_errors=True)
    etc = partial / "etc"
    for name in ("passwd", "group"):
        shutil.copy(partial / "usr" / "share" / "base-passwd" / f"{name}.master", etc / name)
    stdlib = f"/usr/lib/python3.{python_minor(partial)}"
    run(["chroot", partial, PYTHON, "-m", "compileall", "-q", stdlib], 1800)
    # Last: only a complete root file system has the stamp.
    (etc / "octoprint-mqtt-rootfs").write_text(RECIPE + "\n")
    partial.rename(root)


def python_minor(root: Path) -> str:
    target = os.readlink(root / "usr" / "bin" / "python3")
    found = re.fullmatch(r"python3\.(\d+)", target)
    assert found, f"{root}/usr/bin/python3 -> {target}"
    return found.group(1)


# --------------------------------------------------------------------------
# Running things in a root file system
# --------------------------------------------------------------------------


class Chroot:
    """`with Chroot(root, {"/dist": folder}) as c: c.run(...)`: /proc, /dev and the given
    host folders mounted into `root` (at /mnt/<id>/<name>, so that two runs at once do not see
    each other's), all of them unmounted on leaving, also after a failure or a timeout."""

    def __init__(self, root: Path, binds: dict[str, Path]) -> None:
        self.root = root
        self.base = Path("/mnt") / f"octoprint-mqtt-{uuid.uuid4().hex[:8]}"
        self.binds = binds
        self._mounted: list[Path] = []
        self._lock = None

    def path(self, name: str) -> str:
        """Where the host folder bound as `name` is inside the chroot."""
        return str(self.base / name.strip("/"))

    def _inside(self, path: str | Path) -> Path:
        return self.root / str(path).lstrip("/")

    def _mount(self, args: list, point: Path) -> None:
        point.mkdir(parents=True, exist_ok=True)
        run(["mount", *args, point], 60)
        self._mounted.append(point)

    def __enter__(self) -> Chroot:
        self._lock = open(lock_path(self.root), "w")  # held until __exit__
        fcntl.flock(self._lock, fcntl.LOCK_SH)
        try:
            self._mount(["-t", "proc", "proc"], self._inside("/proc"))
            self._mount(["--bind", "/dev"], self._inside("/dev"))
            for name, folder in self.binds.items():
                self._mount(["--bind", folder], self._inside(self.path(name)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        for point in reversed(self._mounted):
            unmount(point)
        self._mounted.clear()
        # Only this run's own folders: another run may have /proc and /dev mounted here too.
        base = self._inside(self.base)
        left = [p for p in mounts_under(self.root) if p == base or base in p.parents]
        if not left:
            shutil.rmtree(base, ignore_errors=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if left:
            # Not deleted: through a mount that would delete the host's files.
            raise AssertionError(f"could not unmount {left}")

    def run(self, script: str, timeout: float, args: list | None = None) -> str:
        """Runs the shell `script` in the chroot with a clean environment; returns its stdout
        and stderr together, fails with them when it fails. On a timeout everything it
        started is killed, so that no process keeps a mount busy."""
        cmd = ["chroot", str(self.root), "/usr/bin/env", "-i", f"PATH={SEARCH_PATH}"]
        cmd += ["HOME=/root", "LANG=C.UTF-8", "/bin/sh", "-euc", script, "sh"]
        cmd += [str(a) for a in args or []]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            output = self._kill(proc)
            message = f"timed out after {timeout}s in {self.root}:\n{output[-6000:]}"
            raise AssertionError(message) from None
        except BaseException:
            # pytest-timeout's alarm or Ctrl-C: nothing may outlive the mounts.
            self._kill(proc)
            raise
        if proc.returncode != 0:
            raise AssertionError(
                f"exited with {proc.returncode} in {self.root}:\n{script}\n{output[-6000:]}"
            )
        return output

    @staticmethod
    def _kill(proc: subprocess.Popen) -> str:
        """Kills everything `proc` started (its own session); returns what it printed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
        return output or ""


# The in-chroot proof: no compiler anywhere on the search path, a fresh venv, the wheels
# installed by its pip from their folder alone (--no-index and --only-binary: pip may neither
# download nor build anything), then the probe run by the venv's Python. $1: the wheels'
# folder, $2: the work folder (with probe.py), then the probe's arguments.
INSTALL_SCRIPT = """
wheels="$1"; work="$2"; shift 2
for c in {compilers}; do
    if found="$(command -v "$c")"; then echo "a compiler is installed: $found"; exit 3; fi
done
echo "no compiler: {compilers}"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --disable-pip-version-check --no-cache-dir --no-index \
    --only-binary {only_binary} --find-links "$wheels" {requirements}
"$work/venv/bin/pip" list --disable-pip-version-check
cd "$work"
"$work/venv/bin/python" "$work/probe.py" "$@"
"""


def install_and_run(
    root: Path,
    wheels: list[Path],
    work: Path,
    probe: str,
    probe_args: list,
    requirements: tuple[str, ...] = (NATIVE_DIST,),
    only_binary: str = ":all:",
    timeout: float = 1200,
) -> str:
    """Into a fresh venv in the chroot `root`, pip installs `requirements` (names, or files of
    `wheels` as "$wheels/<name>") from `wheels` alone, building nothing but what `only_binary`
    leaves it (e.g. the one archive, with `octoprint-mqtt-core`), then runs the Python source
    `probe` with `probe_args`; returns everything printed."""
    folder = work / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copy(wheel, folder)
    (work / "probe.py").write_text(probe)
    script = INSTALL_SCRIPT.format(
        compilers=" ".join(COMPILERS),
        requirements=" ".join(f'"{r}"' for r in requirements),
        only_binary=only_binary,
    )
    with Chroot(root, {"work": work}) as chroot:
        inside = chroot.path("work")
        return chroot.run(script, timeout, [f"{inside}/wheels", inside, *probe_args])


# --------------------------------------------------------------------------
# Started early, in the background
# --------------------------------------------------------------------------

# Architecture name -> the Future of its cross-built wheel (with its root file system ready).
_early: dict[str, concurrent.futures.Future] = {}


def start_early(out: Path) -> None:
    """Cross-builds every architecture's wheel and gets its root file system, one after the
    other, on a thread of its own at the lowest CPU priority, while the rest of the suite runs:
    most tests wait on brokers and OctoPrint and leave a core idle, and these are minutes of
    compiling (and, on a new machine, of debootstrap). `early_wheel` takes the result."""
    for name in sorted(ARCHES):
        _early[name] = concurrent.futures.Future()

    def build() -> None:
        # Linux keeps the nice value per thread, and the processes this thread starts inherit
        # it: cargo, rustc and debootstrap yield to every test.
        os.nice(19)
        for name in sorted(ARCHES):
            future = _early[name]
            try:
                wheel = cross_build_wheel(ARCHES[name], out / name)
                rootfs(ARCHES[name])
            except BaseException as exc:  # handed to the test that needs it
                future.set_exception(exc)
            else:
                future.set_result(wheel)

    threading.Thread(target=build, name="emulated-early", daemon=True).start()


def early_wheel(name: str, timeout: float) -> Path | None:
    """The wheel start_early built for ARCHES[name], waiting for it; None when it was not
    started (the test builds it then)."""
    future = _early.get(name)
    return None if future is None else future.result(timeout)
