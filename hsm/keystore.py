"""Domain operations on the token, expressed as intents.

Nothing here knows about users or vaults: callers pass opaque context bytes
(bound into AES-GCM associated data) and opaque cache keys. Mechanisms,
parameters and templates are pinned on every call.

Operations happen inside ``Keystore.work()``: one pooled session lent to the
calling thread; the session objects it creates are destroyed on exit unless they
were handed to the ``HandleCache``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.mechanisms import GCMParams
from pkcs11.util.rsa import decode_rsa_public_key

from hsm import templates
from hsm.cache import HandleCache
from hsm.config import HsmConfig
from hsm.envelope import Algorithm, Envelope
from hsm.errors import DecryptionFailed, KeyNotFound, RootKeyMissing
from hsm.labels import RootKind, label_for, parse_label
from hsm.observe import observed
from hsm.pool import SessionPool

GCM_NONCE_BYTES = 12
# How long the newest root label is trusted before the token is asked again
# (default; ``HsmConfig.root_ttl_seconds`` sets it).
ROOT_TTL = 30.0
_LIST_ATTEMPTS = 3  # root listings restarted when a token object vanishes mid-search
GCM_TAG_BITS = 128

# Failures of an unwrap/decrypt that must read as one opaque error. SoftHSM
# reports a bad GCM tag as CKR_GENERAL_ERROR / CKR_FUNCTION_FAILED.
OPEN_FAILURES: tuple[type[Exception], ...] = (
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.WrappedKeyInvalid,
    p11.WrappedKeyLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
    p11.GeneralError,
    p11.FunctionFailed,
    p11.MechanismParamInvalid,
    p11.ArgumentsBad,
    p11.TemplateInconsistent,
    p11.AttributeValueInvalid,
)

# OAEP choices, best first. SoftHSM 2.6 accepts only SHA-1 / MGF1-SHA-1.
_OAEP: dict[Algorithm, tuple[Mechanism, MGF]] = {
    Algorithm.RSA_OAEP_SHA256: (Mechanism.SHA256, MGF.SHA256),
    Algorithm.RSA_OAEP_SHA1: (Mechanism.SHA_1, MGF.SHA1),
}

PIN_KEY_REF = "pin"
SESSION_KEY_REF = "session"
MEMBER_KEY_REF = "member"


def _nonce() -> bytes:
    return os.urandom(GCM_NONCE_BYTES)


@dataclass(frozen=True)
class RootKeyInfo:
    label: str
    kind: RootKind
    version: int


class Keystore:
    """The token as Coffre uses it: roots, sealing, MACs, user and data keys."""

    def __init__(self, config: HsmConfig, pool: SessionPool | None = None) -> None:
        self.config = config
        self.pool = pool or SessionPool(config)
        self.cache = HandleCache(config.cache_entries, config.cache_ttl_seconds, lambda: self.pool.generation)
        self._root_lock = threading.Lock()
        self._roots: dict[str, Any] = {}
        self._current: dict[RootKind, tuple[str, float]] = {}
        self._roots_generation = -1

    @contextmanager
    def work(self) -> Iterator[Work]:
        with self.pool.lend() as (session, generation):
            if self._roots_generation < generation:
                with self._root_lock:
                    if self._roots_generation < generation:
                        self._roots = {}
                        self._current = {}
                        self._roots_generation = generation
                        self.cache.forget_before(generation)
            work = Work(self, session, generation)
            try:
                yield work
            finally:
                work.destroy_temporaries()

    def close(self) -> None:
        self.cache.clear()
        self.pool.close()

    # -- roots (each call takes its own session) --------------------------------

    def list_roots(self) -> list[RootKeyInfo]:
        with self.work() as work:
            return work.list_roots()

    def ensure_roots(self) -> list[str]:
        """Create version 1 of every root that has none yet; return what was made."""
        with self.work() as work:
            present = {info.kind for info in work.list_roots()}
            made = []
            for kind in RootKind:
                if kind not in present:
                    made.append(work.create_root(kind, 1))
            return made

    def create_root_version(self, kind: RootKind, version: int) -> str:
        """Create ``kind`` version ``version`` unless the token has it (a rotation
        job resumed after a crash between creating the key and recording it)."""
        with self.work() as work:
            label = label_for(kind, version)
            if any(i.label == label for i in work.list_roots()):
                return label
            return work.create_root(kind, version)

    def destroy_root(self, label: str) -> int:
        """Destroy every copy of a root version in the token (retirement). Returns
        how many objects were destroyed."""
        if parse_label(label) is None:
            raise KeyNotFound(f"not a root key label: {label}")
        with self.work() as work:
            copies = work._copies(label)
            try:
                for obj in copies:
                    obj.destroy()
            finally:  # even part-way: no cached handle to a destroyed object survives
                work.refresh_roots()
            return len(copies)

    def rotate_root(self, kind: RootKind) -> str:
        with self.work() as work:
            versions = [i.version for i in work.list_roots() if i.kind == kind]
            return work.create_root(kind, max(versions, default=0) + 1)

    def current_label(self, kind: RootKind) -> str:
        with self.work() as work:
            return work.current_root(kind).label

    def ping(self) -> None:
        """A real operation on the token: HMAC under the current pepper key."""
        with self.work() as work:
            work.mac(RootKind.PEPPER, b"coffre-health")


class Work:
    """One pooled session lent to one thread for a unit of work."""

    def __init__(self, keystore: Keystore, session: Any, generation: int) -> None:
        self.keystore = keystore
        self.session = session
        self.generation = generation  # the pool generation the session was lent in
        self._temporaries: list[Any] = []

    def _temp(self, obj: Any) -> Any:
        self._temporaries.append(obj)
        return obj

    def keep(self, obj: Any) -> Any:
        """Stop treating ``obj`` as temporary (the caller caches it)."""
        self._temporaries = [o for o in self._temporaries if o is not obj]
        return obj

    def destroy_temporaries(self) -> None:
        while self._temporaries:
            obj = self._temporaries.pop()
            try:
                obj.destroy()
            except (p11.PKCS11Error, RuntimeError):
                pass

    # -- roots ------------------------------------------------------------------

    def list_roots(self) -> list[RootKeyInfo]:
        """Root keys on the token. Only token objects are searched: a search also
        returns other sessions' session objects, which may be destroyed between
        the find and the attribute read. A token object destroyed in that window
        (a concurrent de-duplication in ``create_root``) restarts the listing."""
        for _ in range(_LIST_ATTEMPTS - 1):
            try:
                return self._list_roots_once()
            except p11.ObjectHandleInvalid:
                continue
        return self._list_roots_once()

    def _list_roots_once(self) -> list[RootKeyInfo]:
        found = []
        for obj in self.session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: True}):
            label = obj[Attribute.LABEL]
            parsed = parse_label(label) if isinstance(label, str) else None
            if parsed is not None:
                found.append(RootKeyInfo(label=label, kind=parsed[0], version=parsed[1]))
        return sorted(found, key=lambda i: (i.kind.value, i.version))

    def create_root(self, kind: RootKind, version: int) -> str:
        """Create a root key version; if another process created the same label at
        the same moment, every process keeps the copy with the lowest CKA_ID and
        the others are destroyed, so all nodes converge on one key."""
        label = label_for(kind, version)
        key_id = os.urandom(16)
        if kind is RootKind.UKW:
            self._create_ukw(label, key_id)
            return self._deduplicate(label)
        if kind is RootKind.KEK:
            key_type, bits, mechanism = KeyType.AES, 256, Mechanism.AES_KEY_GEN
            template = templates.root_aes_kek(label)
        else:
            key_type, bits, mechanism = KeyType.GENERIC_SECRET, 256, Mechanism.GENERIC_SECRET_KEY_GEN
            template = templates.root_hmac(label)
        self.session.generate_key(
            key_type, bits, id=key_id, label=label, store=True, capabilities=0, mechanism=mechanism, template=template
        )
        return self._deduplicate(label)

    def _create_ukw(self, label: str, key_id: bytes) -> None:
        """The user-key wrapping root: its unwrap template makes every private key it
        unwraps sensitive and non-extractable (``hsm/policy.py`` probes whether the
        token enforces it). A token that does not know the attribute gets the key
        without it, and `coffre status` says so."""
        from hsm.templated import generate_aes_with_unwrap_template

        try:
            generate_aes_with_unwrap_template(
                self, label.encode("ascii"), key_id, True, {"SENSITIVE": True, "EXTRACTABLE": False}
            )
        except (p11.AttributeTypeInvalid, p11.AttributeValueInvalid, p11.TemplateInconsistent):
            self.session.generate_key(
                KeyType.AES,
                256,
                id=key_id,
                label=label,
                store=True,
                capabilities=0,
                mechanism=Mechanism.AES_KEY_GEN,
                template=templates.root_aes_ukw(label),
            )

    def _deduplicate(self, label: str) -> str:
        copies = self._copies(label)
        for extra in copies[1:]:
            try:
                extra.destroy()
            except p11.PKCS11Error:
                pass  # the other process destroyed it first
        return label

    def _copies(self, label: str) -> list[Any]:
        """Token objects carrying ``label``, lowest CKA_ID first."""
        search = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: True, Attribute.LABEL: label}
        objs = list(self.session.get_objects(search))
        return sorted(objs, key=lambda o: bytes(o[Attribute.ID] or b""))

    def root(self, label: str) -> Any:
        keystore = self.keystore
        cached = keystore._roots.get(label)
        if cached is not None and keystore._roots_generation == self.generation:
            return cached
        parsed = parse_label(label)
        if parsed is None:
            raise KeyNotFound(f"not a root key label: {label}")
        key_type = KeyType.AES if parsed[0] in (RootKind.KEK, RootKind.UKW) else KeyType.GENERIC_SECRET
        try:
            obj = self.session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=key_type, label=label)
        except p11.NoSuchKey as exc:
            raise RootKeyMissing(f"root key {label} is not on the token") from exc
        except p11.MultipleObjectsReturned:
            # A concurrent creation not yet cleaned up: the lowest CKA_ID wins everywhere.
            obj = self._copies(label)[0]
        from hsm.rootcheck import check_root

        check_root(self, obj, parsed[0], label)  # a planted root is refused, never used
        with keystore._root_lock:
            if keystore._roots_generation == self.generation:  # handles of an older module init are not kept
                keystore._roots[label] = obj
        return obj

    def current_root(self, kind: RootKind) -> RootKeyInfo:
        versions = [i for i in self.list_roots() if i.kind == kind]
        if not versions:
            raise RootKeyMissing(f"no {kind.value} root key on the token; run `coffre init`")
        return versions[-1]

    def current_label(self, kind: RootKind) -> str:
        """The newest version's label, re-read from the token every ``ROOT_TTL``
        seconds so that a rotation done elsewhere is picked up without a restart."""
        keystore = self.keystore
        cached = keystore._current.get(kind)
        now = time.monotonic()
        if cached is not None and cached[1] > now and keystore._roots_generation == self.generation:
            return cached[0]
        label = self.current_root(kind).label
        with keystore._root_lock:
            if keystore._roots_generation == self.generation:
                keystore._current[kind] = (label, now + keystore.config.root_ttl_seconds)
        return label

    def refresh_roots(self) -> None:
        """Forget looked-up roots (after a rotation done by another process)."""
        with self.keystore._root_lock:
            self.keystore._roots = {}
            self.keystore._current = {}

    # -- MACs -------------------------------------------------------------------

    @observed("mac")
    def mac(self, kind: RootKind, data: bytes, label: str | None = None) -> tuple[str, bytes]:
        """HMAC-SHA256 under a root MAC key (the newest version unless ``label``)."""
        if kind in (RootKind.KEK, RootKind.UKW):
            raise ValueError(f"the {kind.value} root does not MAC")
        if label is not None and (parse_label(label) or (None,))[0] is not kind:
            raise RootKeyMissing(f"{label} is not a {kind.value} key")
        label = label or self.current_label(kind)
        key = self.root(label)
        return label, bytes(key.sign(data, mechanism=Mechanism.SHA256_HMAC))

    # -- sealing under the KEK (outer layer of everything kept at rest) ----------

    @observed("seal")
    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        label = self.current_label(RootKind.KEK)
        return self._gcm_encrypt(self.root(label), label, plaintext, context)

    @observed("unseal")
    def unseal(self, blob: bytes, context: bytes) -> bytes:
        envelope = Envelope.decode(blob)
        parsed = parse_label(envelope.key_ref)
        if envelope.algorithm is not Algorithm.AES_256_GCM or parsed is None or parsed[0] is not RootKind.KEK:
            raise DecryptionFailed()
        try:
            key = self.root(envelope.key_ref)
        except KeyNotFound as exc:
            raise DecryptionFailed() from exc
        return self._gcm_decrypt(key, envelope, context)

    def reseal(self, blob: bytes, context: bytes) -> bytes:
        """Re-encrypt under the newest KEK; needs no user secret (KEK rotation)."""
        return self.seal(self.unseal(blob, context), context)

    def reseal_to(self, blob: bytes, context: bytes, label: str) -> bytes:
        """Re-encrypt under the KEK version ``label`` (a rotation job's target, which
        this node may not yet see as the newest)."""
        parsed = parse_label(label)
        if parsed is None or parsed[0] is not RootKind.KEK:
            raise KeyNotFound(f"not a KEK label: {label}")
        return self._gcm_encrypt(self.root(label), label, self.unseal(blob, context), context)

    @staticmethod
    def sealed_under(blob: bytes) -> str:
        return Envelope.decode(blob).key_ref

    # -- AES-GCM with a key in the token ----------------------------------------

    @staticmethod
    def _gcm_encrypt(key: Any, key_ref: str, plaintext: bytes, context: bytes) -> bytes:
        nonce = _nonce()
        header = Envelope(Algorithm.AES_256_GCM, key_ref, nonce, b"").header()
        body = key.encrypt(
            plaintext,
            mechanism=Mechanism.AES_GCM,
            mechanism_param=GCMParams(nonce, header + context, GCM_TAG_BITS),
        )
        return header + bytes(body)

    @staticmethod
    def _gcm_decrypt(key: Any, envelope: Envelope, context: bytes) -> bytes:
        if len(envelope.params) != GCM_NONCE_BYTES or len(envelope.body) < GCM_TAG_BITS // 8:
            raise DecryptionFailed()
        try:
            return bytes(
                key.decrypt(
                    envelope.body,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(envelope.params, envelope.header() + context, GCM_TAG_BITS),
                )
            )
        except OPEN_FAILURES as exc:
            raise DecryptionFailed() from exc

    @observed("encrypt_field")
    def encrypt_field(self, data_key: Any, plaintext: bytes, context: bytes) -> bytes:
        return self._gcm_encrypt(data_key, "data", plaintext, context)

    @observed("decrypt_field")
    def decrypt_field(self, data_key: Any, blob: bytes, context: bytes) -> bytes:
        envelope = Envelope.decode(blob)
        if envelope.algorithm is not Algorithm.AES_256_GCM:
            raise DecryptionFailed()
        return self._gcm_decrypt(data_key, envelope, context)

    # -- user key pairs (hsm/private_keys.py) -------------------------------------

    @observed("generate_keypair")
    def generate_user_keypair(self, bits: int, inner_key: bytes, context: bytes) -> tuple[bytes, bytes]:
        from hsm import private_keys

        return private_keys.generate(self, bits, inner_key, context)

    @observed("rewrap_private_key")
    def rewrap_private_key(
        self,
        blob: bytes,
        context: bytes,
        old_inner_key: bytes,
        new_inner_key: bytes,
        new_context: bytes,
        new_key_ref: str,
    ) -> bytes:
        from hsm import private_keys

        return private_keys.rewrap(self, blob, context, old_inner_key, new_inner_key, new_context, new_key_ref)

    @observed("open_private_key")
    def open_private_key(self, blob: bytes, context: bytes, inner_key: bytes) -> Any:
        from hsm import private_keys

        return private_keys.open_for_use(self, blob, context, inner_key)

    def private_key_inner(self, blob: bytes, context: bytes, caller_key: bytes) -> bytes:
        from hsm import private_keys

        return private_keys.inner_of(self, blob, context, caller_key)

    def private_key_from_inner(self, inner: bytes, caller_key: bytes, key_ref: str, context: bytes) -> bytes:
        from hsm import private_keys

        return private_keys.from_inner(self, inner, caller_key, key_ref, context)

    def private_key_ukw_label(self, blob: bytes, context: bytes) -> str | None:
        from hsm import private_keys

        return private_keys.ukw_label(self, blob, context)

    def private_key_format(self, blob: bytes, context: bytes) -> str:
        from hsm import private_keys

        return private_keys.blob_format(self, blob, context)

    # -- data keys (vault keys) -------------------------------------------------

    @observed("new_data_key")
    def new_data_key(self) -> Any:
        return self._temp(
            self.session.generate_key(
                KeyType.AES,
                256,
                store=False,
                capabilities=0,
                mechanism=Mechanism.AES_KEY_GEN,
                template=templates.data_key(),
            )
        )

    @observed("wrap_for_public_key")
    def wrap_for_public_key(self, data_key: Any, public_der: bytes) -> bytes:
        """Wrap a data key to a member's RSA public key with RSA-OAEP."""
        attrs = decode_rsa_public_key(public_der)
        public = self._temp(
            self.session.create_object(
                templates.imported_public_key(attrs[Attribute.MODULUS], attrs[Attribute.PUBLIC_EXPONENT])
            )
        )
        algorithm = self.oaep_algorithm()
        hash_mech, mgf = _OAEP[algorithm]
        body = public.wrap_key(data_key, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=(hash_mech, mgf, None))
        return Envelope(algorithm, MEMBER_KEY_REF, b"", bytes(body)).encode()

    @observed("unwrap_with_private_key")
    def unwrap_with_private_key(self, private_key: Any, blob: bytes, extractable: bool = False) -> Any:
        """Unwrap a data key into the token. Not extractable unless the caller must
        wrap it again (for a new member); never readable (sensitive) either way."""
        envelope = Envelope.decode(blob)
        if envelope.algorithm not in _OAEP:
            raise DecryptionFailed()
        hash_mech, mgf = _OAEP[envelope.algorithm]
        try:
            return self._temp(
                private_key.unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.AES,
                    envelope.body,
                    mechanism=Mechanism.RSA_PKCS_OAEP,
                    mechanism_param=(hash_mech, mgf, None),
                    capabilities=0,
                    template=templates.data_key(extractable),
                )
            )
        except OPEN_FAILURES as exc:
            raise DecryptionFailed() from exc

    def oaep_algorithm(self) -> Algorithm:
        """SHA-256 OAEP where the token does it, else SHA-1 (SoftHSM 2.6)."""
        return _oaep_choice(self.keystore, self.session)

    # -- introspection for tests and `coffre status` ----------------------------

    def object_attribute(self, obj: Any, attribute: Attribute) -> Any:
        return obj[attribute]


