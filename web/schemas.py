"""Wire types. Explicit msgspec Structs, never ORM rows, so a secret column can
never reach a response by accident. Unknown fields are refused."""

from __future__ import annotations

from typing import Literal

import msgspec


class In(msgspec.Struct, forbid_unknown_fields=True):
    """Request bodies: unknown fields and NUL characters are refused (400)."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, str) and "\x00" in value:
                raise ValueError(f"{name} must not contain NUL characters")


class EnrollIn(In):
    token: str
    password: str
    pin: str


class UserRef(msgspec.Struct):
    id: str
    email: str


class LoginIn(In):
    email: str
    password: str


class LoginOut(msgspec.Struct):
    login_ticket: str


class UnlockIn(In):
    login_ticket: str
    pin: str


class UnlockOut(msgspec.Struct):
    token: str
    expires_at: str
    pin_weak: bool = False
    """True when the PIN (set before the PIN policy) is one the policy now refuses:
    the client should suggest a change (POST /api/v1/me/pin). Nothing is stored."""


class MeOut(msgspec.Struct):
    id: str
    email: str
    is_admin: bool


class SessionOut(msgspec.Struct):
    id: str
    created_at: str
    last_seen_at: str
    expires_at: str
    client_addr: str | None
    current: bool


class PasswordChangeIn(In):
    current_password: str
    new_password: str
    end_other_sessions: bool = True
    """True (the default): the account's other sessions end. The session making
    the change stays open either way."""


class PinChangeIn(In):
    current_pin: str
    new_pin: str


class PasswordResetIn(In):
    """With ``new_pin``: the end of a recovery (the private key is wrapped under the
    new PIN once M officers' shares are in; 409 until then)."""

    token: str
    new_password: str
    new_pin: str | None = None


class UserCreateIn(In):
    email: str
    is_admin: bool = False


class UserCreateOut(msgspec.Struct):
    id: str
    email: str
    is_admin: bool
    enrollment_token: str


class UserOut(msgspec.Struct):
    id: str
    email: str
    is_admin: bool
    status: str
    locked: bool


class DeletionOut(msgspec.Struct):
    """A deleted user: from how many vaults, how many vault keys rotated now and how
    many at the next action of one of their administrators, how many transferred."""

    id: str
    email: str
    vaults: int
    rotated: int
    rotation_deferred: int
    transferred: int


class ResetOut(msgspec.Struct):
    reset_token: str


class VaultIn(In):
    name: str


class VaultOut(msgspec.Struct):
    id: str
    name: str
    role: str


class KeyJobOut(msgspec.Struct):
    """A key job (appliance/keyops): ``state`` running | paused | waiting | done | failed."""

    id: str
    kind: str
    target: str
    state: str
    phase: str
    total: int
    done: int
    failed: int
    started_by: str
    started_at: float
    finished_at: float | None


Role = Literal["read", "write", "admin"]


class MemberIn(In):
    email: str
    role: Role


class MemberPatch(In):
    role: Role


class MemberOut(msgspec.Struct):
    """A member of the vault named in the URL; ``user_id`` is what PATCH and DELETE
    /vaults/{vault_id}/members/{user_id} take."""

    user_id: str
    email: str
    role: str


class ItemIn(In):
    title: str
    username: str | None = None
    password: str | None = None
    url: str | None = None
    notes: str | None = None
    totp: str | None = None
    folder_id: str | None = None


class ItemUpdateIn(In):
    """PUT: the whole item. A field left out is cleared."""

    title: str
    version: int
    username: str | None = None
    password: str | None = None
    url: str | None = None
    notes: str | None = None
    totp: str | None = None
    # Left out: the item stays where it is; null: the vault root.
    folder_id: str | None | msgspec.UnsetType = msgspec.UNSET


class ItemPatchIn(In):
    """PATCH: only the fields given change; null clears one (not the title)."""

    version: int
    title: str | msgspec.UnsetType = msgspec.UNSET
    username: str | None | msgspec.UnsetType = msgspec.UNSET
    password: str | None | msgspec.UnsetType = msgspec.UNSET
    url: str | None | msgspec.UnsetType = msgspec.UNSET
    notes: str | None | msgspec.UnsetType = msgspec.UNSET
    totp: str | None | msgspec.UnsetType = msgspec.UNSET
    folder_id: str | None | msgspec.UnsetType = msgspec.UNSET

    def changes(self) -> dict[str, str | None]:
        return {
            name: value
            for name in ("title", "username", "password", "url", "notes", "totp", "folder_id")
            if (value := getattr(self, name)) is not msgspec.UNSET
        }


class ItemOut(msgspec.Struct):
    id: str
    vault_id: str
    version: int
    title: str
    username: str | None
    password: str | None
    url: str | None
    notes: str | None
    totp: str | None
    folder_id: str | None
    created_at: str
    updated_at: str


class ItemSummaryOut(msgspec.Struct):
    id: str
    vault_id: str
    version: int
    title: str
    username: str | None
    url: str | None
    updated_at: str
    folder_id: str | None


class HealthOut(msgspec.Struct):
    status: str


class RecoveryOut(msgspec.Struct):
    enabled: bool
    threshold: int
    officers: list[str]


class ShareOut(msgspec.Struct):
    share: str


class RecoveryRequestIn(In):
    email: str


class RecoveryRequestCreated(msgspec.Struct):
    id: str
    reset_token: str


class RecoveryRequestOut(msgspec.Struct):
    id: str
    email: str
    status: str
    shares_received: int
    threshold: int
    expires_at: str


class ShareIn(In):
    share: str


class ShareAccepted(msgspec.Struct):
    shares_received: int
    threshold: int


class SendIn(In):
    """A send: a copy of an item the caller can read (item_id) or of a typed secret."""

    mode: Literal["user", "code", "link"]
    item_id: str | None = None
    secret: str | None = None
    recipient_email: str | None = None
    # Left out: the policy's default (24 h; 1 view).
    expires_in_hours: int | msgspec.UnsetType = msgspec.UNSET
    max_views: int | msgspec.UnsetType = msgspec.UNSET


class SendCreatedOut(msgspec.Struct, omit_defaults=True):
    id: str
    # whether Coffre e-mailed the recipient (only with [mail] and a recipient address).
    mailed: bool
    # code and link modes: the page to open (its token is shown only here, once).
    url: str | None = None
    # code mode: the one-time code, to pass on by another way than the link.
    code: str | None = None
    # an administrator's user send to an address with no account, and no [mail]: the
    # enrollment link to pass on (never given to a non-administrator: they get a 409).
    invitation_url: str | None = None


class SentOut(msgspec.Struct):
    id: str
    mode: str
    recipient_email: str | None
    # pending, viewed, saved, discarded, expired, revoked, destroyed (5 wrong codes)
    status: str
    created_at: str
    expires_at: str
    max_views: int
    views_used: int
    viewed_at: str | None
    viewed_from: str | None


class ReceivedOut(msgspec.Struct):
    id: str
    sender_email: str
    title: str
    username: str | None
    password: str | None
    url: str | None
    notes: str | None
    created_at: str
    expires_at: str


class SaveReceivedIn(In):
    vault_id: str
    folder_id: str | None = None


class RevealIn(In):
    code: str | None = None


class RevealOut(msgspec.Struct):
    title: str
    username: str | None
    password: str | None
    url: str | None
    notes: str | None


class FolderIn(In):
    name: str
    parent_id: str | None = None


class FolderPatch(In):
    name: str | msgspec.UnsetType = msgspec.UNSET
    parent_id: str | None | msgspec.UnsetType = msgspec.UNSET


class FolderCreated(msgspec.Struct):
    id: str
    name: str
    parent_id: str | None


class FolderOut(msgspec.Struct):
    """A folder the caller may see. ``parent_id``: the nearest ancestor they may
    see (null: the vault root); ``access``: their level there."""

    id: str
    name: str
    parent_id: str | None
    access: str
    depth: int
    item_count: int


class AccessIn(In):
    access: Literal["full", "read", "none"]


class AccessOut(msgspec.Struct):
    """``setting``: on this folder itself (null: inherited); ``effective``: what applies."""

    user_id: str
    email: str
    role: str
    setting: str | None
    effective: str


class VersionOut(msgspec.Struct):
    version: int
    changed_by: str
    changed_at: str
    current: bool


class TotpOut(msgspec.Struct):
    code: str
    seconds_left: int


class GeneratorIn(In):
    length: int = 20
    classes: list[Literal["lower", "upper", "digits", "symbols"]] = msgspec.field(
        default_factory=lambda: ["lower", "upper", "digits", "symbols"]
    )
    passphrase_words: int | None = None


class GeneratorOut(msgspec.Struct):
    password: str
