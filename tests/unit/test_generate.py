"""The sample generator (bench/generate.py) used by make run and the benchmarks."""

from __future__ import annotations

import io
from collections import Counter

from bench.generate import WELCOME_CHANNELS, Generator, write


def sample(seed: int = 7) -> bytes:
    out = io.BytesIO()
    write(Generator(events=20_000, contacts=2_000, workspaces=3, seed=seed), out)
    return out.getvalue()


def test_the_same_seed_gives_the_same_bytes() -> None:
    assert sample() == sample()
    assert sample() != sample(seed=8)


def test_welcome_events_come_from_facebook_and_viber_save_a_few() -> None:
    channels = Counter(item["channel"]["type"]
                       for item in Generator(events=20_000, contacts=2_000, workspaces=3)
                       if isinstance(item, dict) and item.get("type") == "welcome")
    welcomes = sum(channels.values())
    wrong = sum(n for channel, n in channels.items() if channel not in WELCOME_CHANNELS)
    assert welcomes > 200
    assert set(WELCOME_CHANNELS) <= set(channels)
    assert 0 < wrong < 0.05 * welcomes  # a few, to show welcome_not_supported
