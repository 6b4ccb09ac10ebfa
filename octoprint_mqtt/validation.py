"""Checks of the values the settings dialog (or anyone using OctoPrint's settings API) sends.

The rules are the core's (src/rules.rs): the page checks with the same table as the user types
(static/js/mqtt.js reads it from the template), and these guard the saved configuration, so a
bad value is refused with a log line instead of breaking the connection at the next start.
"""

from octoprint_mqtt_core._core import setting_rules, settings_problems


def problems(changes, merged):
    """Problems of the values in `changes` (a partial `plugins.mqtt` tree as sent to
    on_settings_save), judged together with `merged` (the settings currently in force).
    Returns {(key, ...): message}."""
    return settings_problems(changes, merged)


def drop(changes, paths):
    """Removes `paths` from the nested dict `changes` (in place)."""
    for path in paths:
        node = changes
        for key in path[:-1]:
            node = node.get(key) or {}
        node.pop(path[-1], None)


# Numbers arrive from the dialog's text fields as strings; stored as numbers, config.yaml stays
# what a person (or another plugin reading it) expects.
NUMBERS = {
    tuple(rule["path"]): int if rule["kind"] == "whole" else float
    for rule in setting_rules()
    if rule["kind"] in ("whole", "number")
}
# Lists of event names or patterns: whoever writes one as comma-separated text through the
# settings API still gets a list in config.yaml, as the page saves it.
PATTERN_LISTS = [tuple(rule["path"]) for rule in setting_rules() if rule["kind"] == "patterns"]


def normalise(changes):
    """Turns the numeric settings present in `changes` into numbers and the pattern lists
    into lists of trimmed text (in place). Run after `drop`, on values `problems` accepted."""
    for (section, key), kind in NUMBERS.items():
        node = changes.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            node[key] = kind(node[key].strip()) if kind is int else kind(node[key])
    for section, key in PATTERN_LISTS:
        node = changes.get(section)
        if not isinstance(node, dict) or key not in node:
            continue
        value = node[key]
        # As the core reads them (src/lenient.rs, pattern_entries). For accepted entries
        # str.strip removes what Rust's trim does: they hold no other whitespace or controls.
        if value is None:
            node[key] = []
        elif isinstance(value, str):
            node[key] = [p.strip() for p in value.split(",") if p.strip()]
        else:
            node[key] = [p.strip() for p in value]
