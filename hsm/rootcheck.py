"""A key is used as a root only if it has a root's attributes.

Roots are found by label. Whoever holds the token PIN can create a key with the
label of the next version (``coffre-ukw-v9``) and a value they know; without
this check the next key pair would be wrapped under it and its private key
exported. So before a label is trusted, the object must be what ``coffre init``
makes (``hsm/templates.py``, ``hsm/templated.py``):

- generated in the token (``CKA_LOCAL``), sensitive and non-extractable since
  it was made (``CKA_ALWAYS_SENSITIVE``, ``CKA_NEVER_EXTRACTABLE``), not
  modifiable: a value imported or ever readable is refused;
- exactly its kind's capabilities (KEK: encrypt/decrypt; HMAC roots:
  sign/verify; user-key wrapping: wrap/unwrap) and nothing else;
- for the user-key wrapping root, on a token that enforces unwrap templates,
  a template that really is enforced (``hsm/policy.py``), so a root generated
  without one is refused too.

A refused root answers 503 (``RootKeyRejected``) and is logged: someone with the
token PIN created it, which an operator must look into.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from pkcs11 import Attribute
from pkcs11 import exceptions as p11

from hsm.errors import RootKeyRejected
from hsm.labels import RootKind

if TYPE_CHECKING:
    from hsm.keystore import Work

log = logging.getLogger("coffre.hsm")

_CAPABILITIES = (
    Attribute.ENCRYPT,
    Attribute.DECRYPT,
    Attribute.WRAP,
    Attribute.UNWRAP,
    Attribute.SIGN,
    Attribute.VERIFY,
    Attribute.DERIVE,
)
_ALLOWED = {
    RootKind.KEK: {Attribute.ENCRYPT, Attribute.DECRYPT},
    RootKind.UKW: {Attribute.WRAP, Attribute.UNWRAP},
    RootKind.PEPPER: {Attribute.SIGN, Attribute.VERIFY},
    RootKind.AUDIT: {Attribute.SIGN, Attribute.VERIFY},
    RootKind.BIND: {Attribute.SIGN, Attribute.VERIFY},
}
_REQUIRED_TRUE = (Attribute.LOCAL, Attribute.SENSITIVE, Attribute.ALWAYS_SENSITIVE, Attribute.NEVER_EXTRACTABLE)
_REQUIRED_FALSE = (Attribute.EXTRACTABLE, Attribute.MODIFIABLE)

_lock = threading.Lock()
_enforcing: dict[str, bool] = {}


def _flag(obj: Any, attribute: Attribute) -> bool | None:
    try:
        return bool(obj[attribute])
    except (p11.AttributeTypeInvalid, p11.AttributeSensitive):
        return None


def _token_enforces_templates(work: Work) -> bool:
    """Probe once per module with a throw-away session key made with a template."""
    import os

    from hsm.policy import probe_unwrap_template
    from hsm.templated import generate_aes_with_unwrap_template

    module = work.keystore.config.module
    with _lock:
        if module in _enforcing:
            return _enforcing[module]
    label = "coffre-probe-" + os.urandom(8).hex()
    try:
        generate_aes_with_unwrap_template(
            work, label.encode(), os.urandom(8), False, {"SENSITIVE": True, "EXTRACTABLE": False}
        )
    except p11.PKCS11Error:
        result = False  # the token does not know the attribute
    else:
        probe = work.session.get_key(label=label)
        try:
            result = probe_unwrap_template(work, probe).enforced
        finally:
            probe.destroy()
    with _lock:
        _enforcing[module] = result
    return result


def check_root(work: Work, obj: Any, kind: RootKind, label: str) -> None:
    problems = [a.name for a in _REQUIRED_TRUE if _flag(obj, a) is not True]
    problems += [a.name for a in _REQUIRED_FALSE if _flag(obj, a) is not False]
    allowed = _ALLOWED[kind]
    problems += [f"{a.name}={_flag(obj, a)}" for a in _CAPABILITIES if _flag(obj, a) is not (a in allowed)]
    if not problems and kind is RootKind.UKW and _token_enforces_templates(work):
        from hsm.policy import probe_unwrap_template

        if not probe_unwrap_template(work, obj).enforced:
            problems.append("no enforced CKA_UNWRAP_TEMPLATE")
    if problems:
        log.error("root key %s refused: it is not what `coffre init` makes (%s)", label, ", ".join(problems))
        raise RootKeyRejected(f"root key {label} does not have a root's attributes; see the log")
