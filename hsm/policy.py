"""Does the token enforce the unwrap template of the key that unwraps private keys?
Probed, not assumed.

``CKA_UNWRAP_TEMPLATE`` on a wrapping key tells the token which attributes every
key it unwraps must have. The user-key wrapping root (``coffre-ukw-vN``, made in
``hsm/templated.py``) demands ``CKA_SENSITIVE=TRUE, CKA_EXTRACTABLE=FALSE``. On a
token that enforces it, a private key can only ever be unwrapped as a sensitive,
non-extractable object, even by someone who holds the token PIN and the user's PIN
or session token. On a token that does not, such a person can unwrap it with a
template of their own and read it.

The probe wraps a throw-away AES key under the *current* root and asks for an
unwrap that breaks the template (not sensitive, extractable). Refused: enforced.
Accepted: not enforced (the probe checks the value is then readable, and
destroys it). Measured on SoftHSM 2.6.1: enforced (``CKR_TEMPLATE_INCONSISTENT``);
its ``CKA_DERIVE_TEMPLATE`` is not, which is why Coffre derives nothing in the
token. `coffre status` shows the answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from hsm import templates
from hsm.labels import RootKind

if TYPE_CHECKING:
    from hsm.keystore import Work


@dataclass(frozen=True)
class TemplatePolicy:
    enforced: bool
    detail: str


def violating_unwrap(wrapping: Any, wrapped: bytes, object_class: ObjectClass, key_type: KeyType) -> Any:
    """Ask for what an enforced template forbids: a readable, extractable key."""
    template: dict[Attribute, Any]
    if object_class is ObjectClass.SECRET_KEY:
        template = {Attribute.TOKEN: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True}
    else:
        template = templates.user_private_key(extractable=True)
    template |= {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
    return wrapping.unwrap_key(
        object_class, key_type, wrapped, mechanism=Mechanism.AES_KEY_WRAP_PAD, capabilities=0, template=template
    )


def probe_unwrap_template(work: Work, wrapping: Any) -> TemplatePolicy:
    made: list[Any] = []
    try:
        sample = work.session.generate_key(
            KeyType.AES,
            256,
            store=False,
            capabilities=0,
            mechanism=Mechanism.AES_KEY_GEN,
            template=templates.data_key(),
        )
        made.append(sample)
        wrapped = bytes(wrapping.wrap_key(sample, mechanism=Mechanism.AES_KEY_WRAP_PAD))
        try:
            broken = violating_unwrap(wrapping, wrapped, ObjectClass.SECRET_KEY, KeyType.AES)
        except p11.PKCS11Error as exc:
            return TemplatePolicy(True, f"an unwrap breaking the template is refused ({type(exc).__name__})")
        made.append(broken)
        try:
            readable = len(bytes(broken[Attribute.VALUE])) == 32
        except p11.PKCS11Error:
            readable = False
        what = "and the key's value was readable" if readable else "(the value was still not readable)"
        return TemplatePolicy(False, f"an unwrap breaking the template was accepted {what}")
    finally:
        for obj in made:
            try:
                obj.destroy()
            except p11.PKCS11Error:
                pass


_lock = threading.Lock()
_cache: dict[tuple[str, str], TemplatePolicy] = {}


def template_policy(work: Work) -> TemplatePolicy:
    """The probe's answer for the current user-key wrapping root, once per process."""
    label = work.current_label(RootKind.UKW)
    key = (work.keystore.config.module, label)
    with _lock:
        if key in _cache:
            return _cache[key]
    policy = probe_unwrap_template(work, work.root(label))
    with _lock:
        _cache[key] = policy
    return policy
