"""Tables. Secret material is stored only as ciphertext (``*_blob``/``*_ct``),
hashes or verifiers. Times are UNIX seconds (float, UTC)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # invited -> active -> disabled
    status: Mapped[str] = mapped_column(String(16), default="invited")
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_pin_count: Mapped[int] = mapped_column(Integer, default=0)
    # Wrong PINs since the last right one; an admin unlock does not reset it.
    pin_failures_since_success: Mapped[int] = mapped_column(Integer, default=0)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    password_pepper: Mapped[str | None] = mapped_column(String(64), nullable=True)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    # HMAC (bind root) over user id + public key: "label:hex".
    public_key_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    key_bits: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # RSA private key: AES-KWP under the PIN key, then AES-GCM under a KEK.
    private_key_blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pin_salt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    pin_pepper: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pin_kdf: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    enrolled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Key pair generation: 1 at enrollment, +1 at each rotation of the pair.
    key_generation: Mapped[int] = mapped_column(Integer, default=0)
    key_created_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # An administrator asked for a new key pair: made at the user's next unlock.
    key_rotation_due: Mapped[bool] = mapped_column(Boolean, default=False)
    # Row MAC (bind root) over the columns that grant or limit access, anchored in
    # the token (appliance/integrity): "label:hex", and the anchor bucket it uses.
    row_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    anchor_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class OneTimeToken(Base):
    """Enrollment and password-reset tokens; only their SHA-256 is kept."""

    __tablename__ = "one_time_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # enroll | reset
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # HMAC (bind root) over hash, purpose, user, expiry and (reset) the password it replaces.
    mac: Mapped[str | None] = mapped_column(String(128), nullable=True)


class LoginTicket(Base):
    __tablename__ = "login_tickets"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[float] = mapped_column(Float)
    # HMAC (bind root) over hash, user, expiry and the password hash it was issued for.
    mac: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Session(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    verifier: Mapped[bytes] = mapped_column(LargeBinary)
    # Private key re-wrapped under the client-held session secret, then the KEK.
    key_blob: Mapped[bytes] = mapped_column(LargeBinary)
    kek_label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    row_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    anchor_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    # HMAC (bind root) over the session id and last_seen_at (idle timeout).
    seen_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Vault(Base):
    __tablename__ = "vaults"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(32))
    row_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    anchor_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class VaultMember(Base):
    __tablename__ = "vault_members"

    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(8))  # admin | write | read
    # The vault key wrapped with this member's RSA public key (OAEP).
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    # HMAC (bind root) over vault, member, key version and wrapped key: "label:hex".
    wrapped_key_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    key_version: Mapped[int] = mapped_column(Integer)
    added_at: Mapped[float] = mapped_column(Float)
    row_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    anchor_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    key_version: Mapped[int] = mapped_column(Integer)
    title_ct: Mapped[bytes] = mapped_column(LargeBinary)
    username_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    password_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    url_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    notes_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(32))
    updated_by: Mapped[str] = mapped_column(String(32))
    # Where the item lives (None: the vault root) and whose key seals it: the
    # nearest keyed folder at or above it (None: the vault key). Both are in the
    # associated data of every field, with ``key_version`` of that key.
    folder_id: Mapped[str | None] = mapped_column(ForeignKey("folders.id"), nullable=True, index=True)
    key_folder_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    totp_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class ItemVersion(Base):
    """An earlier version of an item, its ciphertexts as they were sealed for that
    version (the associated data names item and version), re-sealed with the item
    whenever the key under it changes."""

    __tablename__ = "item_versions"

    item_id: Mapped[str] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    vault_id: Mapped[str] = mapped_column(String(32), index=True)
    folder_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_folder_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    key_version: Mapped[int] = mapped_column(Integer)
    title_ct: Mapped[bytes] = mapped_column(LargeBinary)
    username_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    password_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    url_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    notes_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    totp_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    changed_by: Mapped[str] = mapped_column(String(32))
    changed_at: Mapped[float] = mapped_column(Float)


class Folder(Base):
    """A folder of a vault. ``keyed``: it has its own AES-256 key (its readers
    differ from its parent's), at ``key_version``. Anchored (row MAC)."""

    __tablename__ = "folders"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("folders.id"), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(200))
    keyed: Mapped[bool] = mapped_column(Boolean, default=False)
    key_version: Mapped[int] = mapped_column(Integer, default=0)
    # SHA-256 of this folder's access settings (under the row MAC): a deleted setting is seen.
    settings_digest: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(32))
    row_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    anchor_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class FolderAccess(Base):
    """A vault administrator's setting for one member on one folder: full, read or
    none; inherited by subfolders that set nothing. Anchored (row MAC)."""

    __tablename__ = "folder_access"

    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), index=True)
    access: Mapped[str] = mapped_column(String(8))  # full | read | none
    set_at: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(32))
    row_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    anchor_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class FolderKey(Base):
    """A keyed folder's key wrapped with one reader's RSA public key (OAEP), bound
    by the bind MAC to vault, folder, reader and key version. Anchored (row MAC)."""

    __tablename__ = "folder_keys"

    folder_id: Mapped[str] = mapped_column(ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)
    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), index=True)
    key_version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key_mac: Mapped[str] = mapped_column(String(128))
    row_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)
    anchor_bucket: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Float)
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[str] = mapped_column(Text)
    key_label: Mapped[str] = mapped_column(String(64))
    prev_mac: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last sequence number and MAC, locked to serialize appends."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    mac: Mapped[str] = mapped_column(String(64))
    # HMAC (audit root) over seq and mac: the head cannot be rewritten to hide a cut tail.
    head_mac: Mapped[str | None] = mapped_column(String(128), nullable=True)


