"""Software Update's check for this plugin: the newest release that pip can install here.

The plugin is pure Python and pins its native part, octoprint-mqtt-core, which is published as
wheels for some platforms only. OctoPrint's own PyPI check would offer the newest plugin
release even where its core has no wheel, and pip would then try to compile Rust on a
Raspberry Pi. This check offers a version only when the index has a core wheel of exactly that
version whose tags this interpreter supports (docs/install.md, "Updates").

It reads the package indexes pip installs from (pip's configuration: index-url and
extra-index-url from pip.conf or PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, else PyPI; piwheels on
Raspberry Pi OS is one) through the simple repository API, as JSON (PEP 691) or HTML (PEP
503), and it matches the wheels against the tags of pip itself, which may be older than the
environment's `packaging`.
"""

from __future__ import annotations

import html.parser
import logging
import platform
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterable, List, Optional
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

# The two distributions of a release (pyproject.toml, core/pyproject.toml), and their names
# on an index (PEP 503 normalised).
PLUGIN_DIST = "OctoPrint-MQTT"
CORE_DIST = "octoprint-mqtt-core"
PLUGIN_PROJECT = "octoprint-mqtt"
CORE_PROJECT = "octoprint-mqtt-core"
PYPI = "https://pypi.org/simple"
# Connect and read timeouts, as OctoPrint's own PyPI check uses.
TIMEOUT = (3.05, 7)

_logger = logging.getLogger("octoprint.plugins.mqtt.update")


@dataclass(frozen=True)
class IndexFile:
    """One file of a project on the index."""

    filename: str
    requires_python: Optional[str] = None
    yanked: bool = False


def pip_indexes() -> List[str]:
    """The indexes pip installs from when Software Update runs it: its index-url (else PyPI)
    and every extra-index-url, as pip's own configuration gives them (its files and its
    environment variables, which `pip config list` shows with their precedence)."""
    index, extras = PYPI, []
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        _logger.warning("Could not read pip's configuration (%s); checking %s", exc, PYPI)
        listed = ""
    # One line per value, "<variant>.<key>='<value>'", in pip's order of precedence (the
    # environment last): the last index-url wins, extra-index-urls add up.
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        value = value.strip().strip("'\"")
        if key.endswith(".index-url") and not key.endswith(".extra-index-url"):
            index = value or index
        elif key.endswith(".extra-index-url"):
            extras += value.split()
    found = []
    for url in [index, *extras]:
        url = url.rstrip("/")
        if url and url not in found:
            found.append(url)
    return found


def pip_tags() -> list:
    """The tags pip accepts here: pip's own copy of packaging decides, not the environment's
    (an older pip knows fewer, e.g. no musllinux before pip 21.2)."""
    try:
        from pip._vendor.packaging.tags import sys_tags
    except ImportError:
        from packaging.tags import sys_tags
    from packaging.tags import Tag

    return [Tag(t.interpreter, t.abi, t.platform) for t in sys_tags()]


def redacted(url: str) -> str:
    """`url` without a user name or password, for the log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def newest_installable(
    plugin_files: Iterable[IndexFile],
    core_files: Iterable[IndexFile],
    tags: Iterable[object],
    python_version: str,
    include_prerelease: bool = False,
) -> Optional[str]:
    """The newest plugin version (string) whose core of the same version has a wheel for one of
    `tags` (packaging.tags.Tag), or None. Yanked files, files whose Requires-Python excludes
    `python_version`, and (unless asked for) pre-releases do not count."""
    supported = set(tags)

    def usable(file: IndexFile) -> bool:
        return not file.yanked and _python_fits(file.requires_python, python_version)

    installable_cores = set()
    for file in filter(usable, core_files):
        parsed = _parse_wheel(file.filename)
        if parsed and supported & parsed[1]:
            installable_cores.add(parsed[0])

    candidates = set()
    for file in filter(usable, plugin_files):
        version = _file_version(file.filename)
        if version is None or (version.is_prerelease and not include_prerelease):
            continue
        if version in installable_cores:
            candidates.add(version)
    return str(max(candidates)) if candidates else None


def fetch_files(project: str, index: str) -> List[IndexFile]:
    """The files of `project` on the index; raises requests' errors."""
    import requests

    url = f"{index}/{project}/"
    answer = requests.get(
        url,
        headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"},
        timeout=TIMEOUT,
    )
    if answer.status_code == 404:
        return []  # not published there (yet): nothing to offer
    answer.raise_for_status()
    if "json" in answer.headers.get("Content-Type", ""):
        return [
            IndexFile(f["filename"], f.get("requires-python"), bool(f.get("yanked")))
            for f in answer.json().get("files", [])
        ]
    reader = _LinkReader()
    reader.feed(answer.text)
    return reader.files


