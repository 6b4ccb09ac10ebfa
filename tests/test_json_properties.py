"""Property tests of the JSON the core writes for arbitrary Python values (hypothesis).

What must hold (docs/behaviour.md, topics and payloads): always valid JSON; keys in insertion
order; non-string keys stringified as Python's json module does; NaN and infinities as null;
integers of any size exact; values JSON cannot represent as their str()."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from octoprint_mqtt_core._core import encode_event, encode_json

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**100), max_value=2**100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
)
keys = st.one_of(st.text(), st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(keys, children, max_size=5),
    ),
    max_leaves=30,
)
odd_things = st.one_of(
    st.binary(max_size=8), st.frozensets(st.integers(), max_size=3), st.complex_numbers()
)


def finite_only(v):
    """What Python's json would write if NaN and infinities were null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [finite_only(x) for x in v]
    if isinstance(v, dict):
        return {k: finite_only(x) for k, x in v.items()}
    return v


def pairs(text: bytes):
    """Parsed JSON with objects as lists of pairs: order and duplicate keys stay visible."""
    return json.loads(text.decode("utf-8"), object_pairs_hook=list)


@settings(max_examples=300, deadline=None)
@given(values)
def test_any_plain_value_is_what_python_json_would_write(value):
    ours = encode_json(value)
    expected = json.dumps(finite_only(value), ensure_ascii=False).encode("utf-8")
    assert pairs(ours) == pairs(expected)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, st.one_of(values, odd_things), max_size=6))
def test_event_payloads_always_give_valid_json_with_the_added_fields_last(payload):
    body = pairs(encode_event("Ev", payload, "_timestamp", 123))
    names = [k for k, _ in body]
    if "_event" not in [str(k) for k in payload] and "_timestamp" not in [str(k) for k in payload]:
        assert names[-2:] == ["_event", "_timestamp"]
    assert dict(body)["_event"] == "Ev"
    assert dict(body)["_timestamp"] == 123


@settings(max_examples=100, deadline=None)
@given(odd_things)
def test_values_json_cannot_represent_become_their_str(value):
    assert json.loads(encode_json(value)) == str(value)
