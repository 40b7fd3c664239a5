"""The one entry point: parses flags, picks the face (gateway, worker, TUI, a management
command) and imports it lazily, so the headless faces never load the TUI.

Each command sets its `handler` (`set_defaults`); `nexus-app gateway` and `nexus-app worker`
are also spelled `--gateway` and `--worker` (no command), as units and scripts have them."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nexus_app import __version__
from nexus_app.config_sources import ConfigError, Sources
from nexus_app.file_modes import InsecureFile

if TYPE_CHECKING:  # pydantic loads when a face or command builds its settings
    from nexus_app.config import Settings

EXIT_USAGE = 2
EXIT_FAILED = 1


Handler = Callable[[argparse.ArgumentParser, argparse.Namespace], int]
UNSET: Any = argparse.SUPPRESS  # a command's option not given keeps the value given before it


class CommandError(Exception):
    """A management command failed for a reason the user can act on."""


def _common(parser: Any, default: Any = None) -> None:
    parser.add_argument("--data-dir", type=Path, default=default,
                        help="data directory (env NEXUS_DATA_DIR)")
    parser.add_argument("--config", type=Path, default=default,
                        help="TOML config file (env NEXUS_CONFIG)")


def _gateway_options(group: Any, default: Any = None) -> None:
    """The gateway's options: before any command (for `--gateway`) and on `gateway`."""
    group.add_argument("--host", default=default, help="listen address (default 127.0.0.1)")
    group.add_argument("--port", type=int, default=default, help="listen port (default 8080)")
    group.add_argument("--chain", choices=["local", "rpc"], default=default,
                       help="Solana backend (default local)")
    group.add_argument("--rpc-url", default=default, help="Solana RPC URL for --chain rpc")


def _worker_options(group: Any, default: Any = None) -> None:
    """The worker's options: before any command (for `--worker`) and on `worker`."""
    group.add_argument("--model", action="append", metavar="PATH_OR_ID", default=default,
                       help="GGUF file or model id to serve (repeatable)")
    group.add_argument("--wallet", type=Path, default=default, help="payout wallet keypair file")
    group.add_argument("--slots", type=int, default=default,
                       help="jobs decoded together per model (default 4)")
    group.add_argument("--threads", type=int, default=default,
                       help="CPU threads for decoding (default: all)")


def _client_options(parser: argparse.ArgumentParser) -> None:
    """A command's options. They may also come before the command (`nexus-app --gateway URL
    faucet 100`): with no default here, an option not given after the command keeps the
    value given before it instead of being reset."""
    _common(parser, UNSET)
    parser.add_argument("--gateway", dest="gateway_url", metavar="URL", default=UNSET,
                        help="gateway URL (env NEXUS_GATEWAY_URL)")
    parser.add_argument("--wallet", type=Path, default=UNSET,
                        help="Solana keypair file (env NEXUS_WALLET)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nexus-app",
        description="NEXUS: chat client (TUI), GPU worker and OpenAI-compatible gateway.",
        epilog="Every setting can also be given as NEXUS_<NAME> in the environment or in the "
        "TOML config file.",
    )
    parser.add_argument("--version", action="version", version=f"nexus-app {__version__}")
    parser.set_defaults(handler=_no_command)
    _common(parser)
    mode = parser.add_argument_group("faces (default: the terminal app)")
    mode.add_argument("--gateway", nargs="?", const="", metavar="URL",
                      help="run the headless gateway (the gateway command); with --worker, "
                      "the gateway URL to join")
    mode.add_argument("--worker", action="store_true",
                      help="run a headless worker node (the worker command)")
    _gateway_options(parser.add_argument_group("gateway options"))
    _worker_options(parser.add_argument_group("worker options"))

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _face_commands(commands)
    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    keys.set_defaults(handler=_command(_account("keys")))
    key_actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = key_actions.add_parser("create", help="create a key (its secret is shown once)")
    _client_options(create)
    create.add_argument("--name", default="default", help="a name to recognise the key")
    _client_options(key_actions.add_parser("list", help="list keys (prefixes only)"))
    revoke = key_actions.add_parser("revoke", help="revoke a key")
    _client_options(revoke)
    revoke.add_argument("key_id", help="the key's id (from 'keys list')")

    deposit = commands.add_parser("deposit", help="deposit $NEXUS into credit")
    _client_options(deposit)
    deposit.add_argument("amount", help="amount in NEXUS, e.g. 25 or 0.5")
    balance = commands.add_parser("balance", help="show the credit balance")
    _client_options(balance)
    claim = commands.add_parser("claim", help="claim worker earnings to the wallet")
    _client_options(claim)
    faucet = commands.add_parser("faucet", help="mint test $NEXUS (local chain only)")
    _client_options(faucet)
    faucet.add_argument("amount", help="amount in NEXUS")
    for command, name in ((deposit, "deposit"), (balance, "balance"), (claim, "claim"),
                          (faucet, "faucet")):
        command.set_defaults(handler=_command(_account(name)))

    _admin_commands(commands)
    _chain_command(commands)
    return parser


