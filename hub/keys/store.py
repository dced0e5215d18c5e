"""The wallet encryption key: `<data_dir>/secrets/wallet.key` (Fernet, mode 0600), generated at first use.

Losing the file makes every custodial key unreadable (the funds stay on chain, out of reach): back it up with the
database, but never next to it in the same public place.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from hub.secrets import read_or_create_secret


class WalletKeyError(Exception):
    """The wallet key file is missing, malformed, or does not decrypt the stored keys."""


def wallet_key_file(data_dir: Path) -> Path:
    return data_dir / "secrets" / "wallet.key"


class WalletKeyStore:
    """Encrypts and decrypts custodial private keys with the data dir's wallet key."""

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = path
        self._fernet = Fernet(self._load(create))

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> WalletKeyStore:
        return cls(wallet_key_file(data_dir))

    def _load(self, create: bool) -> bytes:
        if not create and not self.path.exists():
            raise WalletKeyError(f"wallet key file {self.path} not found: custodial keys cannot be decrypted")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        read_or_create_secret(self.path, lambda: Fernet.generate_key().decode())
        key = self.path.read_bytes().strip()
        try:
            Fernet(key)
        except ValueError:
            raise WalletKeyError(f"wallet key file {self.path} does not hold a Fernet key") from None
        return key

    def encrypt(self, secret: bytes) -> str:
        return self._fernet.encrypt(secret).decode()

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise WalletKeyError(
                f"a stored custodial key does not decrypt with {self.path}: was the wallet key file replaced?"
            ) from None
