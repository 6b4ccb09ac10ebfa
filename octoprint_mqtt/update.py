"""Software Update's check for this plugin: the newest release that pip can install here.

The plugin is pure Python and pins its native part, octoprint-mqtt-core, which is published as
wheels for some platforms only. OctoPrint's own PyPI check would offer the newest plugin
release even where its core has no wheel, and pip would then try to compile Rust on a
Raspberry Pi. This check offers a version only when the index has a core wheel of exactly that
version whose tags this interpreter supports (docs/install.md, "Updates").

It reads the package index pip uses (PIP_INDEX_URL, else PyPI) through the simple repository
API, as JSON (PEP 691) or HTML (PEP 503), so a private mirror works as well as PyPI.
"""

from __future__ import annotations

import html.parser
import logging
import os
import platform
from dataclasses import dataclass
from typing import Iterable, Optional

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


def index_url() -> str:
    """The index pip installs from when Software Update runs it."""
    return (os.environ.get("PIP_INDEX_URL") or PYPI).rstrip("/")


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
    from packaging.version import Version

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
    if not candidates:
        return None
    newest: Version = max(candidates)
    return str(newest)


def fetch_files(project: str, index: Optional[str] = None) -> list[IndexFile]:
    """The files of `project` on the index; raises requests' errors."""
    import requests

    url = f"{index or index_url()}/{project}/"
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


class UpdateCheck:
    """Software Update's `python_checker`."""

    def get_latest(self, target, check, full_data=False, online=True, *args, **kwargs):
        from packaging.tags import sys_tags

        local = check["current"]
        remote = None
        if online:
            index = index_url()
            try:
                remote = newest_installable(
                    fetch_files(PLUGIN_PROJECT, index),
                    fetch_files(CORE_PROJECT, index),
                    sys_tags(),
                    platform.python_version(),
                    include_prerelease=bool(check.get("prerelease")),
                )
            except Exception as exc:
                # Raising would reach OctoPrint's fallback for old checkers, which fails on
                # Python 3.11 (inspect.getargspec): a log line of our own says more.
                _logger.warning("Could not check %s for an update of the plugin: %s", index, exc)
            else:
                if remote is None:
                    _logger.info(
                        "No release on %s has a wheel of %s for this machine: no update offered",
                        index,
                        CORE_PROJECT,
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
        href = attributes.get("href") or ""
        filename = href.split("#", 1)[0].rsplit("/", 1)[-1]
        if filename:
            self.files.append(
                IndexFile(
                    filename,
                    attributes.get("data-requires-python"),
                    "data-yanked" in attributes,
                )
            )
