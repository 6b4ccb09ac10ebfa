"""What the plugin repository, OctoPrint and PyPI read about the plugin, and how the release
workflow's jobs fit together (scripts/test.sh checks the workflow against GitHub's schema; this
checks what a schema cannot). Fast: nothing is built or started here.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import sys

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from support.install_env import ROOT, project_version

import octoprint_mqtt
from octoprint_mqtt.plugin import MqttPlugin
from octoprint_mqtt.update import UpdateCheck

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
# The one archive's name on every GitHub release (the plugin repository links the latest).
RELEASE_ARCHIVE = "OctoPrint-MQTT.tar.gz"

if sys.version_info >= (3, 11):
    import tomllib
else:  # the suite runs on 3.11; the release workflow's test jobs on 3.8 too
    import tomli as tomllib


@pytest.fixture(scope="module")
def metadata():
    return importlib.metadata.metadata("OctoPrint-MQTT")


def test_installed_metadata(metadata):
    assert metadata["Version"] == project_version()
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL"))
    assert urls["Homepage"] == octoprint_mqtt.__plugin_url__
    assert metadata["License-Expression"] == "AGPL-3.0-only"
    assert metadata["Summary"]
    # The native part, exactly this version: its interface changes with every version.
    assert metadata.get_all("Requires-Dist") == [f"octoprint-mqtt-core=={project_version()}"]
    assert importlib.metadata.version("octoprint-mqtt-core") == project_version()


def test_one_version_everywhere():
    """Cargo.toml (the core), the plugin's pyproject.toml and its pin of the core say the same:
    a release bumps all three, and this fails when one was missed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = tomllib.loads((ROOT / "core" / "pyproject.toml").read_text())["project"]
    assert project["version"] == project_version()
    assert project["dependencies"] == [f"octoprint-mqtt-core=={project_version()}"]
    assert core["dynamic"] == ["version"]  # maturin takes it from Cargo.toml
    assert project["requires-python"] == core["requires-python"]


def test_plugin_metadata_matches_the_distribution(metadata):
    # OctoPrint takes the version from the distribution (no __plugin_version__ to drift).
    assert not hasattr(octoprint_mqtt, "__plugin_version__")
    assert octoprint_mqtt.__plugin_name__ == "MQTT"
    assert octoprint_mqtt.__plugin_license__ == "AGPLv3"
    assert octoprint_mqtt.__plugin_author__ == metadata["Author"]
    assert octoprint_mqtt.__plugin_description__
    # The plugin repository offers the plugin to the Pythons pip would install it on.
    assert SpecifierSet(octoprint_mqtt.__plugin_pythoncompat__) == SpecifierSet(
        metadata["Requires-Python"] + ",<4"
    )


def test_the_plugin_repository_listing_says_what_the_plugin_says():
    text = (ROOT / "docs" / "plugin-repository" / "mqtt.md").read_text()
    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert front, "no front matter"
    entry = yaml.safe_load(front.group(1))
    assert entry["layout"] == "plugin"
    # The identifier is the entry point's name: OctoPrint and the repository match on it.
    assert entry["id"] == "mqtt"
    assert entry["title"] == octoprint_mqtt.__plugin_name__
    assert entry["license"] == octoprint_mqtt.__plugin_license__
    assert entry["homepage"] == octoprint_mqtt.__plugin_url__
    assert entry["description"] and entry["authors"] and entry["date"]
    compatibility = entry["compatibility"]
    assert compatibility["python"] == octoprint_mqtt.__plugin_pythoncompat__ == ">=3.8,<4"
    assert compatibility["os"] == ["linux"]
    # The oldest OctoPrint offered is the one the tests run (tests/requirements.txt).
    tested = re.search(
        r"^octoprint>=([\d.]+)", (ROOT / "tests" / "requirements.txt").read_text(), re.M | re.I
    )
    assert tested, "tests/requirements.txt pins no OctoPrint"
    oldest = ".".join(tested.group(1).split(".")[:2])
    assert compatibility["octoprint"] == [f">={oldest}.0"], compatibility
    # One archive for every machine: the plugin's sdist, attached to each GitHub release under
    # a fixed name by the release workflow (checked in test_workflow_publishes_both_...).
    assert (
        entry["archive"]
        == f"{octoprint_mqtt.__plugin_url__}/releases/latest/download/{RELEASE_ARCHIVE}"
    )


def test_software_update_offers_only_what_has_a_wheel_here():
    plugin = MqttPlugin()
    try:
        plugin._plugin_version = project_version()  # OctoPrint injects it
        check = plugin.get_update_information()["mqtt"]
    finally:
        plugin._core.stop(1.0)
    # Our own check (octoprint_mqtt/update.py), not OctoPrint's pypi_release, which would offer
    # a release whose core has no wheel for this machine (tests/test_software_update.py).
    assert check["type"] == "python_checker"
    assert isinstance(check["python_checker"], UpdateCheck)
    assert check["current"] == project_version()
    requirement = Requirement(check["pip"].format(target_version="9.9.9"))
    assert requirement.name == "OctoPrint-MQTT"
    assert str(requirement.specifier) == "==9.9.9"


