"""The meeting bot: capture process → ASR worker process → compositor process, plus outputs.

The supervisor (the calling process) starts the three processes, routes every caption update to
the outputs that live here (caption files, overlay server, caption APIs, terminal) and to the
compositor, restarts a process that dies, and stops everything within 2 s on Ctrl-C / SIGTERM.
Only the frozen dataclasses of bot.messages cross the queues. Queues are bounded where a slow
stage could make them grow: audio (the capture drops the oldest) and compositor captions.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bot.config import Config
from bot.eval.latency import LatencyPercentiles, percentiles
from bot.messages import (
    SAMPLE_RATE,
    AudioChunk,
    CaptionsDrawn,
    CaptionUpdate,
    CommittedWord,
    EndOfStream,
    StageError,
    StageReport,
)

logger = logging.getLogger(__name__)

POLL_S = 0.02
STOP_GRACE_S = 1.6
# After the audio ended, keep the video running this long so the last captions are seen.
LINGER_S = 1.5
COMPOSITOR_QUEUE = 512
# Audio handed to the worker ahead of time; the rest waits in the supervisor's backlog.
WORKER_INBOX_S = 2.0
# Audio kept after it went to the worker, to replay what a crashed worker had not committed.
REPLAY_S = 30.0
RESTART_WINDOW_S = 60.0
MAX_RESTARTS_PER_WINDOW = 5


class CaptionOutput(Protocol):
    """An output fed by the supervisor with every caption update of one stream."""

    def add(self, update: CaptionUpdate) -> None: ...

    def close(self) -> None: ...


@dataclass
class StreamRecord:
    """What the supervisor knows of a stream: every committed word, in order."""

    words: list[CommittedWord] = field(default_factory=list)
    language: str | None = None
    drawn_committed: int = 0
    shown_latency_s: list[float] = field(default_factory=list)


@dataclass
class PipelineResult:
    """How a run went: per-stream words, the outputs written, process health."""

    streams: dict[str, StreamRecord]
    outputs: dict[str, dict[str, Path]]
    reports: dict[str, StageReport]
    restarts: dict[str, int]
    error: str | None
    dropped_caption_updates: int
    overlay_url: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def latency(self) -> dict[str, LatencyPercentiles]:
        """Caption delay from a word's end on the audio clock until it was committed, and
        until the first video frame showing it committed was sent."""
        committed = [w.emitted_s - w.end for s in self.streams.values() for w in s.words]
        drawn = [x for s in self.streams.values() for x in s.shown_latency_s]
        return {
            "committed": percentiles(np.array(committed)),
            "drawn": percentiles(np.array(drawn)),
        }


def _child(
    target: Callable[..., None], log_level: int, args: tuple[Any, ...]
) -> None:  # pragma: no cover - runs in the child process
    """Entry of every child process: Ctrl-C is the supervisor's business, not the child's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faster_whisper").setLevel(max(log_level, logging.WARNING))
    target(*args)


def _capture_entry(*args: Any) -> None:  # pragma: no cover - child process
    from bot.audio.capture import capture_main

    capture_main(*args)


def _worker_entry(*args: Any) -> None:  # pragma: no cover - child process
    from bot.asr.worker import asr_worker_main

    asr_worker_main(*args)


def _compositor_entry(*args: Any) -> None:  # pragma: no cover - child process
    from bot.video.compositor import compositor_main

    compositor_main(*args)


