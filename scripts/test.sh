#!/usr/bin/env bash
# Runs every test: Rust formatting, lints and unit tests, then pytest against real Mosquitto
# brokers and a real OctoPrint with the plugin pip-installed. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# The browser tests drive Debian's Chromium (Playwright's own browser download is not used);
# the failover tests a cluster of Debian's nats-server.
apt_install chromium nats-server

log "cargo fmt --check"
cargo fmt --check
log "cargo clippy (about 2½ minutes from a cold target/ on 2 cores, 10 s after)"
cargo clippy --quiet --all-targets -- -D warnings
log "cargo test (builds and runs the unit tests: about 4½ minutes from a cold target/ on 2 cores, 15 s after)"
cargo test --quiet
log "ruff"
"$VENV/bin/ruff" check --quiet octoprint_mqtt tests scripts bench
"$VENV/bin/ruff" format --check --quiet octoprint_mqtt tests scripts bench
log "release workflow (GitHub's workflow schema, check-jsonschema through uv: under 10 s)"
"$VENV/bin/uv" tool run --quiet --from check-jsonschema==0.39.0 \
    check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/release.yml
install_plugin
install_homeassistant
log "pytest (about 18 minutes on 2 cores for the 512 tests, 2 of them the install tests and 2 Home Assistant; docs/development.md)"
# The pytest script, not `python -m pytest`: that would put the checkout first on sys.path
# and test the source tree instead of the installed plugin. pytest exits 5 when it collected
# no test: that fails this script too.
"$VENV/bin/pytest" "$@"