# --------------------------------------------------------------------------
# The release workflow
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def matrix_rows(job: dict) -> list[dict]:
    matrix = (job.get("strategy") or {}).get("matrix") or {}
    include = matrix.get("include")
    if include:
        return include
    axes = {k: v for k, v in matrix.items() if isinstance(v, list)}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())] or [{}]


def expand(text: str, row: dict) -> str:
    return re.sub(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", lambda m: str(row[m.group(1)]), text)


def artifacts(workflow: dict, action: str) -> dict[str, set[str]]:
    """Per job, the artifact names its `action` steps upload or download."""
    found: dict[str, set[str]] = {}
    for name, job in workflow["jobs"].items():
        for row in matrix_rows(job):
            for step in job["steps"]:
                if step.get("uses", "").startswith(f"actions/{action}-artifact@"):
                    artifact = (step.get("with") or {}).get("name")
                    found.setdefault(name, set()).add(expand(artifact, row) if artifact else "*")
    return found


def test_workflow_jobs_fit_together(workflow):
    jobs = workflow["jobs"]
    for name, job in jobs.items():
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            assert need in jobs, f"{name} needs the unknown job {need}"

    uploaded = set().union(*artifacts(workflow, "upload").values())
    for name, names in artifacts(workflow, "download").items():
        assert names - {"*"} <= uploaded, f"{name} downloads {names - uploaded}, never uploaded"


def test_workflow_builds_every_platform_and_publishes_only_tags(workflow):
    wheels = {(row["target"], row["manylinux"]) for row in matrix_rows(workflow["jobs"]["wheels"])}
    # glibc and musl on each of x86_64, aarch64 and armv7: the one archive needs a core
    # wheel for every Linux OctoPrint runs on.
    assert wheels == {
        (target, tag)
        for target in ("x86_64", "aarch64", "armv7")
        for tag in ("2014", "musllinux_1_2")
    }, wheels
    # Every wheel is installed and run somewhere: x86_64 glibc by test-x86_64, the rest
    # emulated (or in an Alpine container).
    emulated = {row["wheel"] for row in matrix_rows(workflow["jobs"]["test-emulated"])}
    built = {f"wheel-{target}-{tag}" for target, tag in wheels}
    assert emulated == built - {"wheel-x86_64-2014"}, built - emulated
    for job in ("wheels", "sdist"):
        # The core's jobs build core/pyproject.toml, not the plugin's.
        steps = [s for s in workflow["jobs"][job]["steps"] if "maturin-action" in s.get("uses", "")]
        assert [s["with"]["working-directory"] for s in steps] == ["core"], job
    assert "plugin" in workflow["jobs"]

    publish = workflow["jobs"]["publish"]
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert publish["permissions"] == {"id-token": "write", "contents": "write"}
    assert set(publish["needs"]) >= {
        "wheels",
        "sdist",
        "plugin",
        "test-x86_64",
        "test-sdist",
        "test-emulated",
    }
    assert workflow["permissions"] == {"contents": "read"}
    assert "v*" in workflow["on"]["push"]["tags"]


def test_workflow_publishes_both_distributions_and_the_one_archive(workflow):
    steps = workflow["jobs"]["publish"]["steps"]
    uploads = [s["with"]["packages-dir"] for s in steps if "pypi-publish" in s.get("uses", "")]
    # The core first: the plugin pins it, and pip must never see a plugin without its core.
    assert uploads == ["core-dist", "plugin-dist"], uploads
    release = next(s["run"] for s in steps if "gh release create" in s.get("run", ""))
    assert (
        f" {RELEASE_ARCHIVE}" in release
        and f"cp plugin-dist/octoprint_mqtt-*.tar.gz {RELEASE_ARCHIVE}" in release
    )


# The platforms the release workflow builds wheels for.
RELEASE_TARGETS = (
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
)


def _version(text: str) -> tuple[int, int, int]:
    major, minor, patch = (text.split(".") + ["0", "0"])[:3]
    return int(major), int(minor), int(patch)


def test_rust_version_covers_every_crate_the_build_compiles():
    # Only one toolchain can be installed here, so the minimum supported Rust is checked from
    # what the locked crates declare (their `rust-version`), for the crates a release build
    # compiles: normal and build dependencies on the release targets, not the test-only ones.
    import json
    import subprocess

    ours = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["rust-version"]
    compiled: set[str] = set()
    for target in RELEASE_TARGETS:
        tree = subprocess.run(
            ["cargo", "tree", "--locked", "-e", "normal,build", "--target", target]
            + ["--prefix", "none", "--format", "{p}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        compiled |= {line.split()[0] for line in tree.splitlines() if line.strip()}
    meta = subprocess.run(
        ["cargo", "metadata", "--locked", "--format-version", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    needs = {
        p["name"]: p["rust_version"]
        for p in json.loads(meta)["packages"]
        if p["name"] in compiled and p.get("rust_version")
    }
    highest = max(needs.values(), key=_version)
    assert _version(ours) >= _version(highest), (
        f"Cargo.toml says rust-version {ours}, but "
        f"{sorted(n for n, v in needs.items() if _version(v) > _version(ours))} need {highest}"
    )
