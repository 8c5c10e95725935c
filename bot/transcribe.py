"""`captionbot transcribe`: stream recordings through the live captioning path, write transcripts.

Each file goes through exactly what live audio goes through (streaming policy, VAD, batched
worker); `fast` (the default: someone transcribing a file wants it done) feeds it as fast as the
engine decodes, `realtime` paces it at speech speed with computation counted, to measure live
latency. Up to `streams` files run at once through one worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot.asr.engine import Engine
from bot.audio.decode import load_audio, wav_truncation
from bot.config import Config
from bot.errors import AudioInputError, ConfigError
from bot.messages import SAMPLE_RATE, CaptionUpdate
from bot.outputs.stats import commit_latencies, first_seen_latencies, latency_over_time, summarize
from bot.outputs.transcript import Transcript, TranscriptRecorder
from bot.outputs.writers import write_all
from bot.streaming.feeding import Recording, run_fast, run_realtime
from bot.streaming.transcriber import StreamingTranscriber

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = {
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".opus",
    ".m4a",
    ".aac",
    ".wma",
    ".webm",
    ".mp4",
    ".mkv",
    ".mov",
    ".aiff",
    ".aif",
}


@dataclass
class FileResult:
    path: Path
    stem: str
    error: str | None = None
    warning: str | None = None
    """Captioned, but with a caveat the summary shows (a truncated file)."""
    transcript: Transcript | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def collect_inputs(files: list[str], audio_folder: Path | None) -> list[Path]:
    """The files named, then the audio files of a folder (sorted); duplicates once."""
    paths = [Path(f) for f in files]
    if audio_folder is not None:
        if not audio_folder.is_dir():
            raise ConfigError(f"--audio-folder {audio_folder} is not a directory")
        paths += sorted(p for p in audio_folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    unique: list[Path] = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names per input; two inputs with one stem get `-2`, `-3`... so none is overwritten."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


class TranscriptionJob:
    """Runs files through one `StreamingTranscriber` and writes each transcript when it ends."""

    def __init__(
        self,
        engine: Engine,
        config: Config,
        out_dir: Path,
        realtime: bool = False,
        streams: int = 1,
        on_update: Callable[[CaptionUpdate], None] | None = None,
        on_progress: Callable[[str, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.out_dir = out_dir
        self.realtime = realtime
        self.streams = max(1, streams)
        self._on_update = on_update
        self._on_progress = on_progress
        self.decode_s = 0.0
        """Seconds the engine spent decoding in the last `run` (batched rounds counted once)."""

    def run(self, paths: list[Path]) -> list[FileResult]:
        results = [FileResult(path, stem) for path, stem in zip(paths, unique_stems(paths))]
        transcriber = StreamingTranscriber(
            self.engine, self.config.streaming.options(), clock="wall" if self.realtime else "audio"
        )
        recorders: dict[str, TranscriptRecorder] = {}
        started: dict[str, float] = {}
        by_stream = {result.stem: result for result in results}

        def recordings() -> Iterator[Recording]:
            """Files are decoded only when a stream slot frees up for them."""
            for result in results:
                try:
                    audio = load_audio(result.path)
                except AudioInputError as error:
                    result.error = str(error)
                    logger.error("%s", error)
                    continue
                if (truncation := wav_truncation(result.path)) is not None:
                    result.warning = (
                        f"truncated: {truncation.present_s:.1f} of {truncation.declared_s:.1f} s"
                    )
                recorders[result.stem] = TranscriptRecorder(
                    stream_id=result.stem,
                    audio=str(result.path),
                    duration_s=len(audio) / SAMPLE_RATE,
                    model=self.engine.info.model,
                    engine=self.engine.info.name,
                    task=self.config.task,
                    language=self.config.language_or_none,
                )
                started[result.stem] = time.monotonic()
                yield Recording(result.stem, audio, self.config.task, self.config.language_or_none)

        def handle(update: CaptionUpdate) -> None:
            recorders[update.stream_id].add(update)
            if self._on_update:
                self._on_update(update)
            if update.final:
                result = by_stream[update.stream_id]
                result.wall_s = time.monotonic() - started[update.stream_id]
                self._finish(result, recorders[update.stream_id], transcriber)

        run = run_realtime if self.realtime else run_fast
        try:
            run(transcriber, recordings(), handle, self._on_progress, max_streams=self.streams)
        except KeyboardInterrupt:
            for stream_id, recorder in recorders.items():
                result = by_stream[stream_id]
                if result.transcript is None:
                    result.error = "interrupted: partial transcript written"
                    result.wall_s = time.monotonic() - started[stream_id]
                    self._finish(result, recorder, transcriber)
            raise
        finally:
            self.decode_s = transcriber.decode_s
        return results

    def _finish(
        self, result: FileResult, recorder: TranscriptRecorder, transcriber: StreamingTranscriber
    ) -> None:
        transcript = recorder.transcript
        stats = transcriber.stats(result.stem)
        commit = commit_latencies(transcript.words)
        first_seen = first_seen_latencies(transcript.words)
        transcript.extra.update(
            {
                "mode": "realtime" if self.realtime else "fast",
                "engine_details": dict(self.engine.info.details),
                "commit_latency_s": summarize(transcript.words, commit).as_dict(),
                "first_seen_latency_s": summarize(transcript.words, first_seen).as_dict(),
                "commit_latency_per_minute": latency_over_time(transcript.words, commit),
                "updates": stats.updates,
                "decode_s": round(stats.decode_s, 3),
                "finalizations": stats.finalizations,
                "forced_commits": stats.forced_commits,
                "dropped_audio_s": round(stats.dropped_audio_s, 3),
                "max_buffer_s": round(stats.max_buffer_s, 3),
                "wall_s": round(result.wall_s, 3),
            }
        )
        result.transcript = transcript
        result.outputs = write_all(transcript, self.out_dir, result.stem)
