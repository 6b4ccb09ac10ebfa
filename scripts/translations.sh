#!/usr/bin/env bash
# The plugin's translation catalogs, with pybabel (Babel comes with OctoPrint, so it is in
# .venv). OctoPrint reads a plugin's translations from <package>/translations/<locale>/
# LC_MESSAGES/: messages.mo for the Jinja templates, messages.po for the JavaScript catalog
# it builds, so a shipped locale needs both.
#
#   bash scripts/translations.sh extract          # templates and JS -> messages.pot
#   bash scripts/translations.sh update [LOCALE]  # messages.pot -> LOCALE's messages.po
#                                                 # (created when new; no LOCALE: every
#                                                 # existing one)
#   bash scripts/translations.sh compile          # every messages.po -> messages.mo
#
# POT and TRANSLATIONS override the template and the catalogs' folder (the tests use both);
# PYBABEL the pybabel to run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TRANSLATIONS="${TRANSLATIONS:-$ROOT/octoprint_mqtt/translations}"
POT="${POT:-$ROOT/octoprint_mqtt/translations/messages.pot}"
PYBABEL="${PYBABEL:-${VENV:-$ROOT/.venv}/bin/pybabel}"
# Absolute: extract runs from the root.
POT="$(realpath -m "$POT")"
TRANSLATIONS="$(realpath -m "$TRANSLATIONS")"

if [ ! -x "$PYBABEL" ]; then
    echo "no pybabel at $PYBABEL: create .venv first (source scripts/env.sh) or set PYBABEL" >&2
    exit 1
fi

extract() {
    # Run from the root so that the locations in the template read octoprint_mqtt/...
    # `plural` is mqtt.js's ngettext with an English fallback (see there), hence its keyword;
    # comments starting "Translators:" next to a string reach the translators.
    cd "$ROOT"
    "$PYBABEL" extract \
        --mapping-file=scripts/babel.cfg \
        --keywords=plural:1,2 \
        --add-comments=Translators: \
        --project=OctoPrint-MQTT \
        --copyright-holder="octoprint-mqtt developers" \
        --msgid-bugs-address=https://github.com/octoprint-mqtt/octoprint-mqtt/issues \
        --output-file="$POT" \
        octoprint_mqtt
}

update() {
    local locale="${1:-}"
    if [ -z "$locale" ]; then
        "$PYBABEL" update --input-file="$POT" --output-dir="$TRANSLATIONS"
    elif [ -f "$TRANSLATIONS/$locale/LC_MESSAGES/messages.po" ]; then
        "$PYBABEL" update --input-file="$POT" --output-dir="$TRANSLATIONS" --locale="$locale"
    else
        "$PYBABEL" init --input-file="$POT" --output-dir="$TRANSLATIONS" --locale="$locale"
    fi
}

compile() {
    # --statistics: how much of each locale is translated, worth seeing before shipping it.
    "$PYBABEL" compile --statistics --directory="$TRANSLATIONS"
}

case "${1:-}" in
    extract) extract ;;
    update) update "${2:-}" ;;
    compile) compile ;;
    *)
        echo "usage: $0 extract | update [LOCALE] | compile" >&2
        exit 2
        ;;
esac
