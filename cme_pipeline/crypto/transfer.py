"""The key a transferred child's record is sealed under: one secret per transfer, in the receiving
LA's part of the key store (``la/<to>/transfer/<id>``), destroyed once the receiving LA has
acknowledged the transfer, so the record is readable only until then."""

from __future__ import annotations

from collections.abc import Sequence

from cme_pipeline.crypto.envelope import RecordCipher, ensure_secret
from cme_pipeline.crypto.keystore import KeyStore

TRANSFER_KEY = b"cme-transfer-key/1"


def transfer_key_name(to_la: str, transfer_id: str) -> str:
    """Key-store name of one transfer's secret (under the receiving LA)."""
    return f"la/{to_la}/transfer/{transfer_id}"


def transfer_cipher(keys: KeyStore, to_la: str, transfer_id: str, create: bool = False) -> RecordCipher:
    """The cipher of one transfer's record (``create``: make its secret first, when sending).

    Raises:
        KeyUnavailable: the transfer's secret is destroyed (acknowledged) or was never created.
    """
    name = transfer_key_name(to_la, transfer_id)
    if create:
        ensure_secret(keys, name)
    return RecordCipher(to_la, f"transfer/{transfer_id}", keys.derive(name, TRANSFER_KEY))


def create_transfer_keys(keys: KeyStore, transfers: Sequence[tuple[str, str]]) -> None:
    """Create the secrets of several transfers at once: ``(receiving LA, transfer id)`` each.

    Raises:
        KeyUnavailable: a transfer's secret exists already (none is created).
    """
    keys.create_secrets([transfer_key_name(to_la, transfer_id) for to_la, transfer_id in transfers])


def destroy_transfer_key(keys: KeyStore, to_la: str, transfer_id: str) -> bool:
    """Destroy one transfer's secret; True if it existed."""
    return keys.destroy(transfer_key_name(to_la, transfer_id))
