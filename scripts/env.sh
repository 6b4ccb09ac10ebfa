# Sourced by the other scripts: installs what the project needs when it is missing, then
# exports VENV (a virtualenv with OctoPrint, the test tools and maturin). Safe to run again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
# What goes into $VENV besides the plugin (the benchmark uses a list of its own).
REQUIREMENTS="${REQUIREMENTS:-$ROOT/tests/requirements.txt}"
export ROOT VENV

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        log "apt-get update, for ${missing[*]} (about 5 s)"
        $sudo apt-get update -qq
        # How long the install takes is mostly the download: say how big it is (the packages
        # with the dependencies still missing, as apt would fetch them).
        local mb
        mb="$(apt-get install --print-uris -qq "${missing[@]}" 2>/dev/null |
            awk '{ s += $3 } END { printf "%.1f", s / 1e6 }')"
        log "installing ${missing[*]} (apt: ${mb:-?} MB to download, then unpacking)"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

apt_install mosquitto mosquitto-clients
# Debian's package may start a system broker on 1883; the tests use their own brokers on
# free ports, so it does not matter either way.
export PATH="$PATH:/usr/sbin"

if [ ! -x "$VENV/bin/python" ]; then
    log "creating the virtualenv $VENV (about 10 s)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements-installed"
if [ ! -f "$stamp" ] || [ "$REQUIREMENTS" -nt "$stamp" ]; then
    log "installing $(basename "$(dirname "$REQUIREMENTS")")/requirements.txt into $VENV" \
        "(pip; about a minute with pip's cache warm, more when it downloads them)"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r "$REQUIREMENTS"
    touch "$stamp"
fi

# The distributions of the checkout (see build_dists); the install tests take them from here.
OCTOPRINT_MQTT_DIST="$ROOT/dist"
export OCTOPRINT_MQTT_DIST

build_dists() {
    # The four distributions of a release, into $1: the native part (octoprint-mqtt-core, a
    # wheel for this machine and its sdist, built by maturin from core/pyproject.toml) and the
    # plugin (OctoPrint-MQTT, pure Python, pinned to the core: its wheel and its sdist, the one
    # archive for every machine). tests/support/install_env.py builds with this function too.
    local out="$1"
    rm -rf "$out"
    # The duration is the release profile's unless the caller builds another way and says so
    # (demo.sh); it matters because it can be minutes with nothing printed.
    log "building the native core (maturin --release; ${BUILD_DURATION:-about 6½ minutes from a cold target/ on 2 cores shared with other builds, seconds when src/ did not change})"
    (cd "$ROOT/core" && "$VENV/bin/maturin" build --quiet --release --out "$out")
    # maturin first looks for a Cargo.toml beside core/pyproject.toml and says so as an
    # "error" before it follows manifest-path; the sdist is whole (the install tests build it).
    (cd "$ROOT/core" && "$VENV/bin/maturin" sdist --out "$out" 2>&1 >/dev/null \
        | { grep -v '^error: manifest path `Cargo.toml` does not exist$' || true; } >&2)
    log "building the plugin's wheel and sdist (uv build with hatchling; seconds)"
    "$VENV/bin/uv" build --quiet --out-dir "$out" "$ROOT"
}

install_plugin() {
    # One release build: the wheels installed here are also the ones the install tests put
    # into fresh virtualenvs.
    build_dists "$OCTOPRINT_MQTT_DIST"
    log "installing the core's and the plugin's wheels into $VENV"
    "$VENV/bin/pip" install -q --no-deps --force-reinstall "$OCTOPRINT_MQTT_DIST"/*.whl
}

install_homeassistant() {
    # A real Home Assistant core for tests/test_homeassistant*.py, in a virtualenv of its own
    # (its pinned requirements clash with OctoPrint's).
    local venv="$ROOT/.venv-homeassistant" reqs="$ROOT/tests/homeassistant-requirements.txt"
    local stamp="$ROOT/.venv-homeassistant/.requirements-installed"
    if [ -f "$stamp" ] && [ ! "$reqs" -nt "$stamp" ]; then
        return
    fi
    log "installing Home Assistant 2024.3 into $venv (pip; about 80 s with pip's cache warm, 600 MB)"
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q --no-deps -r "$reqs"
    touch "$stamp"
}
