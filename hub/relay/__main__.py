"""Run the relay alone: `python -m hub.relay [--drain]` (the platform service also runs one; a lease per signer, a
PostgreSQL advisory lock or a file lock on SQLite, keeps them from sending for the same key at once).

Reads the same settings as the platform (OPENLEDGER_CONFIG); exits with code 2 and one line on a wrong chain id or an
unreachable RPC.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from hub.db import make_engine, migrate
from hub.keys.store import WalletKeyStore
from hub.ledger.deploy import connect
from hub.ledger.errors import LedgerError
from hub.relay.finality import settings_finality
from hub.relay.service import RelayService
from hub.relay.signers import KeyRing, load_operator
from hub.relay.worker import RelayConfig, relay_web3
from hub.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.relay", description=__doc__)
    parser.add_argument("--drain", action="store_true", help="exit once every row with a known signer is done")
    parser.add_argument("--batch-size", type=int, default=RelayConfig.batch_size)
    parser.add_argument("--stuck-after", type=float, default=RelayConfig.stuck_after, help="seconds before a fee bump")
    parser.add_argument("--poll-interval", type=float, default=RelayConfig.poll_interval)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = load_settings()
        connect(settings.chain_rpc_url, settings.chain.chain_id)  # wrong chain id / unreachable: fail here, clearly
        engine = make_engine(settings.database_url)
        migrate(engine)
        keyring = KeyRing(engine, load_operator(settings.data_dir), WalletKeyStore.for_data_dir(settings.data_dir))
    except (SettingsError, LedgerError) as err:
        print(f"relay: {err}", file=sys.stderr)
        return 2
    config = RelayConfig(
        batch_size=args.batch_size,
        stuck_after=args.stuck_after,
        poll_interval=args.poll_interval,
        finality=settings_finality(settings, relay_web3(settings.chain_rpc_url)),
        reverify_seconds=settings.chain.reverify_seconds,
    )
    relay = RelayService(
        engine, settings.chain_rpc_url, settings.chain.chain_id, keyring, settings.data_dir / "relay", config
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: relay.stop(timeout=0))
    logging.getLogger("hub.relay").info(
        "relay for chain %s, operator %s", settings.chain.chain_id, keyring.operator.address
    )
    relay.run(drain=args.drain)
    relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
