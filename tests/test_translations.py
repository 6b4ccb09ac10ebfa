"""The settings page's and the navbar's words are ready for translation: the committed
octoprint_mqtt/translations/messages.pot is what scripts/translations.sh extracts from the
templates and the JavaScript now, and no visible English text in either escapes extraction.

Without OctoPrint: the templates are rendered by Jinja with a gettext that brackets what it
is given, so any text left outside the brackets was not marked; the JavaScript is read with
Babel's own JavaScript lexer (the one extraction uses). A translated page in a real OctoPrint
is tests/test_translations_page.py.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract
from babel.messages.jslexer import tokenize, unquote_string
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "octoprint_mqtt"
POT = PACKAGE / "translations" / "messages.pot"
SCRIPT = ROOT / "scripts" / "translations.sh"
TEMPLATES = sorted((PACKAGE / "templates").glob("*.jinja2"))
SCRIPTS = sorted((PACKAGE / "static" / "js").glob("*.js"))
PYBABEL = Path(sys.executable).parent / "pybabel"
# The keywords scripts/translations.sh extracts with: Babel's, and mqtt.js's `plural`.
KEYWORDS = {**DEFAULT_KEYWORDS, "plural": (1, 2)}
OPEN, CLOSE = "\u27e6", "\u27e7"

# Visible texts that are not words to translate: protocol names, and the placeholders that
# show example values (a host name, event names, a metadata key).
NOT_WORDS = {
    "MQTT",
    "MQTT 3.1.1",
    "MQTT 5",
    "TCP",
    "WebSockets",
    "mqtt.local",
    "ZChange, Position*",
    "analysis.estimatedPrintTime",
}
# String literals of the JavaScript that are shown but are a name, not words.
JS_NAMES = {"OctoPrint-HomeAssistant"}
# Attributes a browser shows to the user.
SHOWN_ATTRIBUTES = {"title", "placeholder", "alt", "aria-label"}
LETTERS = re.compile(r"[^\W\d_]{2,}")
# A JavaScript string that is code: an identifier, a CSS class, a selector, a topic path; not
# a capitalised word ("Connected"). A lower-case word is taken for a key: the check cannot
# tell the counter key "published" from its label, which the extraction has anyway.
CODE_LIKE = re.compile(r"(?![A-Z][a-z])[\w#./{}+-]*")


def messages(path: Path) -> dict:
    """The catalog at `path` as {msgid: translator comments}; a plural's msgid is its pair."""
    with open(path, encoding="utf-8") as f:
        catalog = read_po(f)
    return {m.id: tuple(m.auto_comments) for m in catalog if m.id}


def test_the_committed_template_is_what_extraction_gives_now(tmp_path):
    fresh = tmp_path / "messages.pot"
    env = {**os.environ, "POT": str(fresh), "PYBABEL": str(PYBABEL)}
    subprocess.run(["bash", str(SCRIPT), "extract"], check=True, env=env, capture_output=True)
    committed, now = messages(POT), messages(fresh)
    missing = sorted(map(str, now.keys() - committed.keys()))
    stale = sorted(map(str, committed.keys() - now.keys()))
    assert not missing and not stale, (
        f"messages.pot is out of date: run `bash scripts/translations.sh extract` and commit "
        f"it.\nnew in the sources: {missing}\ngone from the sources: {stale}"
    )
    changed = sorted(str(k) for k in now if committed[k] != now[k])
    assert not changed, f"translator comments changed for {changed}: extract again"
    # Both the Jinja and the JavaScript side are in it (an extractor that silently found
    # nothing would make the comparison above vacuous).
    assert "Test connection" in now and "Not configured" in now


