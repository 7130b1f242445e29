"""Run ids and generated group names."""

from __future__ import annotations

import os

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
ID_LENGTH = 8
# The largest multiple of 36 below 256: bytes at or above it are drawn again, so every
# character is equally likely.
_LIMIT = 256 - 256 % len(ALPHABET)


def generate_id(length: int = ID_LENGTH) -> str:
    """Return a random id of ``length`` characters from ``[a-z0-9]``.

    The bytes come from ``os.urandom``, the operating system's CSPRNG that the ``secrets``
    module draws from too (importing ``secrets`` costs ~10 ms of start-up through hmac and
    OpenSSL, for a command typed at a prompt). Unlike ``random``, forked workers never
    repeat each other's ids.
    """
    chars: list[str] = []
    while len(chars) < length:
        for byte in os.urandom(length * 2):
            if byte < _LIMIT:
                chars.append(ALPHABET[byte % len(ALPHABET)])
                if len(chars) == length:
                    break
    return "".join(chars)