def _admin_commands(commands: Any) -> None:
    """`admin grant|audit|fund-promo|promo-credit|migrate-ledger` on the `commands`
    subparsers."""
    admin = commands.add_parser("admin", help="operator commands on the gateway's ledger")
    admin.set_defaults(handler=_command(_admin))
    actions = admin.add_subparsers(dest="action", metavar="ACTION", required=True)
    grant = actions.add_parser(
        "grant", help="grant credit to an account (its own ledger entry; backed only by fees)")
    _client_options(grant)
    grant.add_argument("account", help="the account's wallet address")
    grant.add_argument("amount", help="amount in NEXUS, e.g. 25 or 0.5")
    grant.add_argument("--memo", default="admin grant", help="reason recorded in the ledger")
    audit = actions.add_parser(
        "audit", help="check the ledger invariant (deposits + grants + pool funding = balances "
        "+ reserved + pool + worker earnings + treasury fees) and solvency (the treasury's "
        "on-chain balance covers everything owed); exits 1 when either fails")
    _client_options(audit)
    audit.add_argument("--ledger-only", action="store_true",
                       help="check the ledger invariant only, without the chain")
    fund = actions.add_parser(
        "fund-promo", help="transfer $NEXUS into the treasury for the promotional pool that "
        "backs free credit, and credit it (local chain: minted first; the gateway stopped)")
    _client_options(fund)
    fund.add_argument("amount", help="amount in NEXUS, e.g. 100")
    fund.add_argument("--from", dest="source", type=Path, metavar="KEYPAIR",
                      help="keypair file holding the $NEXUS and SOL for the fee (needed on "
                      "the rpc chain)")
    credit = actions.add_parser(
        "promo-credit", help="credit the pool with a funding transfer already on chain "
        "(once per signature)")
    _client_options(credit)
    credit.add_argument("signature", help="the transfer's transaction signature")
    move = actions.add_parser(
        "migrate-ledger", help="copy the data dir's SQLite ledger into an empty PostgreSQL "
        "database (the gateway stopped); committed only when both audit the same")
    _client_options(move)
    move.add_argument("--to", required=True, metavar="URL",
                      help="the PostgreSQL database, postgresql://user:password@host:port/db")


def _face_commands(commands: Any) -> None:
    """`gateway` and `worker`: the headless faces as commands, with their options."""
    gateway = commands.add_parser(
        "gateway", help="run the headless gateway (also: nexus-app --gateway)",
        description="Run the headless gateway: the HTTP API, the ledger and worker dispatch.")
    _common(gateway, UNSET)
    _gateway_options(gateway, UNSET)
    gateway.set_defaults(handler=_gateway_face)
    worker = commands.add_parser(
        "worker", help="run a headless worker node (also: nexus-app --worker)",
        description="Run a headless worker node serving GGUF models to a gateway.")
    _common(worker, UNSET)
    worker.add_argument("--gateway", metavar="URL", default=UNSET,
                        help="the gateway URL to join (env NEXUS_GATEWAY_URL)")
    _worker_options(worker, UNSET)
    worker.set_defaults(handler=_worker_face)


def _chain_command(commands: Any) -> None:
    """`chain`: the local chain served over Solana's JSON-RPC."""
    chain = commands.add_parser(
        "chain", help="serve the local chain over Solana's JSON-RPC (for --chain rpc)",
        description="Serve the local LiteSVM chain of the data dir (real SPL Token, Associated "
        "Token Account and Memo programs) over Solana's JSON-RPC 2.0 on HTTP, with an airdrop "
        "faucet. The gateway's own local chain cannot be open at the same time.")
    chain.add_argument("--data-dir", type=Path, default=UNSET,
                       help="data directory (env NEXUS_DATA_DIR)")
    chain.add_argument("--host", dest="chain_host", default="127.0.0.1",
                       help="listen address (default 127.0.0.1)")
    chain.add_argument("--port", dest="chain_port", type=int, default=8899,
                       help="listen port (default 8899)")
    chain.add_argument("--block-time", type=float, default=0.4, metavar="SECONDS",
                       help="seconds per slot (default 0.4, as a cluster)")
    chain.add_argument("--fault-control", action="store_true",
                       help="for tests: answer POST /faults (latency, JSON-RPC errors, dropped "
                       "answers, withheld statuses) and POST /advance (blocks)")
    chain.set_defaults(handler=_chain_node)


