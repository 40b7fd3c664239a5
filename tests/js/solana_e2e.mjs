// Compatibility check of `nexus-app chain` with the npm `@solana/web3.js` and `@solana/spl-token`
// packages: an airdrop, a new SPL mint, token accounts, a mint, a TransferChecked with a memo,
// each sent and confirmed the SDKs' own way (sendAndConfirmTransaction: a signature
// subscription on the WebSocket at the RPC port + 1), then balances and the transaction read
// back. Steps depend on the ones before them: a failure fails those after it too.
//
// Environment: NEXUS_RPC_URL (e.g. http://127.0.0.1:8899).
// Run by tests/chain/test_node_js.py against a node it serves.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  ASSOCIATED_TOKEN_PROGRAM_ID,
  createMint,
  createTransferCheckedInstruction,
  getAccount,
  getOrCreateAssociatedTokenAccount,
  mintTo,
  TOKEN_PROGRAM_ID,
} from "@solana/spl-token";
import {
  Connection,
  Keypair,
  LAMPORTS_PER_SOL,
  PublicKey,
  sendAndConfirmTransaction,
  Transaction,
  TransactionInstruction,
} from "@solana/web3.js";

import { required, runSteps, step } from "./e2e_steps.mjs";

const SCRIPT = "solana_e2e";
const MEMO_PROGRAM_ID = new PublicKey("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr");
const connection = new Connection(required(SCRIPT, "NEXUS_RPC_URL"), "confirmed");
const payer = Keypair.generate();
const receiver = Keypair.generate();
const state = {};

step("cluster", async () => {
  const version = await connection.getVersion();
  assert.equal(typeof version["solana-core"], "string");
  const epoch = await connection.getEpochInfo();
  assert.ok(epoch.absoluteSlot >= epoch.slotIndex);
  const { lastValidBlockHeight } = await connection.getLatestBlockhash();
  assert.ok(lastValidBlockHeight > (await connection.getBlockHeight()));
  return { version: version["solana-core"] };
});

step("airdrop", async () => {
  const signature = await connection.requestAirdrop(payer.publicKey, 2 * LAMPORTS_PER_SOL);
  const latest = await connection.getLatestBlockhash();
  const result = await connection.confirmTransaction({ signature, ...latest }, "confirmed");
  assert.equal(result.value.err, null);
  assert.equal(await connection.getBalance(payer.publicKey), 2 * LAMPORTS_PER_SOL);
});

step("mint and token accounts", async () => {
  state.mint = await createMint(connection, payer, payer.publicKey, null, 6);
  state.source = await getOrCreateAssociatedTokenAccount(connection, payer, state.mint,
    payer.publicKey);
  state.destination = await getOrCreateAssociatedTokenAccount(connection, payer, state.mint,
    receiver.publicKey);
  await mintTo(connection, payer, state.mint, state.source.address, payer, 50_000_000n);
  const balance = await connection.getTokenAccountBalance(state.source.address);
  assert.equal(balance.value.amount, "50000000");
  assert.equal(balance.value.uiAmountString, "50");
  return { mint: state.mint.toBase58() };
});

step("transfer", async () => {
  const tx = new Transaction().add(
    createTransferCheckedInstruction(state.source.address, state.mint,
      state.destination.address, payer.publicKey, 12_500_000n, 6),
    new TransactionInstruction({ keys: [{ pubkey: payer.publicKey, isSigner: true,
      isWritable: false }], programId: MEMO_PROGRAM_ID, data: Buffer.from("from web3.js") }),
  );
  tx.feePayer = payer.publicKey;
  tx.recentBlockhash = (await connection.getLatestBlockhash()).blockhash;
  assert.equal((await connection.getFeeForMessage(tx.compileMessage())).value, 5000);
  state.signature = await sendAndConfirmTransaction(connection, tx, [payer],
    { commitment: "confirmed" });
  return { signature: state.signature };
});

step("balances", async () => {
  const source = await getAccount(connection, state.source.address);
  assert.equal(source.amount, 37_500_000n);
  const received = await connection.getTokenAccountBalance(state.destination.address);
  assert.equal(received.value.amount, "12500000");
  const parsed = await connection.getParsedTokenAccountsByOwner(receiver.publicKey,
    { mint: state.mint });
  assert.equal(parsed.value.length, 1);
  assert.equal(parsed.value[0].account.data.parsed.info.tokenAmount.amount, "12500000");
  const owned = await connection.getTokenAccountsByOwner(payer.publicKey,
    { programId: TOKEN_PROGRAM_ID });
  assert.deepEqual(owned.value.map((a) => a.pubkey.toBase58()),
    [state.source.address.toBase58()]);
});

step("transaction", async () => {
  const found = await connection.getTransaction(state.signature,
    { commitment: "confirmed", maxSupportedTransactionVersion: 0 });
  assert.ok(found, "the confirmed transaction is not found");
  assert.equal(found.meta.err, null);
  const post = found.meta.postTokenBalances.map((b) => b.uiTokenAmount.amount).sort();
  assert.deepEqual(post, ["12500000", "37500000"]);
  const [entry] = await connection.getSignaturesForAddress(state.destination.address,
    { limit: 1 });
  assert.equal(entry.signature, state.signature);
  assert.equal(entry.memo, "[12] from web3.js");
  const statuses = await connection.getSignatureStatuses([state.signature]);
  assert.ok(["confirmed", "finalized"].includes(statuses.value[0].confirmationStatus));
});

step("parsed transaction", async () => {
  // the receiver's token account was made by the Associated Token Account program, which
  // invoked the System and Token programs: inner instructions
  const history = await connection.getSignaturesForAddress(state.destination.address);
  const creation = history[history.length - 1].signature;
  const parsed = await connection.getParsedTransaction(creation,
    { commitment: "confirmed", maxSupportedTransactionVersion: 0 });
  assert.ok(parsed, "the parsed transaction is not found");
  const [instruction] = parsed.transaction.message.instructions;
  assert.ok(instruction.programId.equals(ASSOCIATED_TOKEN_PROGRAM_ID));
  assert.ok(parsed.transaction.message.accountKeys[0].signer);
  const invoked = parsed.meta.innerInstructions.flatMap((inner) => inner.instructions);
  assert.ok(invoked.some((ix) => ix.programId.equals(TOKEN_PROGRAM_ID)), "no inner Token call");
  return { inner: invoked.length };
});

function describe(error) {
  if (error instanceof assert.AssertionError) return `AssertionError: ${error.message}`;
  return error?.stack ?? String(error);
}

function version(name) {
  const path = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(readFileSync(path, "utf8")).version;
}

await runSteps(SCRIPT, describe, {
  "@solana/web3.js": version("@solana/web3.js"),
  "@solana/spl-token": version("@solana/spl-token"),
});
