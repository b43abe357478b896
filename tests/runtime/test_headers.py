"""Headers: case-insensitive, multi-valued, ordered, and closed to header injection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpworkers import Headers

# Test tier: in memory; see tests/_tiers.py.
pytestmark = pytest.mark.unit

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
names = st.text(alphabet=TCHARS, min_size=1, max_size=20)
# Values as they come out of Headers: latin-1, no controls but HTAB, no edge whitespace.
values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=30,
).map(lambda v: v.strip(" \t"))
pairs = st.lists(st.tuples(names, values), max_size=12)
forbidden = st.sampled_from(["\r", "\n", "\x00", "\r\n", "\x01", "\x1f", "\x7f"])


def test_lookup_ignores_case_and_iteration_is_lowercase_pairs_in_order() -> None:
    h = Headers([("Content-Type", "text/plain"), ("X-A", "1"), ("x-a", "2")])
    assert h.get("content-type") == h.get("CONTENT-TYPE") == h["Content-Type"] == "text/plain"
    assert list(h) == [("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2")]
    assert h.items() == list(h)
    assert h.keys() == ["content-type", "x-a"]
    assert "X-A" in h
    assert "x-b" not in h
    assert 42 not in h
    assert len(h) == 3


def test_several_values_are_joined_except_set_cookie() -> None:
    h = Headers()
    h.append("Vary", "Accept")
    h.append("vary", "Origin")
    h.append("Set-Cookie", "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT")
    h.append("Set-Cookie", "b=2")
    assert h.get("vary") == "Accept, Origin"
    assert h.get_all("VARY") == ["Accept", "Origin"]
    assert h.get("set-cookie") == "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"
    assert h.get_all("set-cookie") == ["a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT", "b=2"]


def test_get_default_and_missing_item() -> None:
    h = Headers({"a": "1"})
    assert h.get("b") is None
    assert h.get("b", "x") == "x"
    with pytest.raises(KeyError):
        h["b"]
    with pytest.raises(KeyError):
        del h["b"]


def test_set_replaces_every_value_in_place_of_the_first() -> None:
    h = Headers([("a", "1"), ("b", "2"), ("A", "3")])
    h.set("a", "9")
    assert list(h) == [("a", "9"), ("b", "2")]
    h["c"] = "4"
    assert list(h) == [("a", "9"), ("b", "2"), ("c", "4")]


def test_delete_and_del() -> None:
    h = Headers([("a", "1"), ("b", "2"), ("A", "3")])
    h.delete("A")
    assert list(h) == [("b", "2")]
    h.delete("absent")  # no error, as in the Fetch API
    del h["B"]
    assert len(h) == 0


def test_constructed_from_mapping_pairs_or_headers() -> None:
    from_map = Headers({"A": "1", "B": "2"})
    from_pairs = Headers([("a", "1"), ("b", "2")])
    copied = Headers(from_pairs)
    assert from_map == from_pairs == copied
    copied.append("c", "3")
    assert "c" not in from_pairs  # a copy, not a view


@pytest.mark.parametrize(
    "init",
    ["a: b", b"a: b", 42, [("a",)], [("a", "b", "c")], ["ab"]],
)
def test_bad_init_is_a_type_error(init: object) -> None:
    with pytest.raises(TypeError):
        Headers(init)  # type: ignore[arg-type]


def test_non_str_names_and_values_are_refused() -> None:
    with pytest.raises(TypeError, match="must be str"):
        Headers({"a": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must be str"):
        Headers([(b"a", "1")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"str\(n\)"):
        Headers().set("a", 5)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a b", "a:b", "a\r\nb", "a\nb", "é", "a\x00"])
def test_names_must_be_tokens(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        Headers().append(name, "v")


def test_values_outside_latin1_are_refused() -> None:
    with pytest.raises(ValueError, match="latin-1"):
        Headers({"a": "€"})
    assert Headers({"a": "café"})["a"] == "café"


def test_values_are_trimmed_of_edge_whitespace() -> None:
    assert Headers({"a": "  x y \t"})["a"] == "x y"


def test_repr_hides_credentials() -> None:
    h = Headers({"Authorization": "Bearer s3cret", "Cookie": "sid=1", "Accept": "*/*"})
    text = repr(h)
    assert "s3cret" not in text
    assert "sid=1" not in text
    assert "*/*" in text
    assert "[redacted]" in text


def test_raw_round_trip_for_asgi() -> None:
    h = Headers([("X-A", "café"), ("b", "2")])
    assert h._raw() == [(b"x-a", "café".encode("latin-1")), (b"b", b"2")]
    assert Headers._from_raw(h._raw()) == h


@given(pairs)
def test_property_pairs_are_kept_in_order_and_lowercased(items: list[tuple[str, str]]) -> None:
    h = Headers(items)
    assert list(h) == [(name.lower(), value) for name, value in items]
    for name, _ in items:
        expected = [value for n, value in items if n.lower() == name.lower()]
        assert h.get_all(name.upper()) == expected
        assert h.get_all(name.lower()) == expected
        if name.lower() != "set-cookie":
            assert h.get(name) == ", ".join(expected)


@given(pairs, names, values)
def test_property_set_leaves_exactly_one_value(
    items: list[tuple[str, str]], name: str, value: str
) -> None:
    h = Headers(items)
    h.set(name.swapcase(), value)
    assert h.get_all(name) == [value]
    others = [(n.lower(), v) for n, v in items if n.lower() != name.lower()]
    assert [pair for pair in h if pair[0] != name.lower()] == others


@given(pairs, names)
def test_property_delete_removes_only_that_name(items: list[tuple[str, str]], name: str) -> None:
    h = Headers(items)
    h.delete(name)
    assert name not in h
    assert list(h) == [(n.lower(), v) for n, v in items if n.lower() != name.lower()]


@given(values, forbidden, values)
def test_property_control_characters_never_enter_a_value(before: str, bad: str, after: str) -> None:
    value = before + bad + after
    h = Headers()
    with pytest.raises(ValueError, match="control character"):
        h.append("x-injected", value)
    with pytest.raises(ValueError, match="control character"):
        h.set("x-injected", value)
    with pytest.raises(ValueError, match="control character"):
        Headers({"x-injected": value})
    assert "x-injected" not in h


@given(names, forbidden, names)
def test_property_control_characters_never_enter_a_name(before: str, bad: str, after: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        Headers({before + bad + after: "v"})


@given(pairs)
def test_property_raw_round_trip(items: list[tuple[str, str]]) -> None:
    h = Headers(items)
    assert Headers._from_raw(h._raw()) == h
