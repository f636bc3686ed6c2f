"""The ``coffre`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance import config as config_mod
from appliance.config import ConfigError
from appliance.errors import AppError
from hsm.errors import HsmError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_UNAVAILABLE = 4


def _appliance(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from appliance.core import Appliance

    settings = config_mod.load(args.config)
    if settings.hsm.softhsm_conf:
        os.environ["SOFTHSM2_CONF"] = settings.hsm.softhsm_conf
    return Appliance(settings)


def cmd_init(args: argparse.Namespace) -> int:
    from appliance.setup import init

    data_dir = Path(args.data_dir) if args.data_dir else None
    config_path = Path(args.config) if (args.config and not args.data_dir) else None
    settings, report = init(
        data_dir,
        config_path=config_path,
        database_url=args.database_url,
        hsm_module=args.hsm_module,
        token_label=args.token_label,
        pin_file=args.pin_file,
        pin_env=args.pin_env,
        rsa_bits=args.rsa_bits,
    )
    if report.created:
        for what in report.created:
            print(f"created: {what}")
    else:
        print("nothing to do: the data dir, database and HSM roots are already in place")
    print(f"configuration: {report.config_path}")
    print(f"use it with: export COFFRE_CONFIG={report.config_path}")
    if args.admin_email:
        from appliance.core import Appliance

        app = Appliance(settings)
        try:
            users = app.accounts.list_users(None)
            admins = [u for u in users if u.is_admin and u.status == "active"]
            if admins:
                print("an administrator has already enrolled; no new enrollment token issued")
            else:
                _, token = app.accounts.invite(args.admin_email, True)
                print(f"enrollment token for the first administrator {args.admin_email} (single use):")
                print(token)
        finally:
            app.close()
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from web.server import serve

    settings = config_mod.load(args.config)
    if args.unix_socket and (args.host or args.port):
        print("coffre: --unix-socket serves on the socket only; drop --host/--port", file=sys.stderr)
        return EXIT_USAGE
    return serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        unix_socket=args.unix_socket,
        invite_admin=args.invite_admin,
    )


def cmd_user(args: argparse.Namespace) -> int:
    app = _appliance(args)
    try:
        if args.user_cmd == "invite":
            user, token = app.accounts.invite(args.email, args.admin)
            kind = "administrator" if user.is_admin else "user"
            print(f"invited {kind} {user.email} (id {user.id}); one-time enrollment token:")
            print(token)
        elif args.user_cmd == "list":
            from cli.render import as_json, users_table

            users = [
                {"id": u.id, "email": u.email, "is_admin": u.is_admin, "status": u.status, "locked": u.locked}
                for u in app.accounts.list_users(None)
            ]
            print(as_json(users) if args.json else users_table(users))
        else:
            user_id = app.accounts.get_by_email(args.email).id
            actions: dict[str, Callable[..., object]] = {
                "unlock": app.accounts.admin_unlock,
                "disable": app.accounts.disable,
                "enable": app.accounts.enable,
            }
            if args.user_cmd == "reset-password":
                token = app.accounts.reset_password(None, user_id)
                print(f"password reset token for {args.email} (single use; the PIN is still required):")
                print(token)
            elif args.user_cmd == "delete":
                done = app.offboarding.delete_user(None, user_id, args.transfer_to)
                print(
                    f"deleted {done.email} (id {done.user_id}), for good: removed from {done.vaults} vault(s), "
                    f"{len(done.deferred)} vault key rotation(s) deferred to the next action of a vault administrator"
                    + (
                        f", {len(done.transferred)} vault(s) transferred to {args.transfer_to}"
                        if done.transferred
                        else ""
                    )
                )
            elif args.user_cmd == "rotate-key":
                app.userkeys.request_rotation(None, user_id)
                print(f"rotate-key: {args.email} gets a new key pair at their next unlock")
            else:
                actions[args.user_cmd](None, user_id)
                print(f"{args.user_cmd}: {args.email}")
        return EXIT_OK
    finally:
        app.close()


def cmd_recovery(args: argparse.Namespace) -> int:
    from cli.recovery import cmd_recovery as run

    app = _appliance(args)
    try:
        return run(args, app)
    finally:
        app.close()


def cmd_files(args: argparse.Namespace) -> int:
    from cli.files_cmd import run_files

    app = _appliance(args)
    try:
        return run_files(args, app)
    finally:
        app.close()


def cmd_status(args: argparse.Namespace) -> int:
    from appliance.status import report
    from cli.render import as_json, status_tables

    app = _appliance(args)
    try:
        result = report(app)
    finally:
        app.close()
    print(as_json(result) if args.json else status_tables(result))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from cli import audit_cmd

    app = _appliance(args)
    try:
        return audit_cmd.run(app, args)
    finally:
        app.close()


def cmd_keys(args: argparse.Namespace) -> int:
    from cli import keys_cmd

    app = _appliance(args)
    try:
        return keys_cmd.run(app, args)
    finally:
        app.close()


def cmd_vault(args: argparse.Namespace) -> int:
    app = _appliance(args)
    try:
        view = app.keyops.vault_rotation(None, args.vault_id, "cli")
    finally:
        app.close()
    if args.json:
        import json

        print(json.dumps(view.as_dict(), sort_keys=True))
    else:
        print(
            f"job {view.id}: vault {args.vault_id} key rotation {view.state}; "
            + (
                "done"
                if view.state == "done"
                else "it runs at the next action of one of the vault's administrators (only a member can open the "
                "vault key)"
            )
        )
    return EXIT_OK


def cmd_integrity(args: argparse.Namespace) -> int:
    app = _appliance(args)
    try:
        if args.integrity_cmd == "check":
            failed = app.integrity.scan()
            if not failed:
                print("every anchored row verifies (users, sessions, vaults, vault members)")
                return EXIT_OK
            for table, rows in failed.items():
                print(f"{table}: {len(rows)} rows fail their MAC: {', '.join(rows[:20])}", file=sys.stderr)
            return EXIT_FAILED
        if not args.trust_database:
            print(
                "coffre: repair re-MACs every anchored row as the database holds it now, including any row a "
                "database writer changed; restore a trusted backup instead if in doubt. "
                "Pass --trust-database to proceed.",
                file=sys.stderr,
            )
            return EXIT_USAGE
        print(f"re-anchored {app.integrity.repair_all('cli')} rows")
        return EXIT_OK
    finally:
        app.close()


def cmd_backup(args: argparse.Namespace) -> int:
    from appliance.backup import backup

    app = _appliance(args)
    try:
        manifest = backup(app, Path(args.out))
    finally:
        app.close()
    counts = ", ".join(f"{name} {meta['rows']}" for name, meta in sorted(manifest["tables"].items()) if meta["rows"])
    print(f"backup written to {args.out} (schema {manifest['schema']}; {counts})")
    print(f"it needs these root keys on the token: {', '.join(manifest['roots'])}")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from appliance.backup import restore

    app = _appliance(args)
    try:
        result = restore(app, Path(args.file))
    finally:
        app.close()
    if not result.ok:
        print(f"restored, but the audit log does not verify: {result.reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"restored {args.file}; audit log OK: {result.checked} entries, head MAC {result.head_mac}")
    print("sessions are not in backups: everyone logs in again")
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    from appliance.backup import backup_token, restore_token

    settings = config_mod.load(args.config)
    if args.token_cmd == "backup":  # noqa: S105 - a subcommand name
        count = backup_token(settings, Path(args.out))
        print(f"{count} token files written to {args.out} (the token PIN is not in it: keep it apart)")
    else:
        count = restore_token(settings, Path(args.file))
        print(f"{count} token files restored")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coffre", description="Coffre digital safe appliance")
    parser.add_argument("--config", default=None, help=f"configuration file (default: ${config_mod.CONFIG_ENV})")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "init", parents=[common], help="create a data dir, token (lab), database and HSM roots; idempotent"
    )
    p.add_argument("--data-dir", help="directory for coffre.toml, the database and the lab token")
    p.add_argument("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    p.add_argument("--hsm-module", help="PKCS#11 module path (default: SoftHSM2 lab token)")
    p.add_argument("--token-label", help="token label (default: coffre)")
    p.add_argument("--pin-file", help="file holding the token PIN (with --hsm-module)")
    p.add_argument("--pin-env", help="environment variable holding the token PIN (with --hsm-module)")
    p.add_argument("--rsa-bits", type=int, default=3072, help="user RSA key size (>= 2048)")
    p.add_argument("--admin-email", help="invite this first administrator unless one has enrolled")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", parents=[common], help="serve the API (plain HTTP; put Apache with TLS in front)")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--workers", type=int, default=1, help="worker processes (each opens its own HSM sessions)")
    p.add_argument(
        "--invite-admin",
        metavar="EMAIL",
        help="once listening, print a banner with a new enrollment token for EMAIL while no administrator has enrolled",
    )
    p.add_argument(
        "--unix-socket",
        metavar="PATH",
        default=None,
        help="serve only on this Unix socket (mode 0660), e.g. behind Apache (default: [server] unix_socket)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("user", parents=[common], help="manage users")
    usub = p.add_subparsers(dest="user_cmd", required=True)
    q = usub.add_parser("invite", parents=[common], help="invite a user; prints a one-time enrollment token last")
    q.add_argument("email")
    q.add_argument("--admin", action="store_true")
    q = usub.add_parser("list", parents=[common], help="list users (a table, or --json)")
    q.add_argument("--json", action="store_true", help="print JSON: [{id, email, is_admin, status, locked}]")
    for name, text in (
        ("unlock", "unlock after too many wrong PINs"),
        ("disable", "disable and end sessions"),
        ("enable", "enable again"),
        ("reset-password", "issue a password reset token"),
        ("rotate-key", "replace the user's key pair at their next unlock"),
    ):
        q = usub.add_parser(name, parents=[common], help=text)
        q.add_argument("email")
    q = usub.add_parser(
        "delete", parents=[common], help="delete a user for good (final: disable is the reversible way)"
    )
    q.add_argument("email")
    q.add_argument(
        "--transfer-to", metavar="EMAIL", default=None, help="who becomes administrator where the user is the last one"
    )
    p.set_defaults(func=cmd_user)

    p = sub.add_parser("status", parents=[common], help="HSM, key versions, database and counts (tables, or --json)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_status)

    from cli import audit_cmd

    audit_cmd.add_parsers(sub, common, cmd_audit)

    from cli import keys_cmd

    keys_cmd.add_parsers(sub, common, cmd_keys)
    p = sub.add_parser("vault", parents=[common], help="vaults")
    vsub = p.add_subparsers(dest="vault_cmd", required=True)
    q = vsub.add_parser("rotate", parents=[common], help="rotate a vault's key (a key job of kind vault)")
    q.add_argument("vault_id", metavar="VAULT_ID")
    q.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_vault)

    p = sub.add_parser("backup", parents=[common], help="write an authenticated backup of the database")
    p.add_argument("--out", required=True, metavar="FILE")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", parents=[common], help="restore a backup onto the configured (empty) database")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser("token", parents=[common], help="the lab SoftHSM2 token's files")
    tsub = p.add_subparsers(dest="token_cmd", required=True)
    q = tsub.add_parser("backup", parents=[common], help="copy the token files (service stopped; not the PIN)")
    q.add_argument("--out", required=True, metavar="FILE")
    q = tsub.add_parser("restore", parents=[common], help="put token files back into an empty token directory")
    q.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("integrity", parents=[common], help="row MACs anchored in the token")
    isub = p.add_subparsers(dest="integrity_cmd", required=True)
    isub.add_parser("check", parents=[common], help="list anchored rows whose MAC fails (exit 1 if any)")
    q = isub.add_parser("repair", parents=[common], help="re-MAC every anchored row as it is now (audited)")
    q.add_argument("--trust-database", action="store_true", help="required: the database is known to be untouched")
    p.set_defaults(func=cmd_integrity)

    from cli.recovery import add_parser as add_recovery

    add_recovery(sub, common).set_defaults(func=cmd_recovery)
    from cli.files_cmd import add_parsers as add_files

    add_files(sub, common, cmd_files)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)  # every file Coffre creates is private to its user
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"coffre: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HsmError as exc:
        print(f"coffre: HSM error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except AppError as exc:
        print(f"coffre: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.status == 503 else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