def fetch_all(project: str, indexes: Iterable[str]) -> List[IndexFile]:
    """The files of `project` on all `indexes`, as pip sees them together."""
    return [file for index in indexes for file in fetch_files(project, index)]


class UpdateCheck:
    """Software Update's `python_checker`."""

    def __repr__(self) -> str:
        # Software Update keys its cache on repr(check): an address would change at every
        # start and make it fetch the index again instead of honouring its cache time.
        return "octoprint_mqtt.update.UpdateCheck()"

    def get_latest(self, target, check, full_data=False, online=True, *args, **kwargs):
        local = check["current"]
        remote = None
        if online:
            indexes = pip_indexes()
            where = ", ".join(redacted(i) for i in indexes)
            try:
                remote = newest_installable(
                    fetch_all(PLUGIN_PROJECT, indexes),
                    fetch_all(CORE_PROJECT, indexes),
                    pip_tags(),
                    platform.python_version(),
                    include_prerelease=bool(check.get("prerelease")),
                )
            except Exception as exc:
                # Raising would reach OctoPrint's fallback for old checkers, which fails on
                # Python 3.11 (inspect.getargspec): a log line of our own says more.
                _logger.warning(
                    "Could not check %s for an update of the plugin: %s", where, redacted(str(exc))
                )
            else:
                if remote is None:
                    _logger.info(
                        "No release on %s has a wheel of %s for this machine: no update offered",
                        where,
                        CORE_DIST,
                    )
        information = {
            "local": {"name": local, "value": local},
            "remote": {"name": remote or local, "value": remote or local},
        }
        return information, remote is None or not _newer(remote, local)


def _newer(remote: str, local: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(remote) > Version(local)
    except InvalidVersion:
        return remote != local


def _python_fits(requires_python: Optional[str], python_version: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    if not requires_python:
        return True
    try:
        return python_version in SpecifierSet(requires_python)
    except InvalidSpecifier:
        return False


def _parse_wheel(filename: str):
    """(version, tags) of a wheel's file name, or None for anything else."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    if not filename.endswith(".whl"):
        return None
    try:
        _, version, _, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, ValueError):
        return None
    return version, tags


def _file_version(filename: str):
    from packaging.utils import InvalidSdistFilename, parse_sdist_filename

    parsed = _parse_wheel(filename)
    if parsed:
        return parsed[0]
    try:
        return parse_sdist_filename(filename)[1]
    except (InvalidSdistFilename, ValueError):
        return None


class _LinkReader(html.parser.HTMLParser):
    """The anchors of a PEP 503 project page."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[IndexFile] = []

    def handle_starttag(self, tag, attrs):
        if tag != "a":
            return
        attributes = dict(attrs)
        # Absolute or relative, with a #sha256= fragment or a query, percent-encoded.
        path = urlsplit(urljoin("/", attributes.get("href") or "")).path
        filename = unquote(path.rsplit("/", 1)[-1])
        if filename:
            self.files.append(
                IndexFile(
                    filename,
                    attributes.get("data-requires-python"),
                    "data-yanked" in attributes,
                )
            )
