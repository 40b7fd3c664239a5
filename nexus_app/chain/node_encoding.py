"""Solana JSON-RPC shapes for what the local chain holds: accounts in their encodings,
token amounts, transactions (`json` and `base64`), transaction errors, simulation results
and the token balances of a transaction's `meta`."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

from solders.account import Account
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import (
    FailedTransactionMetadata,
    SimulatedTransactionInfo,
    TransactionMetadata,
)

from nexus_app.chain import token

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
TOKEN_ACCOUNT_LEN = 165
MINT_DECIMALS = 44  # offset of `decimals` in an SPL mint's data


class InvalidParams(ValueError):
    """A request's parameters cannot be used: answered with -32602."""


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        if char not in B58:
            raise InvalidParams(f"invalid base58 character {char!r}")
        number = number * 58 + B58.index(char)
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(str(value))
    except ValueError:
        raise InvalidParams(f"Invalid param: {str(value)[:64]!r} is not a public key") from None


def data_field(data: bytes, encoding: str | None) -> Any:
    """Account data in the asked encoding (the default is the legacy bare base58 string)."""
    if encoding in (None, "binary"):
        return b58encode(data)
    if encoding == "base58":
        return [b58encode(data), "base58"]
    if encoding in ("base64", "jsonParsed"):
        return [base64.b64encode(data).decode(), "base64"]
    raise InvalidParams(f"unsupported encoding {encoding!r}: use base64, base58 or jsonParsed")


def account_json(account: Account, encoding: str | None,
                 decimals_of: dict[Pubkey, int] | None = None,
                 data_slice: Any = None) -> dict[str, Any]:
    """An account as `getAccountInfo` gives it; `data_slice` ({"offset", "length"}) cuts its
    binary data."""
    data = bytes(account.data)
    parsed = (parsed_token_account(data, decimals_of or {})
              if encoding == "jsonParsed" and account.owner == token.TOKEN_PROGRAM_ID else None)
    shown = data
    if data_slice is not None:
        try:
            offset, length = int(data_slice["offset"]), int(data_slice["length"])
        except (TypeError, KeyError, ValueError):
            raise InvalidParams("Invalid params: dataSlice needs an offset and a length") from None
        shown = data[max(0, offset):max(0, offset) + max(0, length)]
    return {
        "data": parsed if parsed and data_slice is None else data_field(shown, encoding),
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": account.rent_epoch,
        "space": len(data),
    }


def is_token_account(account: Account | None) -> bool:
    return (account is not None and account.owner == token.TOKEN_PROGRAM_ID
            and len(account.data) == TOKEN_ACCOUNT_LEN)


def mint_decimals(mint: Account | None) -> int:
    return bytes(mint.data)[MINT_DECIMALS] if mint is not None and len(mint.data) > 44 else 0


