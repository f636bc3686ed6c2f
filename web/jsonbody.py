"""The one gate every JSON request body passes before anything reads it.

msgspec (through Litestar) decodes the body; before that, the raw bytes must be
I-JSON (RFC 7493): strict UTF-8 (no overlong forms, no encoded surrogates), no
escaped lone surrogates, no duplicate member names, no NaN or Infinity, and at
most ``MAX_DEPTH`` levels of nesting. Anything else is a 400 with a message that
says what is wrong, never a 500 with a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import Empty

MAX_DEPTH = 16


def _refuse_constant(name: str) -> Any:
    raise ValidationException(f"the request body is not valid JSON: {name} is not a JSON number")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValidationException(f"the request body names the member {key!r} more than once")
        seen[key] = value
    return seen


def _has_lone_surrogate(text: str) -> bool:
    # A valid pair was already combined into one code point by the parser.
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _check_tree(document: Any) -> None:
    """Depth and surrogates, iteratively (a recursive walk could itself overflow)."""
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise ValidationException(f"the request body is nested more than {MAX_DEPTH} levels deep")
            children = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
            for key, child in children:
                if key is not None and _has_lone_surrogate(key):
                    raise ValidationException("the request body has a lone UTF-16 surrogate escape (\\ud800-\\udfff)")
                stack.append((child, depth + 1))
        elif isinstance(value, str) and _has_lone_surrogate(value):
            raise ValidationException("the request body has a lone UTF-16 surrogate escape (\\ud800-\\udfff)")


def check_json(body: bytes) -> None:
    """Raise ValidationException (400) unless ``body`` is strict I-JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationException(f"the request body is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValidationException(f"the request body is nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise ValidationException(
            f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValidationException:
        raise
    except ValueError:  # an integer with more digits than Python converts (4300)
        raise ValidationException("the request body has a number with too many digits") from None
    _check_tree(document)


class JsonRequest(Request[Any, Any, Any]):
    """Litestar's request, with the body checked by :func:`check_json` before decoding."""

    async def json(self) -> Any:
        if self._connection_state.json is Empty:
            body = await self.body()
            if body:
                check_json(body)
        return await super().json()
