#!/usr/bin/env bash
# Runs every test: Rust formatting, lints and unit tests, then pytest against real Mosquitto
# brokers and a real OctoPrint with the plugin pip-installed. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used);
# the failover tests a cluster of Debian's nats-server.
apt_install chromium nats-server
# The emulated install tests (tests/test_install_emulated.py): QEMU user emulation registered
# with binfmt_misc, debootstrap for their ARM Debian root file systems, and the Rust targets
# of the ARM wheels (zig, their linker, is ziglang in tests/requirements.txt).
apt_install qemu-user-static binfmt-support debootstrap
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    if ! rustup target list --installed | grep -x "$target" >/dev/null; then
        log "adding the Rust target $target (rustup; about 10 s)"
        rustup target add "$target"
    fi
done

# Home Assistant's virtualenv is mostly downloading and unpacking: it fills while cargo
# compiles (a minute and more off a fresh clone's run). Its output goes to a log, shown if it
# fails; the tests wait for it below.
ha_log="$(mktemp)"
install_homeassistant >"$ha_log" 2>&1 &
ha_pid=$!
trap 'kill "$ha_pid" 2>/dev/null || true; rm -f "$ha_log"' EXIT

log "cargo fmt --check"
cargo fmt --check
log "cargo clippy (about 2½ minutes from a cold target/ on 2 cores, 10 s after)"
cargo clippy --quiet --all-targets -- -D warnings
log "cargo test (builds and runs the unit tests: about 4½ minutes from a cold target/ on 2 cores, 15 s after)"
cargo test --quiet
log "ruff"
"$VENV/bin/ruff" check --quiet octoprint_mqtt core tests scripts bench
"$VENV/bin/ruff" format --check --quiet octoprint_mqtt core tests scripts bench
log "release workflow (GitHub's workflow schema, check-jsonschema through uv: under 10 s)"
"$VENV/bin/uv" tool run --quiet --from check-jsonschema==0.39.0 \
    check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/release.yml
install_plugin
if ! wait "$ha_pid"; then
    cat "$ha_log" >&2
    log "installing Home Assistant failed (above)"
    exit 1
fi
cat "$ha_log" >&2
for arch in arm64 armhf; do
    [ -f "/var/cache/octoprint-mqtt-test/rootfs-$arch/etc/octoprint-mqtt-rootfs" ] ||
        log "pytest will build a Debian $arch root file system for the emulated install tests" \
            "(debootstrap; about 2 minutes, once: cached in /var/cache/octoprint-mqtt-test)"
done
log "pytest (about 23 minutes on 2 cores, the emulated install tests' cross builds of the" \
    "aarch64 and armv7 wheels included; docs/development.md)"
# The pytest script, not `python -m pytest`: that would put the checkout first on sys.path
# and test the source tree instead of the installed plugin. pytest exits 5 when it collected
# no test: that fails this script too.
"$VENV/bin/pytest" "$@"
