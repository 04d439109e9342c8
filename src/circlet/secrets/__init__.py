"""Encryption at rest: AES-GCM under a keyring that can be rotated while the server runs."""

from circlet.secrets.keyring import Keyring, SealedValue, load_keyring

__all__ = ["Keyring", "SealedValue", "load_keyring"]
