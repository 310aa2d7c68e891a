"""Typed errors. Messages name the field and row number, never a personal value."""

from __future__ import annotations


class CmeError(Exception):
    """An expected failure: the CLI prints its message on one line and exits non-zero."""

    exit_code = 1


class ConfigError(CmeError):
    """A setting is missing or invalid."""


class UsageError(CmeError):
    """The command line or an input file is unusable."""

    exit_code = 2


class DeliveryRejected(CmeError):
    """A delivery failed a check; it stays encrypted and goes to quarantine."""

    exit_code = 3

    def __init__(self, reason: str, *, check: str = "delivery") -> None:
        super().__init__(reason)
        self.reason = reason
        self.check = check


class SchemaMismatch(DeliveryRejected):
    """The columns of a file do not match the data contract."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, check="schema")


class IntegrityError(DeliveryRejected):
    """A signature, hash or authenticated ciphertext did not verify."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, check="integrity")


class KeyUnavailable(CmeError):
    """A key is missing or was destroyed, so the data it protects cannot be read."""


class CiphertextInvalid(CmeError):
    """A stored ciphertext did not verify: altered, moved to another row, or under another key."""
