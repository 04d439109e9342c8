"""The keyring: one current key that seals, older keys that still open.

Keys come from ``CIRCLET_SECRET_KEY`` (plus ``CIRCLET_PREVIOUS_SECRET_KEYS``) or, when that is unset,
from ``$CIRCLET_HOME/secret-keys.json`` (mode 0600), generated on first start. Every sealed value
records the id of the key that sealed it, so rotation can re-seal row by row while readers go on:
a reader that meets an unknown key id reloads the key file once (``admin rotate-key`` may have
written it), and a writer reloads it when the file changed, so it seals with the newest key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE_NAME = "secret-keys.json"
NONCE_BYTES = 12


class SecretKeyError(Exception):
    """A sealed value cannot be opened: its key is gone or the ciphertext was altered."""


@dataclass(frozen=True)
class SealedValue:
    key_id: str
    ciphertext: bytes


def key_from_text(text: str) -> bytes:
    """A 32-byte AES key from operator text: base64 of 32 bytes as is, anything else through SHA-256."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raw = b""
    if len(raw) == 32:
        return raw
    return hashlib.sha256(text.encode()).digest()


def key_id_of(key: bytes) -> str:
    return hashlib.sha256(b"circlet-key-id" + key).hexdigest()[:16]


class Keyring:
    def __init__(self, current: bytes, others: list[bytes] | None = None, *, key_file: Path | None = None):
        self.key_file = key_file
        self._file_mtime = _mtime(key_file)
        self._set_keys(current, others or [])

    def _set_keys(self, current: bytes, others: list[bytes]) -> None:
        self.current_id = key_id_of(current)
        self._raw = {key_id_of(key): key for key in [*others, current]}
        self._keys = {key_id: AESGCM(key) for key_id, key in self._raw.items()}

    def derive(self, purpose: str) -> bytes:
        """A key for another use (signing page tokens), derived from the current key."""
        return hashlib.sha256(b"circlet-derive:" + purpose.encode() + self._raw[self.current_id]).digest()

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def seal(self, plaintext: str, context: str) -> SealedValue:
        """Encrypt ``plaintext``, bound to ``context`` (the row it belongs to) as associated data, so a
        ciphertext copied into another row does not open."""
        self._reload_if_file_changed()
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[self.current_id].encrypt(nonce, plaintext.encode(), context.encode())
        return SealedValue(self.current_id, nonce + sealed)

    def open(self, value: SealedValue, context: str) -> str:
        cipher = self._keys.get(value.key_id)
        if cipher is None and self._reload():
            cipher = self._keys.get(value.key_id)
        if cipher is None:
            raise SecretKeyError(f"no key with id {value.key_id} in the keyring")
        nonce, sealed = value.ciphertext[:NONCE_BYTES], value.ciphertext[NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, sealed, context.encode()).decode()
        except Exception as exc:
            raise SecretKeyError("sealed value does not open with its key") from exc

    def _reload_if_file_changed(self) -> None:
        if self.key_file is not None and _mtime(self.key_file) != self._file_mtime:
            self._reload()

    def _reload(self) -> bool:
        if self.key_file is None or not self.key_file.exists():
            return False
        current, others = read_key_file(self.key_file)
        self._file_mtime = _mtime(self.key_file)
        self._set_keys(current, others)
        return True


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except FileNotFoundError:
        return None


def read_key_file(path: Path) -> tuple[bytes, list[bytes]]:
    data = json.loads(path.read_text())
    return base64.b64decode(data["current"]), [base64.b64decode(k) for k in data.get("previous", [])]


def write_key_file(path: Path, current: bytes, previous: list[bytes]) -> None:
    """Write atomically with mode 0600: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {
        "current": base64.b64encode(current).decode(),
        "previous": [base64.b64encode(k).decode() for k in previous],
    }
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_keyring(home: Path, secret_key: str = "", previous_secret_keys: str = "") -> Keyring:
    if secret_key:
        others = [key_from_text(k.strip()) for k in previous_secret_keys.split(",") if k.strip()]
        return Keyring(key_from_text(secret_key), others)
    path = home / KEY_FILE_NAME
    if not path.exists():
        # Link a complete file into place: two processes starting at once agree on one key, and
        # neither ever reads a half-written file.
        draft = home / f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        write_key_file(draft, secrets.token_bytes(32), [])
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    current, others = read_key_file(path)
    return Keyring(current, others, key_file=path)


def rotate_key_file(home: Path) -> tuple[bytes, list[bytes]]:
    """Make a new current key; the old ones stay readable until re-sealing finishes."""
    path = home / KEY_FILE_NAME
    current, others = read_key_file(path)
    new = secrets.token_bytes(32)
    write_key_file(path, new, [*others, current])
    return new, [*others, current]


def drop_previous_keys(home: Path) -> None:
    path = home / KEY_FILE_NAME
    current, _ = read_key_file(path)
    write_key_file(path, current, [])
