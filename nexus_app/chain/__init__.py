"""Solana: wallets, and (later) deposit/payout transactions on local and RPC chains."""
