"""What the pages say: the domain's English messages in the reader's language,
and the short notices shown after a redirect."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request

from appliance.errors import AppError, RateLimited
from web.ui.i18n import N_, t

# The domain's fixed messages -> what the page says.
KNOWN = {
    "invalid email or password": N_("Wrong email or password."),
    "this account is locked after too many wrong PINs; an administrator must unlock it": N_(
        "This account is locked after too many wrong PINs. Ask an administrator to unlock it."
    ),
    "too many wrong PINs: the account is now locked; an administrator must unlock it": N_(
        "Too many wrong PINs: the account is now locked. Ask an administrator to unlock it."
    ),
    "this token is invalid, expired or already used": N_("This link is invalid, has expired or was already used."),
    "wrong PIN": N_("Wrong PIN. Enter your email, password and PIN again."),
    "the two PINs differ": N_("The two PINs differ."),
    "the two passwords differ": N_("The two new passwords differ."),
    "invalid or expired login ticket": N_("The login step expired. Enter your email and password again."),
    "invalid or expired session": N_("Your session has ended. Log in again."),
    "PIN must be exactly 6 digits": N_("The PIN must be exactly 6 digits."),
    "choose another PIN: the PIN is one digit repeated": N_("Choose another PIN: this one is one digit repeated."),
    "choose another PIN: the PIN is a run of consecutive digits": N_(
        "Choose another PIN: this one is a run of consecutive digits."
    ),
    "choose another PIN: the PIN repeats its first digits": N_(
        "Choose another PIN: this one repeats its first digits."
    ),
    "choose another PIN: the PIN is among the most common PINs people choose": N_(
        "Choose another PIN: this one is among the most common PINs people choose."
    ),
    "not a valid e-mail address": N_("This is not a valid email address."),
    "password must be at most 1024 characters long": N_("The password must be at most 1024 characters long."),
    "name must be 1 to 200 characters": N_("The name must be 1 to 200 characters long."),
    "role must be one of: admin, write, read": N_("The role must be admin, write or read."),
    "title is required": N_("The title is required."),
    "title must not be empty": N_("The title is required."),
    "a user with this e-mail address already exists": N_("A user with this email address already exists."),
    "administrators cannot disable their own account": N_("Administrators cannot disable their own account."),
    "administrators cannot delete their own account": N_("Administrators cannot delete their own account."),
    "only enrolled, enabled users can have their password reset": N_(
        "Only enrolled, enabled users can have their password reset."
    ),
    "the last administrator of a vault cannot be demoted": N_(
        "The last administrator of a vault cannot be given a lower role: make someone else an administrator first."
    ),
    "the last administrator of a vault cannot be removed": N_(
        "The last administrator of a vault cannot be removed: make someone else an administrator first."
    ),
    "the vault key changed meanwhile; retry": N_("The vault key changed meanwhile. Try again."),
    "the change conflicts with another one; retry": N_("The change conflicts with another one. Try again."),
    "this user is already a member of the vault": N_("This user is already a member of the vault."),
    "no enrolled, active user with this e-mail address": N_("No enrolled, active user has this email address."),
    "no user with this e-mail address": N_("No user has this email address."),
    "administrators only": N_("This page is for administrators only."),
    "the current password is wrong": N_("The current password is wrong."),
    "recovery is not enabled": N_("Recovery is not enabled on this appliance."),
    "this user is a recovery officer: run coffre recovery rotate without them first": N_(
        "This user is a recovery officer: replace them first (coffre recovery rotate), then delete the account."
    ),
    "your share was already picked up": N_("Your share was already picked up: it is shown once."),
    "only recovery officers have a share": N_("Only security officers have a recovery share."),
    "only recovery officers submit shares": N_("Only security officers approve recoveries."),
    "the administrator who opened a request, or its subject, cannot approve it": N_(
        "The administrator who opened a recovery, or the person being recovered, cannot approve it."
    ),
    "this is not a valid recovery share": N_("This is not a valid recovery share. Check the words."),
    "this share does not open this deployment's recovery key": N_("This share does not belong to this appliance."),
    "you already submitted a share for this request": N_("You already approved this recovery."),
    "this share was already submitted": N_("This share was already submitted."),
    "this user's private key is not escrowed yet (it is at their next unlock)": N_(
        "This user's key is not escrowed yet: it is at their next login. It cannot be recovered before."
    ),
    "no recovery request is open for this account": N_(
        "No recovery is open for this account: leave the PIN fields empty to reset the password only."
    ),
    "no such item": N_("This item does not exist, or you no longer have access to it."),
    "no such vault": N_("This vault does not exist, or you no longer have access to it."),
    "no such member": N_("This member does not exist."),
    "no such session": N_("This session does not exist."),
    "no such user": N_("This user does not exist."),
    "the server is overloaded; try again shortly": N_("The server is busy. Try again in a moment."),
    "the database is unavailable; try again shortly": N_("The database is unavailable. Try again in a moment."),
    "stale version: the item changed meanwhile": N_(
        "This item was changed by someone else since you opened it. Your changes are kept below: "
        "review them and save again."
    ),
    "too many login attempts from this address; try again later": N_("Too many login attempts from this address."),
    "too many failed login attempts for this account; try again later": N_(
        "Too many failed login attempts for this account."
    ),
    "too many failed password attempts for this account; try again later": N_(
        "Too many failed password attempts for this account."
    ),
    "length must be between 8 and 128": N_("The length must be between 8 and 128."),
    "choose at least one character class": N_("Choose at least one character class."),
    "a passphrase has between 4 and 12 words": N_("A passphrase has between 4 and 12 words."),
    "the form expired or came from another site; reload the page and try again": N_(
        "The form expired or came from another site. Reload the page and try again."
    ),
    "cross-site request refused": N_("This request came from another site and was refused."),
    "no such send": N_("This link is invalid, has expired, was already used or was revoked."),
    "no such received password": N_("This password is no longer waiting for you."),
    "the code is wrong": N_("The code is wrong. After 5 wrong codes the password is destroyed."),
    "give either item_id or secret": N_("Type the secret to send."),
    "secret must be a non-empty string": N_("Type the secret to send."),
    'mode must be "user", "code" or "link"': N_("Choose how to send it."),
    "a send to a user needs recipient_email": N_("Give the recipient's email address."),
    "a send to a user is received once: max_views must be 1": N_(
        "A password sent to a user is received once: leave the number of views at 1."
    ),
    "too many sends; wait a few minutes": N_("You sent many passwords in a short time."),
    "this user cannot receive sends": N_("This user cannot receive passwords (the account is disabled)."),
    "expires_in_hours must be a whole number": N_("Expiry and views are whole numbers."),
    "this send is no longer pending": N_("This password was already opened, expired or revoked."),
    "only an empty folder can be deleted (move or delete what is in it first)": N_(
        "Only an empty folder can be deleted. Move or delete what is in it first."
    ),
    "this needs full access to the folder": N_("This needs full access to the folder."),
    "this needs full access where the folder goes": N_("This needs full access where the folder goes."),
    "this needs full access where the item goes": N_("This needs full access to the chosen folder."),
    "this needs full access where the item is": N_("This needs full access to the item's folder."),
    "only vault administrators manage folder access": N_("Only vault administrators manage folder access."),
    "vault administrators always have full access": N_("Vault administrators always have full access."),
    "folders nest at most 8 levels deep": N_("Folders nest at most 8 levels deep."),
    "a folder cannot move into itself or one of its subfolders": N_(
        "A folder cannot move into itself or one of its subfolders."
    ),
    "totp must be an otpauth://totp/ URI or a base32 secret": N_(
        "The TOTP secret must be an otpauth://totp/ link or a base32 secret."
    ),
    "no such folder": N_("This folder does not exist or you cannot see it."),
    "no such version": N_("This version is not kept."),
    "the key changed meanwhile; retry": N_("The keys changed meanwhile. Try again."),
    "the folder key changed meanwhile; retry": N_("The keys changed meanwhile. Try again."),
    "this needs a vault administrator who holds the folder's key": N_(
        "This needs a vault administrator who holds the folder's key."
    ),
    "this item has no TOTP secret": N_("This item has no TOTP secret."),
}

# The domain's messages that carry a value.
PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"^stale version: the item is at version (?P<n>\d+)$"),
        KNOWN["stale version: the item changed meanwhile"],
    ),
    (
        re.compile(r"^password must be at least (?P<n>\d+) characters long$"),
        N_("The password must be at least %(n)s characters long."),
    ),
    (re.compile(r"^password is too weak: (?P<reason>.*)$"), N_("The password is too weak: %(reason)s")),
    (re.compile(r"^this needs the (?P<role>\w+) role on the vault$"), N_("This needs the %(role)s role on the vault.")),
    (
        re.compile(r"^(?P<what>\w+) is longer than (?P<n>\d+) characters$"),
        N_("A field is longer than %(n)s characters."),
    ),
    (
        re.compile(r"^(?P<n>\d+) wrong PINs since the last successful unlock"),
        N_(
            "%(n)s wrong PINs since the last successful unlock: the account stays locked and needs recovery "
            "(re-enrollment)."
        ),
    ),
    (
        re.compile(r"^waiting for the officers: (?P<n>\d+) of (?P<m>\d+) shares are in$"),
        N_("Waiting for the security officers: %(n)s of %(m)s approvals so far. Try again later."),
    ),
    (
        re.compile(r"^expires_in_hours must be between (?P<low>\d+) and (?P<high>\d+)$"),
        N_("The expiry must be between %(low)s and %(high)s hours."),
    ),
    (
        re.compile(r"^max_views must be between (?P<low>\d+) and (?P<high>\d+)$"),
        N_("The number of views must be between %(low)s and %(high)s."),
    ),
    (
        re.compile(r"^this send is no longer pending"),
        N_("This password was already opened, expired or revoked."),
    ),
    (
        re.compile(r"^(?P<email>\S+) is not a user; ask an administrator to invite them"),
        N_("%(email)s is not a user. Ask an administrator to invite them, or send by code or link."),
    ),
    (re.compile(r"^(?P<what>\w+) must be a date \(YYYY-MM-DD\)$"), N_("Dates are written YYYY-MM-DD.")),
    (
        re.compile(r"^the user is the last administrator of a vault; name someone to transfer it to"),
        N_("They are the last administrator of a vault: name someone to transfer their vaults to."),
    ),
    (
        re.compile(r"^the transfer target must already be a member"),
        N_(
            "The person you named must already be a member of each vault they administer alone "
            "(or you must be a member of it)."
        ),
    ),
]

GENERIC = {
    400: N_("The request could not be understood."),
    401: N_("Log in to continue."),
    403: N_("You are not allowed to do this."),
    404: N_("This page does not exist, or you no longer have access to it."),
    409: N_("This conflicts with another change. Reload and try again."),
    413: N_("What you sent is too large."),
    422: N_("Some values are not valid."),
    423: N_("This account is locked. Ask an administrator to unlock it."),
    429: N_("Too many attempts."),
    500: N_("Something went wrong on the server. The event was logged."),
    503: N_("The HSM or the database is unavailable. Try again in a moment."),
}

# Notices after a redirect (the cookie carries the key, never free text).
FLASH = {
    "vault_created": N_("Vault created."),
    "vault_renamed": N_("Vault renamed."),
    "vault_key_rotated": N_("Vault key rotated: every item is now encrypted under a new key."),
    "vault_deleted": N_("Vault deleted."),
    "item_created": N_("Item saved."),
    "item_updated": N_("Item saved."),
    "item_deleted": N_("Item deleted."),
    "folder_created": N_("Folder created."),
    "folder_saved": N_("Folder saved."),
    "folder_deleted": N_("Folder deleted."),
    "folder_refused": N_("The folder could not be created here."),
    "folder_not_found": N_("This folder does not exist or you cannot see it."),
    "folder_access_saved": N_("Access saved. Keys were rotated where someone lost access."),
    "item_restored": N_("Version restored as the current one."),
    "member_added": N_("Member added."),
    "member_changed": N_("Role changed."),
    "member_removed": N_("Member removed; the vault key was rotated."),
    "enrolled": N_("Your account is ready. Log in with your password and PIN."),
    "password_changed": N_("Password changed. Use the new one at your next login."),
    "password_reset": N_("Your new password is set. Log in with it and your PIN."),
    "logged_out": N_("You are logged out."),
    "session_ended": N_("Your session has ended. Log in again."),
    "session_revoked": N_("Session revoked."),
    "pin_changed": N_("PIN changed. Your other sessions were closed."),
    "pin_weak": N_("Your PIN is easy to guess. Choose a new one below."),
    "user_unlock": N_("User unlocked."),
    "user_disable": N_("User disabled; their sessions were closed."),
    "user_enable": N_("User enabled."),
    "user_delete": N_("User deleted for good."),
    "share_submitted": N_("Your share was recorded for this recovery."),
    "recovered": N_("Your account is recovered. Log in with your new password and new PIN."),
    "locked": N_("The page was locked after a period of inactivity. Log in again."),
    "send_revoked": N_("Send revoked; its copy was destroyed."),
    "received_saved": N_("Saved into the vault; the received copy was destroyed."),
    "received_discarded": N_("Discarded; the received copy was destroyed."),
    "file_deleted": N_("File deleted, with its versions and their content."),
    "transfer_created": N_("Transfer created. Add its files, then send it."),
    "transfer_file_added": N_("File added to the transfer."),
    "transfer_revoked": N_("Transfer revoked: its keys and files are destroyed."),
    "deposit_closed": N_("Deposit link closed."),
}


def explain(request: Request[Any, Any, Any], exc: AppError) -> str:
    """The error in the reader's language (the domain's own words when unknown)."""
    known = KNOWN.get(exc.message)
    if known is not None:
        text = t(request, known)
    else:
        for pattern, message in PATTERNS:
            match = pattern.match(exc.message)
            if match:
                text = t(request, message, **match.groupdict())
                break
        else:
            text = t(request, GENERIC.get(exc.status, GENERIC[500]))
    if isinstance(exc, RateLimited):
        text += " " + t(request, "Try again in %(seconds)s seconds.", seconds=exc.retry_after)
    return text


def flash_text(request: Request[Any, Any, Any], key: str | None) -> str | None:
    message = FLASH.get(key or "")
    return t(request, message) if message else None
