"""Request bodies must be strict I-JSON (RFC 7493): invalid or overlong UTF-8, encoded
or escaped lone surrogates, deep nesting, duplicate member names, NaN and numbers
too long to convert are all a 400 with a clear message on every JSON endpoint,
authenticated or not, never a 500 with a traceback, and they change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.api import test_bad_input
from tests.api.test_bad_input import ENDPOINTS, World, assert_error, unchanged
from web.jsonbody import MAX_DEPTH, check_json


@pytest.fixture(scope="module", params=test_bad_input.DATABASES)
def world(request, hsm_config, tmp_path_factory) -> Iterator[World]:
    """The same users, vault and item as test_bad_input's world, in an appliance of this module."""
    yield from test_bad_input.world.__wrapped__(request, hsm_config, tmp_path_factory)


def _with(field_raw: bytes) -> bytes:
    return b'{"x": ' + field_raw + b"}"


# (name, body bytes, words the detail must contain). The body is sent as is; the
# valid fields of the endpoint are not needed: the body is refused before any of them is read.
BAD_BODIES = [
    ("invalid_utf8", b'{"a": "\xff\xfe"}', "UTF-8"),
    ("overlong_slash", b'{"a": "\xc0\xaf"}', "UTF-8"),
    ("overlong_nul", b'{"a": "\xc0\x80"}', "UTF-8"),
    ("overlong_three_bytes", b'{"a": "\xe0\x80\xaf"}', "UTF-8"),
    ("encoded_surrogate", b'{"a": "\xed\xa0\x80"}', "UTF-8"),
    ("above_u10ffff", b'{"a": "\xf4\x90\x80\x80"}', "UTF-8"),
    ("truncated_sequence", b'{"a": "\xe2\x82"}', "UTF-8"),
    ("utf16_body", '{"a": "b"}'.encode("utf-16"), "UTF-8"),
    ("lone_high_surrogate", b'{"a": "\\ud800"}', "surrogate"),
    ("lone_low_surrogate", b'{"a": "\\udc00"}', "surrogate"),
    ("reversed_pair", b'{"a": "\\udc00\\ud800"}', "surrogate"),
    ("high_then_letter", b'{"a": "x\\ud800\\u0041"}', "surrogate"),
    ("surrogate_in_name", b'{"\\ud800": 1}', "surrogate"),
    ("nested_1000_arrays", b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested"),
    ("nested_1000_objects", b'{"a": ' * 1000 + b"1" + b"}" * 1000, "nested"),
    ("nested_100k_unclosed", b"[" * 100_000, "nested"),
    ("nested_just_over", _with(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH), "nested"),
    ("duplicate_member", b'{"a": "1", "a": "2"}', "more than once"),
    ("nan", b'{"a": NaN}', "NaN"),
    ("infinity", b'{"a": -Infinity}', "Infinity"),
    ("bare_nan", b"NaN", "NaN"),
    ("huge_integer", _with(b"9" * 5000), "digits"),
    ("bom", b'\xef\xbb\xbf{"a": 1}', "JSON"),
]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(("kind", "raw", "words"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bodies_that_are_not_strict_json_are_400_with_a_clear_message(world, endpoint, kind, raw, words):
    ep = ENDPOINTS[endpoint]
    headers = {"content-type": "application/json", **(world.admin if ep.auth else {})}
    with unchanged(world):
        r = world.client.request(ep.method, ep.url(world), content=raw, headers=headers)
        body = assert_error(r, 400)
    assert words.lower() in body["detail"].lower(), body


# Bodies that are valid JSON but not an object of the right shape: 400 too.
SHAPES = [
    b"[]",
    b"[{}]",
    b"0",
    b"-1",
    b"1e400",
    b"123456789012345678901234567890",
    b'"text"',
    b"true",
    b"null",
    b"{}",
]


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("raw", SHAPES, ids=[s.decode()[:12] for s in SHAPES])
def test_bodies_of_the_wrong_shape_are_400(world, endpoint, raw):
    ep = ENDPOINTS[endpoint]
    headers = {"content-type": "application/json", **(world.admin if ep.auth else {})}
    with unchanged(world):
        assert_error(world.client.request(ep.method, ep.url(world), content=raw, headers=headers), 400)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_duplicated_field_of_a_valid_body_is_refused(world, endpoint):
    # A proxy or a log reader taking the first value and the app the last is a parser
    # differential; so a name given twice is refused rather than resolved.
    ep = ENDPOINTS[endpoint]
    name, value = next(iter(ep.body.items()))
    raw = json.dumps(ep.body)[:-1].encode() + b", " + json.dumps(name).encode() + b": " + json.dumps(value).encode()
    raw += b"}"
    headers = {"content-type": "application/json", **(world.admin if ep.auth else {})}
    with unchanged(world):
        body = assert_error(world.client.request(ep.method, ep.url(world), content=raw, headers=headers), 400)
    assert "more than once" in body["detail"]


def test_valid_surrogate_pairs_and_nesting_within_the_limit_pass_the_gate():
    check_json(b'{"a": "\\ud83d\\udd12 \xf0\x9f\x94\x92"}')  # one escaped pair, one raw emoji
    check_json(_with(b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)))
    check_json(b'{"a": 1.5e300, "b": -0, "c": 18446744073709551616}')