def ui_amount(amount: int, decimals: int) -> dict[str, Any]:
    """`uiTokenAmount` / `getTokenAccountBalance`'s value."""
    exact = Decimal(amount).scaleb(-decimals)
    text = format(exact, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return {"amount": str(amount), "decimals": decimals, "uiAmount": float(exact),
            "uiAmountString": text}


def parsed_token_account(data: bytes, decimals_of: dict[Pubkey, int]) -> dict[str, Any] | None:
    """An SPL token account as `jsonParsed` gives it (None: not one)."""
    if len(data) != TOKEN_ACCOUNT_LEN:
        return None
    mint, owner = Pubkey.from_bytes(data[:32]), Pubkey.from_bytes(data[32:64])
    state = {0: "uninitialized", 1: "initialized", 2: "frozen"}.get(data[108], "uninitialized")
    amount = token.token_account_amount(data)
    return {"program": "spl-token", "space": len(data), "parsed": {"type": "account", "info": {
        "isNative": data[109] == 1, "mint": str(mint), "owner": str(owner), "state": state,
        "tokenAmount": ui_amount(amount, decimals_of.get(mint, 0)),
    }}}


def token_balances(keys: list[Pubkey], accounts: list[Account | None],
                   decimals_of: dict[Pubkey, int]) -> list[dict[str, Any]]:
    """`preTokenBalances` / `postTokenBalances`: the token accounts among `keys`."""
    balances = []
    for index, account in enumerate(accounts):
        if not is_token_account(account):
            continue
        assert account is not None
        data = bytes(account.data)
        mint = Pubkey.from_bytes(data[:32])
        balances.append({
            "accountIndex": index, "mint": str(mint),
            "owner": str(Pubkey.from_bytes(data[32:64])), "programId": str(account.owner),
            "uiTokenAmount": ui_amount(token.token_account_amount(data), decimals_of.get(mint, 0)),
        })
    return balances


def error_json(err: Any) -> Any:
    """A solders `TransactionError` in the cluster's JSON form, e.g.
    {"InstructionError": [0, {"Custom": 1}]}."""
    if err is None:
        return None
    return json.loads(RpcSimulateTransactionResult(err=err).to_json())["err"]


def simulation_json(result: SimulatedTransactionInfo | FailedTransactionMetadata,
                    ) -> dict[str, Any]:
    """`simulateTransaction`'s value (and a refused preflight's error `data`)."""
    meta = result.meta()
    value = json.loads(RpcSimulateTransactionResult(
        err=result.err() if isinstance(result, FailedTransactionMetadata) else None,
        logs=meta.logs(),
        units_consumed=meta.compute_units_consumed(),
    ).to_json())
    value["fee"] = meta.fee()
    value["innerInstructions"] = None
    return value


def transaction_field(tx: VersionedTransaction, encoding: str) -> Any:
    """`getTransaction`'s `transaction` in the asked encoding."""
    if encoding == "base64":
        return [base64.b64encode(bytes(tx)).decode(), "base64"]
    if encoding == "base58":
        return [b58encode(bytes(tx)), "base58"]
    if encoding not in ("json", "jsonParsed"):
        raise InvalidParams(f"unsupported encoding {encoding!r}")
    message = tx.message
    header = message.header
    keys = [str(key) for key in message.account_keys]
    instructions = [{"programIdIndex": ix.program_id_index, "accounts": list(ix.accounts),
                     "data": b58encode(bytes(ix.data)), "stackHeight": None}
                    for ix in message.instructions]
    ui: dict[str, Any] = {
        "header": {"numRequiredSignatures": header.num_required_signatures,
                   "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                   "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts},
        "accountKeys": keys,
        "recentBlockhash": str(message.recent_blockhash),
        "instructions": instructions,
    }
    if encoding == "jsonParsed":  # every instruction partially decoded (no program parsers)
        signed = header.num_required_signatures
        ui = {"accountKeys": [
            {"pubkey": key, "signer": i < signed, "source": "transaction",
             "writable": i < signed - header.num_readonly_signed_accounts
             or signed <= i < len(keys) - header.num_readonly_unsigned_accounts}
            for i, key in enumerate(keys)],
            "recentBlockhash": ui["recentBlockhash"],
            "instructions": [decoded(ix, keys) for ix in instructions]}
    if isinstance(message, MessageV0):
        ui["addressTableLookups"] = [
            {"accountKey": str(lookup.account_key),
             "writableIndexes": list(lookup.writable_indexes),
             "readonlyIndexes": list(lookup.readonly_indexes)}
            for lookup in message.address_table_lookups]
    return {"signatures": [str(s) for s in tx.signatures], "message": ui}


def decoded(instruction: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """A compiled instruction of the `json` encoding, partially decoded as `jsonParsed` gives
    an instruction of a program it has no parser for."""
    return {"programId": keys[instruction["programIdIndex"]],
            "accounts": [keys[i] for i in instruction["accounts"]],
            "data": instruction["data"], "stackHeight": instruction["stackHeight"]}


def inner_instructions(executed: TransactionMetadata) -> list[dict[str, Any]]:
    """`meta.innerInstructions`: what each top-level instruction invoked."""
    return [
        {"index": index, "instructions": [
            {"programIdIndex": ix.program_id_index, "accounts": list(ix.accounts),
             "data": b58encode(bytes(ix.data)), "stackHeight": stack_height}
            for ix, stack_height in ((inner.instruction(), inner.stack_height())
                                     for inner in invoked)]}
        for index, invoked in enumerate(executed.inner_instructions()) if invoked
    ]


def memo_of(tx: VersionedTransaction) -> str | None:
    """The memos of `tx` as `getSignaturesForAddress` gives them: "[len] text; ..."."""
    keys = tx.message.account_keys
    memos = [bytes(ix.data) for ix in tx.message.instructions
             if keys[ix.program_id_index] == token.MEMO_PROGRAM_ID]
    if not memos:
        return None
    return "; ".join(f"[{len(m)}] {m.decode(errors='replace')}" for m in memos)
