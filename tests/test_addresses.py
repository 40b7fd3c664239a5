"""Address checks in plain Python agree with solders' own parsing."""

from __future__ import annotations

import random

from solders.keypair import Keypair
from solders.pubkey import Pubkey

from nexus_app.addresses import BASE58, is_valid_address


def solders_accepts(text: str) -> bool:
    try:
        Pubkey.from_string(text)
    except (ValueError, TypeError):
        return False
    return True


def test_agrees_with_solders_on_keys_and_their_mutations() -> None:
    chooser = random.Random(7)
    samples = ["1" * 32, "1" * 31, "1" * 33, "", "0" * 32, "l" * 44, "z" * 44, "z" * 45,
               str(Pubkey.default()), "11111111111111111111111111111112"]
    for _ in range(300):
        key = str(Keypair().pubkey())
        cut = chooser.randrange(len(key))
        samples += [key, key[:cut], key + chooser.choice(BASE58), key[:cut] + "0" + key[cut + 1:],
                    key[:cut] + chooser.choice(BASE58) + key[cut + 1:], "1" + key]
    for text in samples:
        assert is_valid_address(text) == solders_accepts(text), text
    assert all(is_valid_address(str(Keypair().pubkey())) for _ in range(100))
