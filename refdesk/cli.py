"""The ``refdesk`` command: declarations and wiring only."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import yaml

from bridge.registration import registration
from common.logs import setup_logging
from refdesk.config import PLACEHOLDER, Config, ConfigError, load_config
from refdesk.config_file import fill_placeholder_tokens, write_atomically
from refdesk.directory_config import LocalDirectoryConfig, build_directory
from refdesk.embedded import run_embedded
from refdesk.service import ROLES, RefDesk, config_warnings
from refdesk.wiring import bridge_settings
from rooms.store import DatabaseTooNew, DatabaseUnavailable

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


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.logging.level)
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
