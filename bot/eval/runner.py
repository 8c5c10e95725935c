"""Run a dataset through one or more configurations of the streaming system, and score it.

Each configuration streams every item through the same path as live audio (the
`TranscriptionJob` of `captionbot transcribe`), `streams` items at a time through one batched
worker, and is followed by the offline whole-file transcription of the same engine and model
as its reference line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
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
    TextQuality,
    TranslationPair,
    char_error,
    flicker,
    is_written,
    output_language,
    same_language,
    sentence_translation_scores,
    tentative_repeats,
    word_error,
    written_error,
    written_tokens,
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


def score_item(
    item: EvalItem,
    task: str,
    text: str,
    duration_s: float,
    transcript: Transcript | None = None,
    offline_text: str | None = None,
) -> ItemMetrics:
    """Score a hypothesis `text` with the metrics that apply to it.

    WER/CER against the transcript only where the output is in the speech's language
    (`output_language`): an English translation of German speech has no WER. BLEU/chrF only
    against the item's reference translation, when translating. `transcript` (streaming only)
    adds latency, flicker and tentative repeats; `offline_text` the written-form error of the
    streamed text against the offline one.
    """
    transcribed = same_language(output_language(item.language, task), item.language)
    if item.language is None and task == "transcribe":
        transcribed = True  # the dataset does not say: the output is in whatever was spoken
    translated = (
        TranslationPair(item.translation, text)
        if task == "translate" and item.translation and not transcribed
        else None
    )
    written = is_written(item.text) and transcribed
    return ItemMetrics(
        id=item.id,
        language=item.language,
        duration_s=duration_s,
        words=word_error(item.text, text, item.language) if transcribed else None,
        chars=char_error(item.text, text, item.language) if transcribed else None,
        latency=item_latency(transcript.words if transcript else []),
        flicker=flicker(transcript.updates if transcript else [], item.language),
        translation=(
            sentence_translation_scores(translated.reference, text) if translated else None
        ),
        translated=translated,
        written=written_error(item.text, text) if written else None,
        written_vs_offline=(
            written_error(offline_text, text)
            if transcript is not None and offline_text and written_tokens(offline_text)
            else None
        ),
        quality=TextQuality.of(text),
        repeats=tentative_repeats(transcript.updates) if transcript else None,
    )


class EvalRunner:
    """Streams every item of a dataset through each configuration, then transcribes it offline.

    `on_progress(config_name, stream_id, seconds)` reports audio seconds streamed so far.
    """

    def __init__(
        self,
        dataset: Dataset,
        configs: list[NamedConfig],
        out_dir: Path,
        realtime: bool = False,
        streams: int = 1,
        offline: bool = True,
        on_progress: Callable[[str, str, float], None] | None = None,
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
        report = self._on_progress
        job = TranscriptionJob(
            engine,
            config,
            self.out_dir / "transcripts" / named.name,
            realtime=self.realtime,
            streams=self.streams,
            on_progress=(lambda stream, seconds: report(named.name, stream, seconds))
            if report
            else None,
        )
        logger.info("config %s: streaming %d items", named.name, len(items))
        before = ResourceUsage.now()
        with RssSampler() as memory:
            results = job.run([item.audio for item in items])
        used = ResourceUsage.now().since(before)
        audio_s = 0.0
        for item, result in zip(items, results):
            if result.transcript is None:
                run.failures[item.id] = result.error or "failed"
                continue
            audio_s += result.transcript.duration_s
            run.transcripts[item.id] = result.transcript
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
        offline_texts = {o.id: o.text for o in run.offline}
        for item in items:
            transcript = run.transcripts.get(item.id)
            if transcript is None:
                continue
            run.items.append(
                score_item(
                    item,
                    config.task,
                    transcript.text,
                    transcript.duration_s,
                    transcript,
                    offline_texts.get(item.id),
                )
            )
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
        run.offline.append(OfflineItem(item.id, result.text, metrics))
        return duration_s
