"""``coffre recovery rotate``: with M officers present (their shares typed at the
console), a new recovery key pair and new shares, e.g. when an officer leaves.

The old secret is rebuilt in this process for this operation only; the old
recovery private key opens, in the token, each user's escrow key, which is wrapped
again to the new public key (the escrowed blobs themselves do not change). This
runs inline, in one transaction (there is no key-operations job machinery yet);
one RSA-OAEP unwrap and one wrap per escrowed user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import shamir_mnemonic
from sqlalchemy import select

from appliance.accounts import Accounts, normalize_email
from appliance.errors import ValidationFailed
from appliance.models import RecoveryEscrow, User
from appliance.recovery.ceremony import RecoveryStatus, config_context
from appliance.sessions import Principal
from hsm.errors import DecryptionFailed

if TYPE_CHECKING:
    from appliance.core import Appliance


def rotate(
    app: Appliance,
    shares: list[str],
    officer_emails: list[str] | None = None,
    threshold: int | None = None,
    actor: Principal | None = None,
) -> RecoveryStatus:
    if actor is not None:
        Accounts.require_admin(actor)
    recovery = app.recovery
    with app.keystore.work() as work:
        with app.db.read() as db:
            cfg = recovery.require_config(db, work)
            if officer_emails is None:
                ids = recovery.officers_of(cfg)
                emails = [u.email for u in db.execute(select(User).where(User.id.in_(ids))).scalars()]
            else:
                emails = [normalize_email(e) for e in officer_emails if e.strip()]
            wanted = threshold or cfg.threshold
            recovery.check_threshold(wanted, len(emails))
            officers = recovery.officer_rows(db, work, emails)
            escrows = list(db.execute(select(RecoveryEscrow).where(RecoveryEscrow.version == cfg.version)).scalars())
        texts = [" ".join(s.split()) for s in shares if s.strip()]
        for text in texts:
            try:
                index = shamir_mnemonic.Share.from_mnemonic(text).index
            except (shamir_mnemonic.MnemonicError, ValueError, KeyError):
                raise ValidationFailed("this is not a valid recovery share") from None
            if not recovery.share_matches(work, cfg, index, text):
                raise ValidationFailed("this share does not open this deployment's recovery key")
        try:
            secret = shamir_mnemonic.combine_mnemonics(texts)
            old_private = work.open_private_key(cfg.private_blob, config_context(cfg.version), secret)
        except (shamir_mnemonic.MnemonicError, DecryptionFailed, ValueError):
            raise ValidationFailed(f"{cfg.threshold} different valid shares are needed") from None
        del secret
        keys: dict[str, Any] = {}
        for escrow in escrows:
            try:
                keys[escrow.user_id] = work.unwrap_with_private_key(old_private, escrow.wrapped_key, extractable=True)
            except DecryptionFailed:
                continue  # dropped: re-escrowed at that user's next unlock
        return recovery.create(work, officers, wanted, cfg.version + 1, actor, escrow_keys=keys)


__all__ = ["rotate"]
