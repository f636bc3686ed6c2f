"""Password and passphrase generation with the ``secrets`` module."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from functools import lru_cache

from appliance.errors import ValidationFailed

SYMBOLS = "!#$%&()*+,-./:;<=>?@[]^_{|}~"
CLASSES = {
    "lower": string.ascii_lowercase,
    "upper": string.ascii_uppercase,
    "digits": string.digits,
    "symbols": SYMBOLS,
}


@dataclass(frozen=True)
class GeneratorOptions:
    length: int = 20
    lower: bool = True
    upper: bool = True
    digits: bool = True
    symbols: bool = True
    passphrase: bool = False
    words: int = 6


def password(options: GeneratorOptions) -> str:
    """A random password with at least one character of each chosen class."""
    if not 8 <= options.length <= 128:
        raise ValidationFailed("length must be between 8 and 128")
    pools = [chars for name, chars in CLASSES.items() if getattr(options, name)]
    if not pools:
        raise ValidationFailed("choose at least one character class")
    alphabet = "".join(pools)
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(options.length))
        if all(any(c in pool for c in value) for pool in pools):
            return value


@lru_cache(maxsize=1)
def _wordlist() -> tuple[str, ...]:
    """Common English words of 4 to 8 letters, from the zxcvbn frequency lists
    (already a dependency): about 8,000 words, 13 bits each."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    words = [w for w in FREQUENCY_LISTS["english_wikipedia"] if w.isascii() and w.isalpha() and 4 <= len(w) <= 8]
    return tuple(dict.fromkeys(words))[:8192]


def passphrase(options: GeneratorOptions) -> str:
    if not 4 <= options.words <= 12:
        raise ValidationFailed("a passphrase has between 4 and 12 words")
    words = _wordlist()
    return "-".join(secrets.choice(words) for _ in range(options.words))


def generate(options: GeneratorOptions) -> str:
    return passphrase(options) if options.passphrase else password(options)
