"""A second, independent client: the npm `@solana/web3.js` and `@solana/spl-token` packages
(tests/js/solana_e2e.mjs) against `nexus-app chain` as a process. They airdrop, create a mint
and token accounts, mint, send a TransferChecked with a memo and confirm each the SDKs' own
way (a signature subscription on the WebSocket port), then read balances and the transaction
back through their own response parsers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.chain_node import node_port, start_chain, stop
from tests.support.gateways import ROOT
from tests.support.node_packages import install_pinned, require_node
from tests.support.processes import clean_environ

JS_DIR = ROOT / "tests" / "js"
STEPS = ["cluster", "airdrop", "mint and token accounts", "transfer", "balances",
         "transaction", "parsed transaction"]


def test_solana_web3_js_and_spl_token_against_nexus_app_chain(tmp_path: Path) -> None:
    node = require_node()
    install_pinned(JS_DIR)
    port = node_port()
    chain = start_chain(tmp_path, port)
    try:
        env = {**clean_environ(), "NEXUS_RPC_URL": f"http://127.0.0.1:{port}"}
        run = subprocess.run([node, str(JS_DIR / "solana_e2e.mjs")], cwd=JS_DIR, env=env,
                             capture_output=True, text=True, timeout=180, check=False)
    finally:
        stop(chain)
    report = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    assert run.returncode == 0, report
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["@solana/web3.js"].startswith("1."), summary
    assert [step["name"] for step in summary["steps"]] == STEPS, summary
    assert all(step["ok"] for step in summary["steps"]), summary
