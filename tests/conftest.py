"""Shared fixtures: the real speech data in ../shared/data and engines loaded once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.asr.engine import Task
from bot.messages import (
    SAMPLE_RATE,
    AudioChunk,
    CaptionUpdate,
    CommittedWord,
    EndOfStream,
    join_words,
)
from bot.streaming.options import StreamingOptions
from bot.streaming.transcriber import StreamingTranscriber

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
SKIP_NO_DATA = (
    f"real speech data not found at {DATA_DIR} (the ../shared/data folder beside the repo)"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA_DIR / "manifest.jsonl").is_file():
        pytest.skip(SKIP_NO_DATA)
    return DATA_DIR


@pytest.fixture(scope="session")
def manifest(shared_data: Path) -> dict[str, dict]:
    rows = [
        json.loads(line)
        for line in (shared_data / "manifest.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return {row["id"]: row for row in rows}


@pytest.fixture(scope="session")
def load_item(shared_data: Path, manifest: dict[str, dict]):
    """Audio (16 kHz float32) and manifest row of an item, by id."""
    from bot.audio.decode import load_audio

    def load(item_id: str) -> tuple[np.ndarray, dict]:
        row = manifest[item_id]
        return load_audio(shared_data / row["audio"]), row

    return load


# CAPTIONBOT_TEST_ENGINE=jax runs every engine-based test on the JAX engine instead.
TEST_ENGINE = os.environ.get("CAPTIONBOT_TEST_ENGINE", "ctranslate2")


@pytest.fixture(scope="session")
def tiny_engine():
    """English-only Whisper tiny (fast): for tests that only need *a* model."""
    from bot.asr.factory import create_engine
    from bot.config import EngineConfig

    return create_engine(EngineConfig(model="tiny.en", name=TEST_ENGINE))


@pytest.fixture(scope="session")
def base_engine():
    """Multilingual Whisper base: for tests where quality or translation matters."""
    from bot.asr.factory import create_engine
    from bot.config import EngineConfig

    return create_engine(EngineConfig(model="base", name=TEST_ENGINE))


@pytest.fixture(scope="session")
def jax_tiny():
    from bot.asr.factory import create_engine
    from bot.config import EngineConfig

    return create_engine(EngineConfig(model="tiny.en", name="jax"))


@pytest.fixture(scope="session")
def jax_base():
    from bot.asr.factory import create_engine
    from bot.config import EngineConfig

    return create_engine(EngineConfig(model="base", name="jax"))


def english_wer(reference: str, hypothesis: str) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    return jiwer.wer(normalize(reference), normalize(hypothesis))


def decoded_at(
    engine,
    audio: np.ndarray,
    decode_at_s: tuple[float, ...],
    options: StreamingOptions | None = None,
    **opened: Any,
) -> str:
    """The committed text of `audio` decoded once at each of these moments, then at its end."""
    return join_words(decoded_words_at(engine, audio, decode_at_s, options, **opened))


def decoded_words_at(
    engine,
    audio: np.ndarray,
    decode_at_s: tuple[float, ...],
    options: StreamingOptions | None = None,
    **opened: Any,
) -> list[CommittedWord]:
    """The words committed by `decoded_updates_at`."""
    updates = decoded_updates_at(engine, audio, decode_at_s, options, **opened)
    return [word for update in updates for word in update.committed]


def decoded_updates_at(
    engine,
    audio: np.ndarray,
    decode_at_s: tuple[float, ...],
    options: StreamingOptions | None = None,
    start_s: float = 0.0,
    history: tuple[CommittedWord, ...] = (),
    task: Task = "transcribe",
    language: str | None = "en",
) -> list[CaptionUpdate]:
    """The caption updates of decoding `audio` from `start_s` (a stream resumed with `history`)
    once at each of these moments, then at its end."""
    transcriber = StreamingTranscriber(engine, options, clock="audio")
    transcriber.open("s", task, language, start=start_s, history=history)
    updates: list[CaptionUpdate] = []
    fed = int(round(start_s * SAMPLE_RATE))
    for moment_s in (*decode_at_s, None):
        end = len(audio) if moment_s is None else int(moment_s * SAMPLE_RATE)
        transcriber.feed(AudioChunk("s", audio[fed:end], fed / SAMPLE_RATE))
        fed = end
        if moment_s is None:
            transcriber.feed(EndOfStream("s"))
        updates += transcriber.step()
    while transcriber.active:
        updates += transcriber.step()
    return updates
