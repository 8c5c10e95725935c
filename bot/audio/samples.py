"""The speech sample shipped inside the package, for demos and smoke tests."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from bot.errors import AudioInputError

BUNDLED_SAMPLE_NAME = "jfk.wav"
BUNDLED_SAMPLE_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def bundled_sample() -> Path:
    """Path of `bot/samples/jfk.wav`: 11 s of JFK's 1961 inaugural address, 16 kHz mono."""
    resource = importlib.resources.files("bot") / "samples" / BUNDLED_SAMPLE_NAME
    path = Path(str(resource))
    if not path.is_file():
        raise AudioInputError(
            f"the bundled sample {path} is missing; reinstall captionbot (pip install captionbot)"
        )
    return path
