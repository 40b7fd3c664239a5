"""The whole money loop with real processes: `nexus-app --gateway` on its local chain, the
CLI's faucet, deposit, keys, balance and claim (each with --json), and a chat served by the
real SmolLM2 worker and billed from the deposit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.support.gateways import ROOT
from tests.support.processes import MODEL_ID, clean_environ, wait_for_workers

NEXUS = 1_000_000


def cli(data_dir: Path, gateway_url: str, *args: str) -> dict[str, Any]:
    """Run a nexus-app command as the user whose wallet lives in `data_dir`."""
    env = {**clean_environ(), "NEXUS_DATA_DIR": str(data_dir),
           "NEXUS_CONFIG": str(data_dir / "absent.toml"), "NEXUS_GATEWAY_URL": gateway_url}
    done = subprocess.run([sys.executable, "-m", "nexus_app", *args, "--json"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_faucet_deposit_chat_and_claim_with_the_real_worker(
    gateway_process, worker_process, tmp_path: Path,
) -> None:
    gateway = gateway_process()
    user, worker_dir = tmp_path / "user", tmp_path / "worker"

    minted = cli(user, gateway.url, "faucet", "100")
    deposit = cli(user, gateway.url, "deposit", "25")
    assert (minted["amount"], deposit["status"], deposit["balance"]) == (
        100 * NEXUS, "credited", 25 * NEXUS)
    key = cli(user, gateway.url, "keys", "create", "--name", "e2e")["key"]

    worker = worker_process(gateway.url, "worker")
    wait_for_workers(gateway.url, 1, timeout=120, process=worker)
    reply = OpenAI(base_url=gateway.url + "/v1", api_key=key).chat.completions.create(
        model=MODEL_ID, max_tokens=24, seed=1,
        messages=[{"role": "user", "content": "Name three colours."}],
    )
    assert reply.choices[0].message.content and reply.usage is not None

    ledger = asyncio.run(gateway.open_ledger())
    balance = cli(user, gateway.url, "balance")
    spent = balance["total_spent"]
    assert spent > 0 and balance["balance"] == 25 * NEXUS - spent
    assert balance["wallet"]["nexus"] == 75 * NEXUS  # on chain: the faucet's 100 less 25
    worker_wallet = json.loads((worker_dir / "wallet.json").read_text())
    assert len(worker_wallet) == 64

    claim = cli(worker_dir, gateway.url, "claim")
    earned = ledger.db.execute("SELECT earned FROM worker_accounts").fetchone()[0]
    assert claim["status"] == "paid" and claim["amount"] == earned == spent * 80 // 100
    assert cli(worker_dir, gateway.url, "balance")["wallet"]["nexus"] == earned
    audit = asyncio.run(ledger.audit())
    assert audit.ok and (audit.deposits, audit.payouts) == (25 * NEXUS, earned)
