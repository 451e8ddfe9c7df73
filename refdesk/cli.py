"""The ``refdesk`` command: declarations and wiring only."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import yaml

from bridge.registration import registration
from common.logs import setup_logging
from refdesk.config import PLACEHOLDER, Config, ConfigError, load_config
from refdesk.config_file import fill_placeholder_tokens, write_atomically
from refdesk.directory_config import LocalDirectoryConfig, build_directory
from refdesk.embedded import run_embedded
from refdesk.service import ROLES, RefDesk, config_warnings
from refdesk.wiring import bridge_settings, desk_rules
from rooms.desk import Desk
from rooms.language import install
from rooms.rights import export_page
from rooms.store import DatabaseTooNew, DatabaseUnavailable, open_database

T = TypeVar("T")

log = logging.getLogger("refdesk")


async def _run_until_signal(desk: RefDesk, ready_message: str | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await desk.start()
    if ready_message:
        print(ready_message, flush=True)
    try:
        await stop.wait()
    finally:
        print("\nStopping refdesk…", flush=True)
        await desk.stop()


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.file))
        verification = config.verification
        if verification is not None and isinstance(verification.directory, LocalDirectoryConfig):
            build_directory(verification)  # reads and checks the member file
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{args.file}: OK (homeserver {config.homeserver.url}, "
        f"{len(config.desk.librarians)} librarians, {len(config.desk.topics)} topics)"
    )
    return 0


def _load(path: str) -> Config | None:
    """The config at ``path`` with logging set up from it; None (the error told) if it is bad."""
    try:
        config = load_config(Path(path))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None
    setup_logging(config.logging.level)
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    try:
        desk = RefDesk(config, role=args.role)
    except ValueError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    running = f"refdesk is running ({args.role}): {config.widget.public_url}"
    try:
        asyncio.run(_run_until_signal(desk, running))
    except (DatabaseUnavailable, DatabaseTooNew) as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_migrate_db(args: argparse.Namespace) -> int:
    from refdesk.migrate_db import MigrationRefused, migrate

    try:
        copied = asyncio.run(migrate(args.source, args.target))
    except (MigrationRefused, DatabaseUnavailable, DatabaseTooNew) as exc:
        print(f"migrate-db: {exc}", file=sys.stderr)
        return 1
    total = sum(copied.values())
    print(f"Copied {total} rows; every table counted the same on both sides:")
    for table, rows in copied.items():
        print(f"  {table:<26}{rows:>8}")
    print("Now set database.url in the config (and remove database.path), then start refdesk.")
    return 0


def cmd_generate_registration(args: argparse.Namespace) -> int:
    path = Path(args.config)
    try:
        filled = fill_placeholder_tokens(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"config error: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 2
    if filled:
        keys = " and ".join(f"appservice.{key}" for key in filled)
        print(
            f"Wrote fresh {keys} into {path} in place of {PLACEHOLDER} "
            "(nothing else in the file changed)."
        )
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.output)
    text = yaml.safe_dump(registration(bridge_settings(config)), sort_keys=False)
    try:
        write_atomically(out, text.encode("utf-8"), mode=0o600)  # it holds both tokens
    except OSError as exc:
        print(f"cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    print(
        f"Wrote {out}. Give it to the homeserver admin: add it to app_service_config_files "
        "in homeserver.yaml and restart the homeserver."
    )
    return 0


async def _on_desk(config: Config, job: Callable[[Desk], Awaitable[T]]) -> T:
    """Run ``job`` on the desk's store (the commands that work on data, not the service)."""
    install(config.desk.languages)
    db = open_database(config.database.target)
    await db.open()
    try:
        return await job(Desk(db, desk_rules(config)))
    finally:
        await db.close()


def _data_command(
    args: argparse.Namespace, job: Callable[[Desk], Awaitable[T]]
) -> tuple[Config, T] | int:
    """Load the config and run ``job`` on the store: the config and the result, or an exit
    code if either fails."""
    config = _load(args.config)
    if config is None:
        return 2
    try:
        return config, asyncio.run(_on_desk(config, job))
    except (DatabaseUnavailable, DatabaseTooNew) as exc:
        print(f"database error: {exc}", file=sys.stderr)
        return 1


ROOMS_LATER = "Their rooms are purged on the homeserver by refdesk's bridge while it runs."


