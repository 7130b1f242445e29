"""Run ids and generated group names."""

from __future__ import annotations

import secrets

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 8


def generate_id(length: int = ID_LENGTH) -> str:
    """Return a random id of ``length`` characters from ``[a-z0-9]``."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))