class AuditCursor(Base):
    """How far a consumer of the audit log (a SIEM forwarder) has read it."""

    __tablename__ = "audit_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(String(256), nullable=True)


class Deployment(Base):
    """One row: this database's random id, bound into every row MAC and naming the
    token's anchor tables, so rows cannot move between deployments sharing a token."""

    __tablename__ = "deployment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)


class AnchorLock(Base):
    """One row per anchor domain, locked while its token counters move."""

    __tablename__ = "anchor_locks"

    domain: Mapped[str] = mapped_column(String(16), primary_key=True)


class RateLimitHit(Base):
    __tablename__ = "rate_limit_hits"
    __table_args__ = (Index("ix_rate_limit_key_ts", "key", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(128))
    ts: Mapped[float] = mapped_column(Float)


class VaultRotationDue(Base):
    """A vault whose key must rotate at the next action of one of its administrators:
    a deleted user's membership was removed by someone who could not open the vault
    (appliance/offboarding.py)."""

    __tablename__ = "vault_rotations_due"

    vault_id: Mapped[str] = mapped_column(ForeignKey("vaults.id", ondelete="CASCADE"), primary_key=True)
    since: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(64))


class RecoveryConfig(Base):
    """M-of-N recovery (appliance/recovery): the recovery key pair (its private key
    wrapped under the recovery secret, then the KEK), the officers and threshold.
    ``share_prints``: a MAC per share index, to refuse a wrong share at once."""

    __tablename__ = "recovery_config"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    active: Mapped[bool] = mapped_column(Boolean)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    private_blob: Mapped[bytes] = mapped_column(LargeBinary)
    officers: Mapped[str] = mapped_column(Text)  # JSON list of user ids
    threshold: Mapped[int] = mapped_column(Integer)
    share_prints: Mapped[str] = mapped_column(Text)  # JSON {index: mac}
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(128))


class RecoveryPickup(Base):
    """An officer's share, sealed to their public key until they pick it up once."""

    __tablename__ = "recovery_pickups"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    officer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)


class RecoveryEscrow(Base):
    """A user's private key (its token-wrapped inner layer) under a per-user AES key
    that is OAEP-wrapped to the recovery public key."""

    __tablename__ = "recovery_escrows"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    key_generation: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    mac: Mapped[str] = mapped_column(String(128))


class RecoveryRequest(Base):
    """A recovery in progress: officers' shares are sealed to this request's own key
    pair, whose private key only the user's reset token opens."""

    __tablename__ = "recovery_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    requested_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # open | completed | expired | cancelled | refused
    version: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    private_blob: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class RecoveryRequestShare(Base):
    __tablename__ = "recovery_request_shares"

    request_id: Mapped[str] = mapped_column(ForeignKey("recovery_requests.id", ondelete="CASCADE"), primary_key=True)
    officer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    member_index: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)


class KeyJob(Base):
    """A key operation (a root or vault key rotation) run as a resumable job
    (appliance/keyops). ``active_kind`` is the kind while the job is unfinished and
    NULL after: its unique constraint allows one unfinished job per kind; the lease
    (holder, expiry) says which process runs it now."""

    __tablename__ = "key_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # kek | pepper | audit | bind | ukw | vault
    active_kind: Mapped[str | None] = mapped_column(String(48), nullable=True, unique=True)
    target: Mapped[str] = mapped_column(String(64))  # the new root label, or the vault id
    previous: Mapped[str | None] = mapped_column(String(256), nullable=True)  # JSON list of older labels
    started_by: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # running | paused | waiting | done | failed
    phase: Mapped[str] = mapped_column(String(16))  # pass | settle | sweep | finished
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    cursor: Mapped[str] = mapped_column(Text)  # JSON {table: last id done}
    milestone: Mapped[int] = mapped_column(Integer)  # last 10 % step audited
    switched_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    started_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_holder: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires: Mapped[float | None] = mapped_column(Float, nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class KeyJobFailure(Base):
    __tablename__ = "key_job_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("key_jobs.id", ondelete="CASCADE"), index=True)
    table_name: Mapped[str] = mapped_column(String(64))
    row_id: Mapped[str] = mapped_column(String(128))
    error: Mapped[str] = mapped_column(String(256))
    at: Mapped[float] = mapped_column(Float)
