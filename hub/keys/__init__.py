"""Custodial keys: one Ethereum key per hub user, made on first use and stored encrypted (Fernet) with a key from
`<data_dir>/secrets/wallet.key`; linking an external payout address by EIP-712 signature; the dev-chain faucet."""