class _Stage:
    """One child process, the queues it owns, and its restart history.

    Every start gets fresh queues: a process killed while it held a queue's lock would
    otherwise leave that queue blocked for its successor.
    """

    def __init__(
        self,
        name: str,
        entry: Callable[..., None],
        context: Any,
        inbox_size: int | None = None,
        outbox_size: int | None = None,
    ) -> None:
        self.name = name
        self.entry = entry
        self.context = context
        self.inbox_size = inbox_size
        self.outbox_size = outbox_size
        self.process: Any = None
        self.inbox: Any = None
        self.outbox: Any = None
        self.events: Any = None
        self.restarts = 0
        self._recent_starts: list[float] = []

    def start(self, make_args: Callable[[_Stage], tuple[Any, ...]]) -> None:
        now = time.monotonic()
        self._recent_starts = [t for t in self._recent_starts if now - t < RESTART_WINDOW_S]
        self._recent_starts.append(now)
        self.close_queues()
        ctx = self.context
        self.inbox = None if self.inbox_size is None else ctx.Queue(maxsize=self.inbox_size)
        self.outbox = None if self.outbox_size is None else ctx.Queue(maxsize=self.outbox_size)
        self.events = ctx.Queue()
        self.process = ctx.Process(
            target=_child,
            args=(self.entry, logging.getLogger().getEffectiveLevel(), make_args(self)),
            name=f"captionbot-{self.name}",
            daemon=True,
        )
        self.process.start()

    @property
    def may_restart(self) -> bool:
        return len(self._recent_starts) <= MAX_RESTARTS_PER_WINDOW

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.exitcode is not None

    def join(self, deadline: float) -> None:
        if self.process is None:
            return
        self.process.join(max(deadline - time.monotonic(), 0.0))
        if self.process.is_alive():
            logger.warning("%s process did not stop in time; terminating it", self.name)
            self.process.terminate()
            self.process.join(0.5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(0.5)

    def close_queues(self) -> None:
        for q in (self.inbox, self.outbox, self.events):
            if q is not None:
                q.cancel_join_thread()
                q.close()
        self.inbox = self.outbox = self.events = None


def wants_video(config: Config) -> bool:
    s = config.sinks
    return bool(s.virtual_camera or s.stream_url or s.file or s.preview)


class Supervisor:
    """Runs the bot until the audio ends, a stage fails for good, or `request_stop()`."""

    def __init__(
        self,
        config: Config,
        out_dir: Path | None = None,
        stem: str | None = None,
        on_update: Callable[[CaptionUpdate], None] | None = None,
        on_start: Callable[[Supervisor], None] | None = None,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir if out_dir is not None else config.outputs.dir)
        self.stem = stem or f"{config.audio.stream_id}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.on_update = on_update
        self.on_start = on_start
        self._context = mp.get_context("spawn")
        self._stop_requested = threading.Event()
        self._streams: dict[str, StreamRecord] = {}
        self._outputs: dict[str, list[CaptionOutput]] = {}
        self._written: dict[str, dict[str, Path]] = {}
        self._reports: dict[str, StageReport] = {}
        self._error: str | None = None
        self._dropped_captions = 0
        self._dropped_audio = 0
        self._overlay: Any = None
        self._origin = 0.0
        self._origin_wall = 0.0
        self.stages: dict[str, _Stage] = {}

    # -- control ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop soon (safe from a signal handler or another thread)."""
        self._stop_requested.set()

    @property
    def overlay_url(self) -> str | None:
        return self._overlay.url if self._overlay is not None else None

    def overlay_page(self, page: str) -> str | None:
        """The URL of an overlay page (with the token when one is set)."""
        return self._overlay.page_url(page) if self._overlay is not None else None

    def committed_text(self, stream_id: str) -> str:
        record = self._streams.get(stream_id)
        return "".join(w.text for w in record.words).strip() if record else ""

    # -- run --------------------------------------------------------------------------------------

    def run(self) -> PipelineResult:
        config = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._backlog_slots = max(4, math.ceil(config.audio.queue_s / config.audio.chunk_s))
        self._backlog: deque[AudioChunk | EndOfStream] = deque()
        self._sent: deque[AudioChunk] = deque()
        self._stop = self._context.Event()
        self._shared_origin = self._context.Value("d", 0.0)
        self._video_stop = self._context.Event()
        self._start_overlay()
        self._caption_apis = self._start_caption_apis()
        previous_handlers = self._install_signal_handlers()
        try:
            self._start_stages()
            if "capture" in self.stages:
                if self.on_start is not None:
                    self.on_start(self)
                self._loop()
        finally:
            self._shutdown()
            self._restore_signal_handlers(previous_handlers)
        return PipelineResult(
            streams=self._streams,
            outputs=self._written,
            reports=self._reports,
            restarts={name: stage.restarts for name, stage in self.stages.items()},
            error=self._error,
            dropped_caption_updates=self._dropped_captions,
            overlay_url=self.overlay_url,
        )

    def _start_stages(self) -> None:
        audio = self.config.audio
        worker = _Stage(
            "asr",
            _worker_entry,
            self._context,
            inbox_size=max(2, math.ceil(WORKER_INBOX_S / audio.chunk_s)),
            outbox_size=0,
        )
        self.stages["asr"] = worker
        worker.start(self._worker_args)
        if not self._wait_for_worker():
            return
        self._origin = time.monotonic()
        self._origin_wall = time.time()
        self._shared_origin.value = self._origin
        self.stages["capture"] = _Stage(
            "capture", _capture_entry, self._context, outbox_size=self._backlog_slots
        )
        self.stages["capture"].start(self._capture_args)
        if wants_video(self.config):
            self.stages["compositor"] = _Stage(
                "compositor", _compositor_entry, self._context, inbox_size=COMPOSITOR_QUEUE
            )
            self.stages["compositor"].start(self._compositor_args)

    def _wait_for_worker(self) -> bool:
        """Let the engine load before audio flows, so captions start in real time."""
        worker = self.stages["asr"]
        while "asr" not in self._reports:
            if self._stop_requested.is_set() or self._error is not None:
                return False
            if worker.exited:
                self._drain_events()
                if self._error is None:
                    self._error = (
                        f"the ASR worker exited while loading (code {worker.process.exitcode}); "
                        "run with -v for details"
                    )
                return False
            time.sleep(POLL_S)
            self._drain_events()
        return True

    def _worker_args(self, stage: _Stage) -> tuple[Any, ...]:
        resume = {sid: tuple(record.words[-200:]) for sid, record in self._streams.items()}
        return (
            self.config,
            stage.inbox,
            stage.outbox,
            self._stop,
            stage.events,
            self._shared_origin,
            resume,
        )

    def _capture_args(self, stage: _Stage) -> tuple[Any, ...]:
        return (self.config.audio, stage.outbox, self._stop, stage.events, self._origin)

    def _compositor_args(self, stage: _Stage) -> tuple[Any, ...]:
        return (self.config, stage.inbox, self._video_stop, stage.events)

    def _loop(self) -> None:
        audio_done_at: float | None = None
        while not self._stop_requested.is_set() and self._error is None:
            self._drain_events()
            self._relay_audio()
            self._drain_updates(timeout=POLL_S)
            if audio_done_at is not None:
                if time.monotonic() - audio_done_at >= LINGER_S:
                    return
                continue
            worker = self.stages["asr"]
            if worker.exited:
                self._drain_updates(timeout=0.0)
                self._drain_events()
                if self._error is not None:
                    return
                if worker.process.exitcode == 0:
                    logger.info("all audio captioned")
                    audio_done_at = time.monotonic()
                    if "compositor" not in self.stages:
                        return
                    continue
                if self._restart(worker, self._worker_args):
                    self._replay_uncommitted()
            capture = self.stages["capture"]
            if capture.exited and capture.process.exitcode != 0 and self._error is None:
                self._restart(capture, self._capture_args)
            compositor = self.stages.get("compositor")
            if compositor is not None and compositor.exited and self._error is None:
                self._restart(compositor, self._compositor_args)

    def _restart(self, stage: _Stage, args: Callable[[_Stage], tuple[Any, ...]]) -> bool:
        code = stage.process.exitcode
        if not stage.may_restart:
            self._error = (
                f"the {stage.name} process keeps failing (exit code {code}); "
                "run with -v for details"
            )
            return False
        stage.restarts += 1
        logger.warning(
            "%s process exited with code %s; restarting it (restart %d)",
            stage.name,
            code,
            stage.restarts,
        )
        stage.start(args)
        return True

    # -- audio: capture → backlog → worker --------------------------------------------------

    def _relay_audio(self) -> None:
        """Move captured audio to the worker; the backlog absorbs a busy or restarting worker
        and drops its oldest audio (counted) beyond `audio.queue_s`."""
        capture = self.stages.get("capture")
        while capture is not None and capture.outbox is not None:
            try:
                message = capture.outbox.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            self._backlog.append(message)
        while len(self._backlog) > self._backlog_slots:
            self._backlog.popleft()
            self._dropped_audio += 1
            if self._dropped_audio % 50 == 1:
                logger.warning("ASR worker is behind: %d audio chunks dropped", self._dropped_audio)
        worker = self.stages["asr"]
        while self._backlog and not worker.exited:
            try:
                worker.inbox.put_nowait(self._backlog[0])
            except queue.Full:
                break
            message = self._backlog.popleft()
            if isinstance(message, AudioChunk):
                self._remember_sent(message)

    def _remember_sent(self, chunk: AudioChunk) -> None:
        self._sent.append(chunk)
        horizon = chunk.start - REPLAY_S
        while self._sent and self._sent[0].start < horizon:
            self._sent.popleft()

    def _replay_uncommitted(self) -> None:
        """A new worker hears again the audio after each stream's last committed word (the
        dead one may have held it in its buffer), so no speech is lost to the crash."""
        replay = []
        for chunk in self._sent:
            record = self._streams.get(chunk.stream_id)
            committed_end = record.words[-1].end if record and record.words else float("-inf")
            if chunk.start + len(chunk.samples) / SAMPLE_RATE > committed_end:
                replay.append(chunk)
        self._sent.clear()
        self._backlog.extendleft(reversed(replay))
        logger.info(
            "replaying %.1f s of audio to the new worker",
            sum(len(c.samples) for c in replay) / SAMPLE_RATE,
        )

    # -- routing ----------------------------------------------------------------------------------

    def _drain_updates(self, timeout: float) -> None:
        worker = self.stages.get("asr")
        updates = worker.outbox if worker is not None else None
        if updates is None:
            time.sleep(timeout)
            return
        try:
            update = updates.get(timeout=timeout) if timeout else updates.get_nowait()
        except queue.Empty:
            return
        while True:
            self._route(update)
            try:
                update = updates.get_nowait()
            except queue.Empty:
                return

    def _route(self, update: CaptionUpdate) -> None:
        record = self._streams.get(update.stream_id)
        if record is None:
            record = self._streams[update.stream_id] = StreamRecord()
            self._outputs[update.stream_id] = self._open_outputs(update.stream_id)
        record.words.extend(update.committed)
        record.language = update.language or record.language
        for output in self._outputs[update.stream_id]:
            try:
                output.add(update)
            except Exception:  # an output must never stop the captions
                logger.exception("caption output %s failed", type(output).__name__)
        compositor = self.stages.get("compositor")
        if compositor is not None and compositor.inbox is not None:
            try:
                compositor.inbox.put_nowait(update)
            except queue.Full:
                self._dropped_captions += 1
                logger.warning("compositor is behind: caption update dropped")
        if self.on_update is not None:
            self.on_update(update)

    def _open_outputs(self, stream_id: str) -> list[CaptionOutput]:
        from bot.outputs.live_files import LiveCaptionFiles

        config = self.config
        stem = self.stem if not self._streams.keys() - {stream_id} else f"{self.stem}-{stream_id}"
        meta = {
            "stream_id": stream_id,
            "audio": self._audio_name(),
            "model": config.engine.model,
            "engine": config.engine.name,
            "task": config.task,
        }
        files = LiveCaptionFiles(self.out_dir, stem, tuple(config.outputs.formats), meta)
        self._written[stream_id] = {
            fmt: self.out_dir / f"{stem}.{fmt}" for fmt in config.outputs.formats
        }
        outputs: list[CaptionOutput] = [files]
        if self._overlay is not None:
            outputs.append(_OverlayOutput(self._overlay))
        outputs += self._caption_apis
        return outputs

    def _audio_name(self) -> str:
        audio = self.config.audio
        if audio.source == "file":
            return str(audio.file)
        if audio.source == "sample":
            from bot.audio.samples import bundled_sample

            return bundled_sample().name
        return f"{audio.source}:{audio.device if audio.device is not None else 'default'}"

    def _drain_events(self) -> None:
        for stage in list(self.stages.values()):
            while stage.events is not None:
                try:
                    event = stage.events.get_nowait()
                except (queue.Empty, OSError, ValueError):
                    break
                self._handle_event(event)

    def _handle_event(self, event: object) -> None:
        if isinstance(event, StageError):
            if self._error is None:
                self._error = event.message
        elif isinstance(event, StageReport):
            self._reports[event.stage] = event
        elif isinstance(event, CaptionsDrawn):
            self._record_drawn(event)

    def _record_drawn(self, event: CaptionsDrawn) -> None:
        record = self._streams.get(event.stream_id)
        if record is None:
            return
        shown = min(event.committed_words, len(record.words))
        for word in record.words[record.drawn_committed : shown]:
            record.shown_latency_s.append(event.wall_time - (self._origin_wall + word.end))
        record.drawn_committed = max(record.drawn_committed, shown)

    # -- outputs that live in this process ------------------------------------------------------

    def _start_overlay(self) -> None:
        if not self.config.overlay.enabled:
            return
        from bot.overlay.server import OverlayServer

        self._overlay = OverlayServer(
            self.config.overlay, default_stream=self.config.audio.stream_id
        )
        self._overlay.start()
        logger.info("overlay at %s", self._overlay.url)

    def _start_caption_apis(self) -> list[CaptionOutput]:
        outputs = self.config.outputs
        senders: list[CaptionOutput] = []
        if outputs.zoom_cc_url or outputs.youtube_cc_url:
            from bot.outputs.caption_api import YouTubeCaptionSender, ZoomCaptionSender

            if outputs.zoom_cc_url:
                zoom = ZoomCaptionSender(outputs.zoom_cc_url, lang=outputs.cc_language)
                senders.append(_SenderOutput(zoom))
            if outputs.youtube_cc_url:
                senders.append(_SenderOutput(YouTubeCaptionSender(outputs.youtube_cc_url)))
        return senders

    # -- stop -------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        self._stop.set()
        worker = self.stages.get("asr")
        # The worker commits what is shown when stopped: take those last updates.
        while worker is not None and not worker.exited and time.monotonic() < deadline:
            self._drain_updates(timeout=POLL_S)
        self._drain_updates(timeout=0.0)
        self._video_stop.set()
        for stage in self.stages.values():
            stage.join(deadline)
        self._drain_updates(timeout=0.0)
        self._drain_events()
        for outputs in self._outputs.values():
            for output in outputs:
                if not isinstance(output, _OverlayOutput | _SenderOutput):
                    self._close(output)
        for sender in self._caption_apis:
            self._close(sender)
        if self._overlay is not None:
            self._overlay.stop()
        for stage in self.stages.values():
            stage.close_queues()

    @staticmethod
    def _close(output: CaptionOutput) -> None:
        try:
            output.close()
        except Exception:
            logger.exception("closing %s failed", type(output).__name__)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda *_: self.request_stop())
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)


class _OverlayOutput:
    """Feeds the overlay server (shared by every stream; the server keys by stream id)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def add(self, update: CaptionUpdate) -> None:
        self.server.publish(update)

    def close(self) -> None:
        pass


class _SenderOutput:
    """Feeds a closed-caption API client (Zoom, YouTube)."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender

    def add(self, update: CaptionUpdate) -> None:
        self.sender.submit(update)

    def close(self) -> None:
        self.sender.close()