def _chain_node(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from nexus_app.chain.local import ChainInUse
    from nexus_app.chain.node_server import serve
    from nexus_app.chain.treasury import Treasury
    from nexus_app.chain.wallet import load_or_create_keypair
    from nexus_app.config import load_settings
    from nexus_app.file_modes import require_private

    settings = load_settings({"data_dir": getattr(args, "data_dir", None)})
    require_private(settings.treasury_path, "treasury keypair")
    treasury = load_or_create_keypair(settings.treasury_path)
    print(f"nexus-app chain: JSON-RPC on http://{args.chain_host}:{args.chain_port} "
          f"(data {settings.data_dir})", file=sys.stderr, flush=True)

    def announce(made: Treasury) -> None:
        print(f"nexus-app chain: $NEXUS mint {made.mint}, its authority the treasury keypair "
              f"{settings.treasury_path} (a gateway on --chain rpc takes both)",
              file=sys.stderr, flush=True)

    try:
        asyncio.run(serve(settings.data_dir, args.chain_host, args.chain_port, args.block_time,
                          treasury, settings.token_decimals, announce, args.fault_control))
    except ChainInUse as exc:
        raise CommandError(str(exc)) from None
    return 0


FACE_OPTIONS = {"worker": "--worker", "host": "--host", "port": "--port", "chain": "--chain",
                "rpc_url": "--rpc-url", "model": "--model", "slots": "--slots",
                "threads": "--threads"}


def command_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Settings:
    """The settings of a management command. Its options mean the same before or after the
    command (given in both places, the one after wins, as for any repeated option); an option
    of the gateway or worker face is refused, since a command does not use it."""
    for name, flag in FACE_OPTIONS.items():
        if getattr(args, name) not in (None, False):
            parser.error(f"{flag} is an option of the gateway or worker, not of the "
                         f"'{args.command}' command")
    if args.gateway is not None:  # --gateway given before the command
        if not args.gateway:
            parser.error(f"--gateway needs a URL: nexus-app --gateway URL {args.command} …")
        if getattr(args, "gateway_url", None) is None:
            args.gateway_url = args.gateway
    return _settings(args)


def _sources(args: argparse.Namespace) -> Sources:
    """The command line's settings, over the environment's."""
    names = ("data_dir", "config", "host", "port", "chain", "rpc_url", "wallet", "gateway_url",
             "models", "slots", "threads")
    return Sources({name: getattr(args, name, None) for name in names}, os.environ)


def _settings(args: argparse.Namespace) -> Settings:
    from nexus_app.config import settings_from

    return settings_from(_sources(args))


def _account(name: str) -> Callable[[argparse.Namespace, Settings], Awaitable[None] | None]:
    """The account command `name` of client/commands.py, loaded when it runs."""
    def run(args: argparse.Namespace, settings: Settings) -> Awaitable[None] | None:
        from nexus_app.client import commands

        command: Callable[[argparse.Namespace, Settings], Awaitable[None] | None] = getattr(
            commands, name)
        return command(args, settings)

    return run


def _admin(args: argparse.Namespace, settings: Settings) -> None:
    from nexus_app.admin import AdminError, describe, run_admin
    from nexus_app.client.commands import emit

    try:
        result = run_admin(args, settings)
    except AdminError as exc:
        raise CommandError(str(exc)) from None
    emit(args, result, describe(args.action, result, settings.token_decimals))
    if args.action == "audit" and not result["ok"]:
        if not result["ledger_ok"]:
            raise CommandError("the ledger invariant does not hold")
        raise CommandError(f"insolvent: the treasury token account holds "
                           f"{-result['surplus']} base units less than the ledger owes")


def _command(run: Callable[[argparse.Namespace, Settings], Awaitable[None] | None]) -> Handler:
    """The handler of a management command: its settings, then `run` (awaited if async)."""
    def handle(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
        from nexus_app.client.gateway import ClientError

        settings = command_settings(parser, args)
        try:
            result = run(args, settings)
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        except ClientError as exc:
            raise CommandError(exc.message) from None
        return 0

    return handle


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv:  # the terminal app as configured: nothing to parse, so no parser built
            return _terminal_app(Sources({}, os.environ))
        parser = build_parser()
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        return handler(parser, args)
    except (ConfigError, CommandError, InsecureFile) as exc:
        print(f"nexus-app: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _no_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The terminal app, or the gateway or worker asked for as `--gateway` or `--worker`."""
    if args.worker:
        return _worker_face(parser, args)
    if args.gateway is not None:
        return _gateway_face(parser, args)
    return _terminal_app(_sources(args))


def _terminal_app(sources: Sources) -> int:
    from nexus_app.tui.app import run_tui

    return run_tui(sources)


def _worker_face(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from nexus_app.chain.wallet import WalletError
    from nexus_app.worker.gguf import GgufError
    from nexus_app.worker.llamacpp import LlamaError
    from nexus_app.worker.models import ModelNotFound, ModelSpecError
    from nexus_app.worker.run import run_worker

    args.gateway_url = args.gateway or None
    args.models = args.model
    try:
        run_worker(_settings(args))
    except (ModelNotFound, ModelSpecError, GgufError, WalletError, LlamaError) as exc:
        raise CommandError(str(exc)) from None
    return 0


def _gateway_face(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.worker:
        parser.error("--worker runs a worker: use it without the gateway command")
    if args.gateway:
        parser.error("--gateway takes a URL only with --worker; use --host and --port")
    from nexus_app.gateway.server import run_gateway

    run_gateway(_settings(args))
    return 0