class _Unmarked(HTMLParser):
    """Collects text a browser shows that is not inside the gettext brackets."""

    def __init__(self) -> None:
        super().__init__()
        self.skipping: list[str] = []
        self.found: list[str] = []
        self.marked = 0
        self.inside = False

    def _words(self, text: str) -> None:
        for part in re.split(r"\s{2,}|\n", text):
            part = part.strip()
            if LETTERS.search(part) and part not in NOT_WORDS:
                self.found.append(part)

    def _attribute(self, value: str) -> None:
        self.marked += value.count(OPEN)
        self._words(re.sub(f"{OPEN}[^{CLOSE}]*{CLOSE}", " ", value))

    def _text(self, text: str) -> None:
        # A message with placeholders spans the elements put into it (`%(topic)s` is a
        # <code>), so whether the text is inside brackets carries over from one piece to the
        # next.
        outside = []
        for c in text:
            if c == OPEN:
                self.marked += 1
                self.inside = True
            elif c == CLOSE:
                self.inside = False
            outside.append(" " if self.inside or c == CLOSE else c)
        self._words("".join(outside))

    def handle_starttag(self, tag, attrs):
        # <code> holds names (commands, topics), <script> data.
        if tag in ("script", "style", "code"):
            self.skipping.append(tag)
        for name, value in attrs:
            if name in SHOWN_ATTRIBUTES and value:
                self._attribute(value)

    def handle_endtag(self, tag):
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data):
        if not self.skipping:
            self._text(data)


def unmarked_texts(source: str | None = None, name: str | None = None) -> tuple[list[str], int]:
    """Renders a template as OctoPrint does (autoescape, new-style gettext) with a gettext
    that brackets its text; returns the visible texts outside brackets and how many
    brackets there were."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(PACKAGE / "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n", "jinja2.ext.do"],
        undefined=jinja2.StrictUndefined,
    )
    environment.install_gettext_callables(
        gettext=lambda s: OPEN + s + CLOSE,
        ngettext=lambda s, p, n: OPEN + (s if n == 1 else p) + CLOSE,
        newstyle=True,
    )
    template = (
        environment.from_string(source) if source is not None else environment.get_template(name)
    )
    html = template.render(plugin_mqtt_rules=[], plugin_mqtt_own_base_topic="octoprint/")
    parser = _Unmarked()
    parser.feed(html)
    parser.close()
    return parser.found, parser.marked


@pytest.mark.parametrize("template", [t.name for t in TEMPLATES])
def test_every_visible_text_of_the_templates_is_marked(template):
    found, marked = unmarked_texts(name=template)
    assert not found, f"{template}: wrap these in _() and extract again: {found}"
    assert marked > 0


def test_the_template_check_sees_what_is_not_marked():
    found, _ = unmarked_texts(
        '<p title="Hover text">{{ _("Fine") }} Not marked <code>name</code></p>'
        "<input placeholder=\"{{ _('also fine') }}\"><script>var x = 'Code';</script>"
    )
    assert found == ["Hover text", "Not marked"]


def unmarked_strings(source: str) -> list[str]:
    """The JavaScript's string literals that look like words and are not extracted."""
    extracted = set()
    fileobj = io.BytesIO(source.encode("utf-8"))
    for _, message, _, _ in extract("javascript", fileobj, keywords=KEYWORDS):
        extracted.update(message if isinstance(message, tuple) else (message,))
    found = []
    for token in tokenize(source, jsx=False):
        if token.type != "string":
            continue
        value = unquote_string(token.value)
        if value in extracted or value in JS_NAMES:
            continue
        if LETTERS.search(value) and not CODE_LIKE.fullmatch(value):
            found.append(value)
    return found


@pytest.mark.parametrize("script", [s.name for s in SCRIPTS])
def test_every_text_the_javascript_shows_is_marked(script):
    found = unmarked_strings((PACKAGE / "static" / "js" / script).read_text(encoding="utf-8"))
    assert not found, f"{script}: wrap these in gettext() and extract again: {found}"


def test_the_javascript_check_sees_what_is_not_marked():
    source = (
        'var a = gettext("Fine"), b = plural("one thing", "%(n)s things", n);\n'
        'var c = "mqtt-connected", d = "#mqtt_status", e = "Shown as is", f = "MQTT: ";\n'
        'var g = /[+#] not a string/, h = "Unknown", i = "loginStateViewModel";\n'
    )
    assert unmarked_strings(source) == ["Shown as is", "MQTT: ", "Unknown"]
