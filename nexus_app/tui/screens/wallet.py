"""Wallet: the address, SOL and $NEXUS on chain, the credit balance, a deposit form with its
progress and result, the faucet on a local chain, and the deposit history."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, DataTable, Input, Label, ProgressBar, Static

from nexus_app.client.http import ClientError
from nexus_app.tui.actions import bindings
from nexus_app.tui.screens.base import NexusScreen
from nexus_app.tui.text import when
from nexus_app.units import format_units

FAUCET_AMOUNT = "100"


class WalletScreen(NexusScreen):
    BINDINGS = bindings("wallet")

    def compose_body(self) -> ComposeResult:
        yield Static("", id="wallet-summary", classes="panel")
        with Horizontal(id="deposit-form", classes="form"):
            yield Label("Deposit")
            yield Input(placeholder="amount in NEXUS, e.g. 25", id="amount")
            yield Button("Deposit", variant="primary", id="deposit")
            yield Button(f"Faucet +{FAUCET_AMOUNT}", id="faucet")
        yield ProgressBar(total=None, show_eta=False, id="deposit-progress")
        yield Static("", id="deposit-result")
        yield Label("Deposits", classes="section")
        yield DataTable(id="deposits", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one("#deposits", DataTable)
        table.add_columns("created", "amount", "status", "signature")
        self.query_one("#deposit-progress").display = False
        super().on_mount()

    def on_online(self) -> None:
        self.refresh_wallet()

    @work(exclusive=True, group="wallet")
    async def refresh_wallet(self) -> None:
        link = self.nexus.link
        summary = self.query_one("#wallet-summary", Static)
        try:
            balance = await link.account_call(lambda c: c.balance())
            deposits = await link.account_call(lambda c: c.deposits())
        except ClientError as exc:
            summary.update(f"Wallet {link.wallet}\nunavailable: {exc.message}")
            return
        try:
            wallet = await link.account_call(lambda c: c.wallet())
            sol = format_units(wallet.sol_lamports, 9)
            chain = f"{wallet.nexus_display} NEXUS · {sol} SOL on the {wallet.chain} chain"
            self.query_one("#faucet").display = wallet.chain == "local"
        except ClientError as exc:
            chain = f"on chain: unavailable ({exc.message})"
        summary.update(f"Wallet  {link.wallet}\n"
                       f"Chain   {chain}\n"
                       f"Credit  {balance.balance_display} NEXUS "
                       f"(spent {format_units(balance.total_spent, balance.decimals)})")
        table = self.query_one("#deposits", DataTable)
        table.clear()
        for deposit in deposits:
            signature = deposit.signature or ""
            table.add_row(when(deposit.created_at), deposit.amount_display,
                          deposit.status, signature[:20] + ("…" if signature else "—"))

    @on(Input.Submitted, "#amount")
    @on(Button.Pressed, "#deposit")
    def action_deposit(self) -> None:
        amount = self.query_one("#amount", Input).value.strip()
        if not amount:
            self.notify("Enter an amount to deposit", severity="warning")
            return
        self.deposit(amount)

    @work(exclusive=True, group="deposit")
    async def deposit(self, amount: str) -> None:
        link = self.nexus.link
        progress = self.query_one("#deposit-progress")
        result = self.query_one("#deposit-result", Static)
        progress.display = True
        result.update(f"Depositing {amount} NEXUS: signing and sending…")
        try:
            keypair = link.keypair()
            done = await link.account_call(lambda c: c.deposit(keypair, amount))
        except ClientError as exc:
            result.update(f"Deposit failed: {exc.message}")
            self.report(exc, "Deposit")
        else:
            state = ("credited" if done.status == "credited"
                     else "sent; credited once the chain confirms it")
            result.update(f"Deposit of {done.amount_display} NEXUS {state}. "
                          f"Credit: {done.balance_display} NEXUS")
            self.query_one("#amount", Input).value = ""
        finally:
            progress.display = False
        self.refresh_wallet()

    @on(Button.Pressed, "#faucet")
    def action_faucet(self) -> None:
        self.faucet()

    @work(exclusive=True, group="deposit")
    async def faucet(self) -> None:
        result = self.query_one("#deposit-result", Static)
        try:
            minted = await self.nexus.link.account_call(lambda c: c.faucet(FAUCET_AMOUNT))
        except ClientError as exc:
            self.report(exc, "Faucet")
            return
        result.update(f"Faucet: {minted.amount_display} test NEXUS minted to the wallet")
        self.refresh_wallet()