_oaep_lock = threading.Lock()
_oaep_cache: dict[str, Algorithm] = {}


def _oaep_choice(keystore: Keystore, session: Any) -> Algorithm:
    """Probe once per module whether RSA-OAEP with SHA-256 works; remember it."""
    module = keystore.config.module
    with _oaep_lock:
        if module in _oaep_cache:
            return _oaep_cache[module]
    choice = Algorithm.RSA_OAEP_SHA1
    public = private = secret = None
    try:
        public, private = session.generate_keypair(
            KeyType.RSA,
            2048,
            store=False,
            capabilities=0,
            mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN,
            public_template=templates.user_public_key(2048),
            private_template=templates.user_private_key(extractable=False),
        )
        secret = session.generate_key(
            KeyType.AES,
            256,
            store=False,
            capabilities=0,
            mechanism=Mechanism.AES_KEY_GEN,
            template=templates.data_key(),
        )
        param = (Mechanism.SHA256, MGF.SHA256, None)
        wrapped = public.wrap_key(secret, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
        private.unwrap_key(
            ObjectClass.SECRET_KEY,
            KeyType.AES,
            wrapped,
            mechanism=Mechanism.RSA_PKCS_OAEP,
            mechanism_param=param,
            capabilities=0,
            template=templates.data_key(),
        ).destroy()
        choice = Algorithm.RSA_OAEP_SHA256
    except (p11.MechanismInvalid, p11.MechanismParamInvalid, p11.FunctionNotSupported, p11.ArgumentsBad):
        # The token does not do OAEP with SHA-256 (SoftHSM 2.6 answers ArgumentsBad).
        # Any other error is not an answer to the question: raise, cache nothing.
        choice = Algorithm.RSA_OAEP_SHA1
    finally:
        for obj in (public, private, secret):
            if obj is not None:
                try:
                    obj.destroy()
                except p11.PKCS11Error:
                    pass
    with _oaep_lock:
        _oaep_cache[module] = choice
    return choice
