"""Which 6-digit PINs Coffre refuses, and why.

A PIN guards the user's private key against whoever holds the database and the
token (docs/security.md): it is the second factor, tried online at most
``max_pin_failures_total`` times. What matters online is how many people pick
the first few guesses, so the policy refuses the guesses an attacker tries first:

- one digit repeated (``111111``);
- an ascending or descending run (``123456``, ``654321``, also across 9→0:
  ``890123``);
- the first digits repeated (``123123``; ``121212`` too: a pair three times);
- the most common human-chosen 6-digit PINs (``COMMON_PINS`` below).

``COMMON_PINS`` is data, not invention. Wang, Gu, Cheng, Huang, Wang et al.,
"Understanding Human-chosen PINs: Characteristics, Distribution and Security"
(AsiaCCS 2017) built their 6-digit PIN corpora by taking the all-digit, 6-long
passwords of leaked password lists in frequency order (they show that the top
5-8 % of PINs cover over half of every set). We did the same on a published
corpus: Mark Burnett's "10 million passwords" list (xato.net, 2015; its top
10,000 in frequency order are in SecLists as
``Passwords/Common-Credentials/10-million-password-list-top-10000.txt``), and
kept every 6-digit entry, in rank order (157 PINs). Its first 25 hold all ten
of the "most common 6-digit PINs" reported by Markert, Bailey, Golla,
Dürmuth and Aviv, "This PIN Can Be Easily Guessed: Analyzing the Security of
Smartphone Unlock PINs" (IEEE S&P 2020): 123456, 654321, 111111, 000000,
123123, 666666, 121212, 112233, 789456, 159753 (a test checks it).

PINs set before this policy keep working: the unlock tells the caller the PIN is
weak (``pin_weakness``) without storing anything, and the UI suggests a change.
"""

from __future__ import annotations

from itertools import pairwise

from appliance.errors import ValidationFailed

# Burnett's top-10,000 (2015), 6-digit entries in frequency rank order.
COMMON_PINS: tuple[str, ...] = (
    # ranks 1-2,000 of the source list
    "123456", "111111", "123123", "696969", "666666", "123321", "654321", "121212",
    "000000", "112233", "555555", "131313", "777777", "159753", "222222", "123654",
    "987654", "999999", "333333", "232323", "888888", "159357", "789456", "101010",
    "444444", "212121", "102030", "252525", "315475", "007007", "111222", "147147",
    "147258", "010203", "147852", "420420", "242424", "123789", "098765", "141414",
    "202020", "852456", "159951", "134679", "151515", "456789", "124578", "135790",
    "010101", "171717", "142536", "454545", "323232", "741852", "456123", "666999",
    "321321", "246810", "753951", "314159", "181818", "321654", "141627", "456456",
    "565656", "272727", "343434", "363636", "951753", "191919", "424242", "911911",
    "112358", "555666", "909090", "121314", "787878", "012345", "090909", "505050",
    "159159", "789789", "456852", "262626", "123098",
    # ranks 2,000-4,200
    "258456", "161616", "898989", "303030", "102938", "123987", "445566", "234567",
    "545454", "987456", "456654", "753159", "223344", "313131", "353535", "282828",
    "906090", "789654", "666777", "369369", "123457", "132435", "963852", "989898",
    "362436", "474747", "000007", "128500", "789123", "525252", "321123", "100000",
    "150781", "143143", "222333", "321456", "292929", "636363", "420247", "332211",
    "987987", "000001", "456321", "404040", "162534", "789987", "135246", "122333",
    "050505", "515151", "200000", "757575", "727272", "020202", "778899", "969696",
    "555777", "192837", "112211", "777888", "333666", "030303", "656565", "070707",
    "585858", "414141", "336699", "575757", "100100", "080808", "125125", "123451",
)  # fmt: skip

_COMMON = frozenset(COMMON_PINS)

REPEATED = "the PIN is one digit repeated"
RUN = "the PIN is a run of consecutive digits"
DOUBLED = "the PIN repeats its first digits"
COMMON = "the PIN is among the most common PINs people choose"


def _is_run(pin: str) -> bool:
    steps = {(int(b) - int(a)) % 10 for a, b in pairwise(pin)}
    return steps in ({1}, {9})


def pin_weakness(pin: str) -> str | None:
    """Why ``pin`` (6 digits) is too easy to guess, or None."""
    if len(set(pin)) == 1:
        return REPEATED
    if _is_run(pin):
        return RUN
    if pin[:3] == pin[3:] or pin[:2] * 3 == pin:
        return DOUBLED
    if pin in _COMMON:
        return COMMON
    return None


def check_pin_policy(pin: str) -> None:
    """Refuse a new PIN an attacker would try first (422, with the reason)."""
    reason = pin_weakness(pin)
    if reason is not None:
        raise ValidationFailed(f"choose another PIN: {reason}")


__all__ = ["COMMON_PINS", "check_pin_policy", "pin_weakness"]
