"""Run a dataset through one or more configurations of the streaming system, and score it.

Each configuration streams every item through the same path as live audio (the
`TranscriptionJob` of `captionbot transcribe`), `streams` items at a time through one batched
worker, and is followed by the offline whole-file transcription of the same engine and model
as its reference line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.asr.engine import Engine, EngineInfo
from bot.asr.factory import create_engine_for
from bot.audio.decode import load_audio
from bot.config import Config
from bot.errors import AudioInputError
from bot.eval.datasets import Dataset, EvalItem
from bot.eval.latency import item_latency
from bot.eval.metrics import (
    ItemMetrics,
    ResourceUsage,
    RssSampler,
    SpeedStats,
    char_error,
    flicker,
    sentence_translation_scores,
    word_error,
)
from bot.messages import SAMPLE_RATE
from bot.outputs.transcript import Transcript
from bot.transcribe import TranscriptionJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NamedConfig:
    name: str
    config: Config
    source: str = "defaults"


@dataclass(frozen=True)
class OfflineItem:
    id: str
    text: str
    metrics: ItemMetrics


@dataclass
class ConfigRun:
    """One configuration's results on the dataset."""

    named: NamedConfig
    engine: EngineInfo
    items: list[ItemMetrics] = field(default_factory=list)
    transcripts: dict[str, Transcript] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    speed: SpeedStats | None = None
    offline: list[OfflineItem] = field(default_factory=list)
    offline_speed: SpeedStats | None = None


def reference_for(item: EvalItem, task: str) -> tuple[str | None, str | None]:
    """The text a hypothesis is scored against, and its language: the English translation
    when the task is translation (the transcript itself for English speech; None when the
    dataset has none), else the transcript."""
    if task == "translate":
        if item.translation:
            return item.translation, "en"
        if item.language == "en":
            return item.text, "en"
        return None, None
    return item.text, item.language


def score_item(
    item: EvalItem,
    task: str,
    text: str,
    duration_s: float,
    transcript: Transcript | None = None,
) -> ItemMetrics | None:
    """Score a hypothesis `text`; `transcript` (streaming only) adds latency and flicker."""
    reference, language = reference_for(item, task)
    if reference is None:
        return None
    return ItemMetrics(
        id=item.id,
        language=item.language,
        duration_s=duration_s,
        words=word_error(reference, text, language),
        chars=char_error(reference, text, language),
        latency=item_latency(transcript.words if transcript else []),
        flicker=flicker(transcript.updates if transcript else [], language),
        translation=(sentence_translation_scores(reference, text) if task == "translate" else None),
    )


class EvalRunner:
    def __init__(
        self,
        dataset: Dataset,
        configs: list[NamedConfig],
        out_dir: Path,
        realtime: bool = False,
        streams: int = 1,
        offline: bool = True,
        on_progress=None,
    ) -> None:
        self.dataset = dataset
        self.configs = configs
        self.out_dir = out_dir
        self.realtime = realtime
        self.streams = streams
        self.offline = offline
        self._on_progress = on_progress

    def run(self) -> list[ConfigRun]:
        return [self.run_config(named) for named in self.configs]

    def run_config(self, named: NamedConfig) -> ConfigRun:
        config = named.config
        engine = create_engine_for(config)
        run = ConfigRun(named, engine.info)
        items = list(self.dataset.items)
        job = TranscriptionJob(
            engine,
            config,
            self.out_dir / "transcripts" / named.name,
            realtime=self.realtime,
            streams=self.streams,
            on_progress=self._on_progress,
        )
        logger.info("config %s: streaming %d items", named.name, len(items))
        before = ResourceUsage.now()
        with RssSampler() as memory:
            results = job.run([item.audio for item in items])
        used = ResourceUsage.now().since(before)
        audio_s = 0.0
        for item, result in zip(items, results):
            transcript = result.transcript
            if transcript is None:
                run.failures[item.id] = result.error or "failed"
                continue
            audio_s += transcript.duration_s
            run.transcripts[item.id] = transcript
            metrics = score_item(
                item, config.task, transcript.text, transcript.duration_s, transcript
            )
            if metrics is not None:
                run.items.append(metrics)
        run.speed = SpeedStats(
            audio_s=audio_s,
            wall_s=used.wall_s,
            decode_s=job.decode_s,
            cpu_s=used.cpu_s,
            peak_rss_mb=memory.peak_mb,
            streams=self.streams,
        )
        if self.offline:
            self._run_offline(engine, run, items)
        return run

    def _run_offline(self, engine: Engine, run: ConfigRun, items: list[EvalItem]) -> None:
        before = ResourceUsage.now()
        with RssSampler() as memory:
            audio_s = sum(self._offline_item(engine, run, item) for item in items)
        used = ResourceUsage.now().since(before)
        run.offline_speed = SpeedStats(
            audio_s=audio_s,
            wall_s=used.wall_s,
            decode_s=used.wall_s,
            cpu_s=used.cpu_s,
            peak_rss_mb=memory.peak_mb,
            streams=1,
        )

    def _offline_item(self, engine: Engine, run: ConfigRun, item: EvalItem) -> float:
        """Transcribe one item whole; returns its audio seconds (0 if it was skipped)."""
        config = run.named.config
        if item.id in run.failures:
            return 0.0
        try:
            audio = load_audio(item.audio)
        except AudioInputError as error:
            run.failures[item.id] = str(error)
            return 0.0
        duration_s = len(audio) / SAMPLE_RATE
        result = engine.transcribe_offline(audio, config.task, config.language_or_none)
        metrics = score_item(item, config.task, result.text, duration_s)
        if metrics is not None:
            run.offline.append(OfflineItem(item.id, result.text, metrics))
        return duration_s
