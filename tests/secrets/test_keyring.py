"""The keyring: AES-GCM sealing bound to its row, a 0600 key file, rotation while readers go on."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from circlet.secrets.keyring import (
    KEY_FILE_NAME,
    SealedValue,
    SecretKeyError,
    drop_previous_keys,
    key_from_text,
    load_keyring,
    rotate_key_file,
)


def test_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_keyring(tmp_path)
    second = load_keyring(tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / KEY_FILE_NAME).st_mode)
    assert mode == 0o600
    assert first.current_id == second.current_id
    sealed = first.seal("hunter2", "row-1")
    assert second.open(sealed, "row-1") == "hunter2"
    assert b"hunter2" not in sealed.ciphertext


def test_sealing_is_bound_to_the_row(tmp_path: Path) -> None:
    keyring = load_keyring(tmp_path)
    sealed = keyring.seal("value", "context-env-var:a:NAME")
    with pytest.raises(SecretKeyError):
        keyring.open(sealed, "context-env-var:b:NAME")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(SecretKeyError):
        keyring.open(SealedValue(sealed.key_id, flipped), "context-env-var:a:NAME")
    assert keyring.seal("value", "x").ciphertext != keyring.seal("value", "x").ciphertext  # fresh nonces


def test_environment_key(tmp_path: Path) -> None:
    raw = base64.b64encode(b"k" * 32).decode()
    assert key_from_text(raw) == b"k" * 32
    assert len(key_from_text("a passphrase")) == 32
    keyring = load_keyring(tmp_path, secret_key=raw)
    assert not (tmp_path / KEY_FILE_NAME).exists()
    sealed = keyring.seal("v", "c")
    rotated = load_keyring(tmp_path, secret_key="new key", previous_secret_keys=raw)
    assert rotated.open(sealed, "c") == "v"
    assert rotated.seal("v", "c").key_id != sealed.key_id


def test_running_keyring_follows_a_rotation(tmp_path: Path) -> None:
    server = load_keyring(tmp_path)
    before = server.seal("old", "c")
    rotate_key_file(tmp_path)
    other_process = load_keyring(tmp_path)
    after = other_process.seal("new", "c")
    assert server.open(after, "c") == "new"  # unknown key id: reload the file
    assert server.seal("x", "c").key_id == other_process.current_id  # file changed: seal with newest
    assert other_process.open(before, "c") == "old"
    drop_previous_keys(tmp_path)
    with pytest.raises(SecretKeyError):
        load_keyring(tmp_path).open(before, "c")