def cmd_purge(args: argparse.Namespace) -> int:
    done = _data_command(
        args, lambda desk: desk.purger.preview() if args.dry_run else desk.purger.run()
    )
    if isinstance(done, int):
        return done
    config, report = done
    kept = ", ".join(
        f"{key.replace('_', ' ')} {'forever' if days is None else f'{days} days'}"
        for key, days in config.privacy.retention.items()
    )
    if args.dry_run:
        print(f"Would remove {report} (retention: {kept}). Nothing was changed.")
    else:
        print(f"Removed {report} (retention: {kept}). {ROOMS_LATER}")
    return 0


def _whose(args: argparse.Namespace) -> dict[str, str | None]:
    return {"email": args.email, "session_id": args.session}


def cmd_export_visitor(args: argparse.Namespace) -> int:
    done = _data_command(args, lambda desk: desk.rights.export(**_whose(args), by="cli"))
    if isinstance(done, int):
        return done
    document = done[1]
    out = Path(args.output)
    if out.suffix.lower() == ".json":
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    else:
        text = export_page(document)
    try:
        write_atomically(out, text.encode("utf-8"), mode=0o600)  # personal data
    except OSError as exc:
        print(f"cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 2
    count = len(document["chats"])
    print(f"Wrote {out}: {count} chat(s). It holds personal data: hand it over, then delete it.")
    return 0


def cmd_erase_visitor(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            print("erase-visitor: add --yes to erase without being asked", file=sys.stderr)
            return 2
        whom = args.email or f"session {args.session}"
        if input(f"Erase everything the desk holds about {whom}? [y/N] ").strip().lower() != "y":
            print("Nothing was erased.")
            return 1
    done = _data_command(args, lambda desk: desk.rights.erase(**_whose(args), by="cli"))
    if isinstance(done, int):
        return done
    erased = done[1]
    print(f"Erased {erased.sessions} chat(s), {erased.items} items. {ROOMS_LATER}")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    return run_embedded(
        data_dir=Path(args.data_dir),
        config_path=Path(args.config) if args.config else None,
        widget_port=args.port,
        homeserver_port=args.homeserver_port,
        appservice_port=args.appservice_port,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refdesk", description="Live-chat reference desk for libraries, on Matrix."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the desk with an embedded Synapse and demo librarians")
    up.add_argument("--data-dir", default="refdesk-data", help="where everything is kept")
    up.add_argument("--config", help="use this config instead of the generated one")
    up.add_argument("--port", type=int, help="widget server port (first run; default 8080)")
    up.add_argument("--homeserver-port", type=int, help="Synapse port (first run; default 8008)")
    up.add_argument(
        "--appservice-port", type=int, help="appservice port (first run; default 29330)"
    )
    up.set_defaults(func=cmd_up)

    serve = sub.add_parser("serve", help="run against an existing homeserver")
    serve.add_argument("--config", required=True)
    serve.add_argument(
        "--role",
        choices=ROLES,
        default="all",
        help="with PostgreSQL: widget (visitor side, any number) or bridge (exactly one)",
    )
    serve.set_defaults(func=cmd_serve)

    gen = sub.add_parser(
        "generate-registration",
        help="fill in the config's placeholder tokens, write the appservice registration",
    )
    gen.add_argument("--config", required=True)
    gen.add_argument("--output", default="registration.yaml")
    gen.set_defaults(func=cmd_generate_registration)

    move = sub.add_parser(
        "migrate-db", help="copy a desk's SQLite store into an empty PostgreSQL database"
    )
    move.add_argument("--from", dest="source", required=True, help="sqlite:PATH of the store")
    move.add_argument("--to", dest="target", required=True, help="postgresql://… (empty)")
    move.set_defaults(func=cmd_migrate_db)

    purge = sub.add_parser(
        "purge", help="remove closed chats whose retention ran out (refdesk does it daily)"
    )
    purge.add_argument("--config", required=True)
    purge.add_argument("--dry-run", action="store_true", help="only count what would go")
    purge.set_defaults(func=cmd_purge)

    for name, func, what in (
        ("export-visitor", cmd_export_visitor, "write everything held about a visitor to a file"),
        ("erase-visitor", cmd_erase_visitor, "erase everything held about a visitor"),
    ):
        command = sub.add_parser(name, help=what)
        command.add_argument("--config", required=True)
        whose = command.add_mutually_exclusive_group(required=True)
        whose.add_argument("--email", help="the visitor's email address (every chat of it)")
        whose.add_argument("--session", help="one chat's id")
        if name == "export-visitor":
            command.add_argument("--output", default="visitor-export.html", help=".html or .json")
        else:
            command.add_argument("--yes", action="store_true", help="do not ask first")
        command.set_defaults(func=func)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


__all__ = ["PLACEHOLDER", "Config", "main"]

if __name__ == "__main__":
    sys.exit(main())
