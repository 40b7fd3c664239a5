"""The command line: complete help, management commands with --json, clear errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from solders.pubkey import Pubkey

from nexus_app.chain import token
from nexus_app.cli import build_parser, command_settings
from nexus_app.units import AmountError, to_base_units
from nexus_app.worker.models import bundled_model_path
from tests.support.gateways import ROOT
from tests.support.processes import env_for


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nexus_app", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)


def test_help_lists_every_face_and_command() -> None:
    help_text = run_cli("--help").stdout
    for word in ("--gateway", "--worker", "--host", "--port", "--chain", "--rpc-url", "--model",
                 "--wallet", "--data-dir", "--config", "keys", "deposit", "balance", "claim",
                 "faucet", "admin"):
        assert word in help_text, word
    parser = build_parser()
    for command in (["keys", "create"], ["keys", "list"], ["keys", "revoke", "k"], ["balance"],
                    ["admin", "grant", "a", "1"], ["admin", "audit"]):
        args = parser.parse_args([*command, "--json", "--data-dir", "/tmp/x"])
        assert args.json


@pytest.mark.parametrize("order", ["before", "after"])
def test_command_options_mean_the_same_before_or_after_the_command(tmp_path: Path,
                                                                   order: str) -> None:
    options = ["--gateway", "http://gateway.example:9000", "--data-dir", str(tmp_path / "d"),
               "--config", str(tmp_path / "none.toml"), "--wallet", str(tmp_path / "w.json")]
    command = ["faucet", "100"]
    argv = [*options, *command] if order == "before" else [*command, *options]
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = command_settings(parser, args)
    assert settings.gateway_url == "http://gateway.example:9000"
    assert settings.data_dir == tmp_path / "d"
    assert settings.config == tmp_path / "none.toml"
    assert settings.wallet_path == tmp_path / "w.json"
    assert (args.command, args.amount) == ("faucet", "100")


def test_an_option_after_the_command_wins_over_one_before(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["--gateway", "http://before:1", "--data-dir", str(tmp_path / "a"),
                              "keys", "list", "--gateway", "http://after:2",
                              "--data-dir", str(tmp_path / "b"), "--config",
                              str(tmp_path / "none.toml")])
    settings = command_settings(parser, args)
    assert (settings.gateway_url, settings.data_dir) == ("http://after:2", tmp_path / "b")


@pytest.mark.parametrize(("argv", "words"), [
    (["--port", "9000", "balance"], "--port is an option of the gateway or worker"),
    (["--worker", "claim"], "--worker is an option of the gateway or worker"),
    (["--model", "m", "keys", "list"], "--model is an option"),
])
def test_face_options_with_a_command_are_refused(tmp_path: Path, argv: list[str],
                                                 words: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "NEXUS_DATA_DIR": str(tmp_path),
           "NEXUS_CONFIG": str(tmp_path / "none.toml")}
    result = run_cli(*argv, env=env)
    assert result.returncode == 2 and words in result.stderr, result.stderr


async def test_gateway_given_before_the_command_is_the_one_used(gw, tmp_path: Path) -> None:
    """`nexus-app --gateway URL faucet 100` talks to URL (no gateway on the default port)."""
    env = {"PATH": "/usr/bin:/bin", "NEXUS_DATA_DIR": str(tmp_path / "cli"),
           "NEXUS_CONFIG": str(tmp_path / "none.toml")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nexus_app", "--gateway", gw.url, "faucet", "100", "--json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    minted = json.loads(stdout)
    assert minted["amount"] == 100_000_000  # 6 decimals
    owner = Pubkey.from_string(minted["wallet"])
    account = token.associated_token_address(owner, gw.gateway.treasury.mint)
    assert await gw.gateway.chain.token_balance(account) == minted["amount"]


@pytest.mark.parametrize(("amount", "units"), [("25", 25_000_000), ("0.5", 500_000),
                                               ("0.000001", 1), ("1e2", 100_000_000),
                                               ("9223372036854.775807", 2**63 - 1)])
def test_amounts_convert_exactly(amount: str, units: int) -> None:
    assert to_base_units(amount, 6) == units


@pytest.mark.parametrize("amount", [
    "0.0000001", "-1", "0", "abc", "nan", "inf", "1.0000000000000000000000000001", "1e999999",
    "9e999999999999999999", "1e-999999", "10000000000000", "1" * 65])
def test_bad_amounts_are_refused(amount: str) -> None:
    with pytest.raises(AmountError):
        to_base_units(amount, 6)


def test_admin_grant_and_audit(tmp_path: Path) -> None:
    wallet = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
    env = {"PATH": "/usr/bin:/bin", "NEXUS_DATA_DIR": str(tmp_path),
           "NEXUS_CONFIG": str(tmp_path / "none.toml")}
    granted = run_cli("admin", "grant", wallet, "2.5", "--json", env=env)
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout) == {"account": wallet, "granted": 2_500_000}
    ledger = run_cli("admin", "audit", "--ledger-only", "--json", env=env)
    audit = json.loads(ledger.stdout)
    assert ledger.returncode == 0 and audit["ok"] is True
    assert audit["grants"] == 2_500_000 and audit["balances"] == 2_500_000
    # a grant is owed like any credit, and no treasury holds it: insolvent
    checked = run_cli("admin", "audit", "--json", env=env)
    audit = json.loads(checked.stdout)
    assert checked.returncode == 1 and "insolvent" in checked.stderr
    assert (audit["ledger_ok"], audit["solvent"], audit["owed"]) == (True, False, 2_500_000)
    bad = run_cli("admin", "grant", "not-a-wallet", "1", env=env)
    assert bad.returncode == 1 and "not a Solana address" in bad.stderr
    bad = run_cli("admin", "grant", wallet, "0.0000001", env=env)
    assert bad.returncode == 1 and "decimals" in bad.stderr


@pytest.mark.slow
def test_keys_and_balance_against_a_running_gateway(gateway_process, tmp_path: Path) -> None:
    gateway = gateway_process()
    env = {**env_for(gateway.settings), "NEXUS_GATEWAY_URL": gateway.url,
           "NEXUS_WALLET": str(tmp_path / "wallet.json")}
    created = run_cli("keys", "create", "--name", "cli", "--json", env=env)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("nex_live_") and key["name"] == "cli"
    assert (tmp_path / "wallet.json").stat().st_mode & 0o777 == 0o600
    listed = json.loads(run_cli("keys", "list", "--json", env=env).stdout)["data"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    revoked = json.loads(run_cli("keys", "revoke", key["id"], "--json", env=env).stdout)
    assert revoked["revoked"] is True
    balance = json.loads(run_cli("balance", "--json", env=env).stdout)
    assert balance["balance"] == 0 and balance["currency"] == "NEXUS"


def test_unreachable_gateway_is_a_clear_error(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "NEXUS_DATA_DIR": str(tmp_path),
           "NEXUS_CONFIG": str(tmp_path / "none.toml"), "NEXUS_GATEWAY_URL": "http://127.0.0.1:9"}
    result = run_cli("keys", "list", env=env)
    assert result.returncode == 1
    assert "cannot reach the gateway" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("model, message", [
    ("/nonexistent/model.gguf", "available model ids: smollm2-135m-instruct-q4_1"),
    (f"Bad Id!={bundled_model_path()}", "Bad Id"),
])
def test_worker_with_a_model_it_cannot_use_is_a_clear_error(tmp_path: Path, model: str,
                                                            message: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "NEXUS_DATA_DIR": str(tmp_path),
           "NEXUS_CONFIG": str(tmp_path / "none.toml")}
    result = run_cli("--worker", "--model", model, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("nexus-app: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_text("not a model")
    env = {"PATH": "/usr/bin:/bin", "NEXUS_DATA_DIR": str(tmp_path),
           "NEXUS_CONFIG": str(tmp_path / "none.toml")}
    result = run_cli("--worker", "--model", str(junk), env=env)
    assert result.returncode == 1
    assert "junk.gguf" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("command", "flags"), [
    (["gateway", "--port", "9000", "--chain", "local"],
     ["--gateway", "--port", "9000", "--chain", "local"]),
    (["worker", "--gateway", "http://g:1", "--model", "m", "--slots", "2"],
     ["--worker", "--gateway", "http://g:1", "--model", "m", "--slots", "2"]),
])
def test_the_gateway_and_worker_commands_mean_what_their_flags_mean(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str],
        flags: list[str]) -> None:
    """`nexus-app gateway` is `nexus-app --gateway` (units and scripts keep the flags)."""
    from nexus_app import cli

    monkeypatch.setenv("NEXUS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NEXUS_CONFIG", str(tmp_path / "none.toml"))
    started: list[tuple[str, object]] = []
    monkeypatch.setattr("nexus_app.gateway.server.run_gateway",
                        lambda settings: started.append(("gateway", settings.model_dump())))
    monkeypatch.setattr("nexus_app.worker.run.run_worker",
                        lambda settings: started.append(("worker", settings.model_dump())))
    assert cli.main(command) == 0 and cli.main(flags) == 0
    assert started[0] == started[1] and started[0][0] == command[0]
