"""Users' RSA private keys at rest: three layers, the innermost done by the token.

Format 2 (from schema 0003 on)::

    KEK-GCM( context,                         outer: coffre-kek-vN, in the token
      CALLER-GCM( context,                    middle: a key only the user has
        KWP( coffre-ukw-vN, private key )))   inner: the token wraps, and unwraps only
                                              as sensitive + non-extractable

- *outer*: AES-256-GCM under the KEK, in the token, with ``context`` (who the blob
  belongs to) as associated data. KEK rotation re-seals this layer alone.
- *middle*: AES-256-GCM under the caller-held key (the PIN key, or a session's
  key derived from the secret only the client holds), computed with
  ``cryptography``: that key is a value in the process anyway (Argon2id / HKDF
  output). A wrong PIN fails this tag.
- *inner*: ``CKM_AES_KEY_WRAP_PAD`` under the user-key wrapping root, whose
  ``CKA_UNWRAP_TEMPLATE`` demands ``SENSITIVE`` and not ``EXTRACTABLE``. Where the
  token enforces it (``hsm/policy.py``; SoftHSM 2.6 does), nobody, the token-PIN
  holder with the user's PIN included, can get the private key out of the token in
  clear: the inner bytes open only through that root, into an object that cannot
  be wrapped or read.

Format 1 (enrollments before schema 0003) had the middle layer as an AES-KWP of
the private key under the caller's key, imported into the token; a holder of the
token PIN and the user's PIN could unwrap it as extractable. Format 1 blobs still
open (and rewrap, into format 2), and the appliance replaces such a key pair at
the user's next unlock (``appliance/userkeys.py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

from hsm import templates
from hsm.envelope import Algorithm, Envelope
from hsm.errors import DecryptionFailed, KeyNotFound
from hsm.keystore import OPEN_FAILURES
from hsm.labels import RootKind, parse_label

if TYPE_CHECKING:
    from hsm.keystore import Work

FORMAT_TOKEN_WRAPPED = "ukw"  # noqa: S105 - a format name; format 2
FORMAT_CALLER_WRAPPED = "caller-kwp"  # format 1 (legacy)
NONCE = 12


# -- the middle layer (caller's key, in the process) -----------------------------------


# The middle layer's key reference names the caller key and, after ``;``, the user-key
# root version that wrapped the inner layer: readable by whoever opens the outer layer in
# the token (``ukw_label``), so retiring a ukw version counts its users from the data.
UKW_SEPARATOR = ";"


def _seal_middle(key: bytes, key_ref: str, inner: bytes, context: bytes) -> bytes:
    if len(key) != 32:
        raise ValueError("caller keys are 256-bit")
    nonce = os.urandom(NONCE)
    ref = f"{key_ref.split(UKW_SEPARATOR)[0]}{UKW_SEPARATOR}{Envelope.decode(inner).key_ref}"
    header = Envelope(Algorithm.AES_256_GCM, ref, nonce, b"").header()
    return header + AESGCM(key).encrypt(nonce, inner, header + context)


def _open_middle(key: bytes, middle: bytes, context: bytes) -> bytes:
    envelope = Envelope.decode(middle)
    if envelope.algorithm is not Algorithm.AES_256_GCM or len(envelope.params) != NONCE or len(key) != 32:
        raise DecryptionFailed()
    try:
        return AESGCM(key).decrypt(envelope.params, envelope.body, envelope.header() + context)
    except InvalidTag as exc:
        raise DecryptionFailed() from exc


# -- the inner layer (the token) -----------------------------------------------------------


def _wrap_inner(work: Work, private_key: Any) -> bytes:
    label = work.current_label(RootKind.UKW)
    body = work.root(label).wrap_key(private_key, mechanism=Mechanism.AES_KEY_WRAP_PAD)
    return Envelope(Algorithm.AES_KEY_WRAP_PAD, label, b"", bytes(body)).encode()


def _unwrap_inner(work: Work, inner: bytes) -> Any:
    envelope = Envelope.decode(inner)
    parsed = parse_label(envelope.key_ref)
    if envelope.algorithm is not Algorithm.AES_KEY_WRAP_PAD or parsed is None or parsed[0] is not RootKind.UKW:
        raise DecryptionFailed()
    try:
        root = work.root(envelope.key_ref)
    except KeyNotFound as exc:
        raise DecryptionFailed() from exc
    try:
        return work._temp(
            root.unwrap_key(
                ObjectClass.PRIVATE_KEY,
                KeyType.RSA,
                envelope.body,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                capabilities=0,
                template=templates.user_private_key(extractable=False),
            )
        )
    except OPEN_FAILURES as exc:
        raise DecryptionFailed() from exc


# -- format 1 (legacy): the private key wrapped under the caller's key ---------------------


def _legacy_unwrap(work: Work, caller_key: bytes, middle: bytes, extractable: bool) -> Any:
    envelope = Envelope.decode(middle)
    wrapping = work._temp(work.session.create_object(templates.caller_wrapping_key(caller_key)))
    try:
        return work._temp(
            wrapping.unwrap_key(
                ObjectClass.PRIVATE_KEY,
                KeyType.RSA,
                envelope.body,
                mechanism=Mechanism.AES_KEY_WRAP_PAD,
                capabilities=0,
                template=templates.user_private_key(extractable),
            )
        )
    except OPEN_FAILURES as exc:
        raise DecryptionFailed() from exc


def _is_legacy(middle: bytes) -> bool:
    return Envelope.decode(middle).algorithm is Algorithm.AES_KEY_WRAP_PAD


# -- what the keystore offers -------------------------------------------------------------------


def generate(work: Work, bits: int, inner_key: bytes, context: bytes) -> tuple[bytes, bytes]:
    """A new RSA pair in the token: (public key DER, private key blob, format 2)."""
    from pkcs11.util.rsa import encode_rsa_public_key

    public, private = work.session.generate_keypair(
        KeyType.RSA,
        bits,
        store=False,
        capabilities=0,
        mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN,
        public_template=templates.user_public_key(bits),
        # Extractable for the one wrap under the user-key root, then destroyed.
        private_template=templates.user_private_key(extractable=True),
    )
    work._temp(public)
    work._temp(private)
    der = bytes(encode_rsa_public_key(public))
    middle = _seal_middle(inner_key, "pin", _wrap_inner(work, private), context)
    return der, work.seal(middle, context)


def open_for_use(work: Work, blob: bytes, context: bytes, caller_key: bytes) -> Any:
    """The private key inside the token, not extractable. ``DecryptionFailed`` on a
    wrong caller key (a wrong PIN) or any tampering."""
    middle = work.unseal(blob, context)
    if _is_legacy(middle):
        return _legacy_unwrap(work, caller_key, middle, extractable=False)
    return _unwrap_inner(work, _open_middle(caller_key, middle, context))


def rewrap(
    work: Work,
    blob: bytes,
    context: bytes,
    old_key: bytes,
    new_key: bytes,
    new_context: bytes,
    new_key_ref: str,
) -> bytes:
    """The same private key under another caller key (a session's, a new PIN's).
    Format 2 never unwraps the key for this: only the middle layer changes. A
    format 1 blob comes out in format 2."""
    middle = work.unseal(blob, context)
    if _is_legacy(middle):
        private = _legacy_unwrap(work, old_key, middle, extractable=True)
        inner = _wrap_inner(work, private)
    else:
        inner = _open_middle(old_key, middle, context)
    return work.seal(_seal_middle(new_key, new_key_ref, inner, new_context), new_context)


def inner_of(work: Work, blob: bytes, context: bytes, caller_key: bytes) -> bytes:
    """The token-wrapped inner layer of a format 2 blob (``KWP(coffre-ukw-vN, key)``),
    for escrow: it opens only through the token's user-key root, into a
    non-extractable key. ``DecryptionFailed`` on a wrong caller key or format 1."""
    middle = work.unseal(blob, context)
    if _is_legacy(middle):
        raise DecryptionFailed()
    return _open_middle(caller_key, middle, context)


def from_inner(work: Work, inner: bytes, caller_key: bytes, key_ref: str, context: bytes) -> bytes:
    """A format 2 blob around an inner layer (recovery: the escrowed inner layer
    under a new PIN's key). The inner layer is checked to open in the token first."""
    _unwrap_inner(work, inner)
    return work.seal(_seal_middle(caller_key, key_ref, inner, context), context)


def ukw_label(work: Work, blob: bytes, context: bytes) -> str | None:
    """The user-key root version under a format 2 blob's inner layer, read from the
    middle layer's authenticated header after the token opens the outer layer; ``None``
    for format 1 and for format 2 blobs written before the label was recorded."""
    middle = Envelope.decode(work.unseal(blob, context))
    if middle.algorithm is not Algorithm.AES_256_GCM or UKW_SEPARATOR not in middle.key_ref:
        return None
    label = middle.key_ref.split(UKW_SEPARATOR, 1)[1]
    parsed = parse_label(label)
    return label if parsed is not None and parsed[0] is RootKind.UKW else None


def blob_format(work: Work, blob: bytes, context: bytes) -> str:
    return FORMAT_CALLER_WRAPPED if _is_legacy(work.unseal(blob, context)) else FORMAT_TOKEN_WRAPPED


def is_extractable(work: Work, key: Any) -> bool:
    return bool(key[Attribute.EXTRACTABLE])
