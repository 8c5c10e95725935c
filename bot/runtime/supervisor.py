"""The meeting bot: capture stage → ASR stage → compositor stage, plus the outputs.

The supervisor (the calling process) starts the stages, relays captured audio to the ASR stage
(`AudioRelay`: the one place where audio is dropped, when the ASR stage is behind), routes every
caption update to the outputs that live here and to the compositor (`CaptionRouter`), restarts
a stage that dies (`RestartPolicy`), and stops everything within 2 s on Ctrl-C / SIGTERM. Only
the frozen dataclasses of bot.messages cross the queues.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.config import Config
from bot.messages import CaptionsDrawn, CaptionUpdate, StageError, StageReport
from bot.outputs.live_files import LiveCaptionFiles
from bot.outputs.stats import LatencyPercentiles, percentiles
from bot.runtime.asr_stage import AsrStageArgs, asr_stage_main
from bot.runtime.audio_relay import AudioRelay, DroppedAudio
from bot.runtime.caption_outputs import (
    OverlayOutput,
    caption_api_outputs,
    caption_file_meta,
    caption_file_paths,
)
from bot.runtime.caption_router import CaptionOutput, CaptionRouter, StreamRecord
from bot.runtime.capture_stage import CaptureStageArgs, capture_stage_main
from bot.runtime.compositor_stage import (
    CAPTION_QUEUE,
    CompositorStageArgs,
    compositor_stage_main,
    wants_video,
)
from bot.runtime.stage import ArgsT, Stage
from bot.streaming.resume import resume_from

if TYPE_CHECKING:
    from bot.overlay.server import OverlayServer

logger = logging.getLogger(__name__)

POLL_S = 0.02
STOP_GRACE_S = 1.6
# After the audio ended, keep the video running this long so the last captions are seen.
LINGER_S = 1.5
# Audio handed to the ASR stage ahead of time; the rest waits in the audio relay.
ASR_QUEUE_S = 2.0

AsrEntry = Callable[[AsrStageArgs], None]


@dataclass
class PipelineResult:
    """How a run went: per-stream words, the outputs written, process health."""

    streams: dict[str, StreamRecord]
    outputs: dict[str, dict[str, Path]]
    reports: dict[str, StageReport]
    restarts: dict[str, int]
    error: str | None
    dropped_caption_updates: int
    dropped_audio: dict[str, DroppedAudio]
    """Per stream: audio the ASR stage never heard because it was behind (see AudioRelay)."""
    overlay_url: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def dropped_audio_s(self) -> float:
        return sum(d.seconds for d in self.dropped_audio.values())

    def latency(self) -> dict[str, LatencyPercentiles]:
        """Caption delay from a word's end on the audio clock until it was committed, and
        until the first video frame showing it committed was sent."""
        committed = [w.emitted_s - w.end for s in self.streams.values() for w in s.words]
        drawn = [x for s in self.streams.values() for x in s.shown_latency_s]
        return {
            "committed": percentiles(np.array(committed)),
            "drawn": percentiles(np.array(drawn)),
        }


class Supervisor:
    """Runs the bot until the audio ends, a stage fails for good, or `request_stop()`.

    `asr_entry` is the ASR stage's process entry: the local engine by default; a client of a
    remote ASR service takes the same `AsrStageArgs` (audio in, caption updates out). More
    processes (a meeting browser feeding the capture) join with `add_stage` before `run()`.
    """

    def __init__(
        self,
        config: Config,
        out_dir: Path | None = None,
        stem: str | None = None,
        on_update: Callable[[CaptionUpdate], None] | None = None,
        on_start: Callable[[Supervisor], None] | None = None,
        asr_entry: AsrEntry = asr_stage_main,
    ) -> None:
        self.config = config
        self.out_dir = Path(out_dir if out_dir is not None else config.outputs.dir)
        self.stem = stem or f"{config.audio.stream_id}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.on_start = on_start
        self.stage_context: SpawnContext = mp.get_context("spawn")
        self.stop_event = self.stage_context.Event()
        """Set when the bot stops: capture, ASR and extra stages end."""
        self._video_stop = self.stage_context.Event()
        self._origin = self.stage_context.Value("d", 0.0)
        self._origin_wall = 0.0
        self._stop_requested = threading.Event()
        self._error: str | None = None
        self._reports: dict[str, StageReport] = {}
        self._files: dict[str, LiveCaptionFiles] = {}
        self._written: dict[str, dict[str, Path]] = {}
        self._overlay: OverlayServer | None = None
        self.relay = AudioRelay(config.audio.queue_s)
        self.router = CaptionRouter(self._open_stream_outputs, on_update=on_update)
        self.asr = Stage("asr", asr_entry, self._asr_args, self.stage_context)
        self.capture = Stage("capture", capture_stage_main, self._capture_args, self.stage_context)
        self.compositor = (
            Stage(
                "compositor",
                compositor_stage_main,
                self._compositor_args,
                self.stage_context,
                restart_on_clean_exit=True,
            )
            if wants_video(config)
            else None
        )
        self.extra_stages: list[Stage[Any]] = []
        self._event_handlers: dict[str, Callable[[object], None]] = {}

    # -- control ----------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop soon (safe from a signal handler or another thread)."""
        self._stop_requested.set()

    def add_stage(
        self,
        name: str,
        entry: Callable[[ArgsT], None],
        make_args: Callable[[SpawnContext], ArgsT],
        restart_on_clean_exit: bool = False,
        on_event: Callable[[object], None] | None = None,
    ) -> Stage[ArgsT]:
        """One more process, started after capture, restarted like it when it fails, stopped
        with the bot. `make_args(context)` builds its frozen arguments with fresh queues from
        `context` (an `events` queue among them) for each start; the process should end once
        `stop_event` is set. Its events other than StageReport/StageError go to `on_event`
        (called in the supervisor's loop)."""
        stage = Stage(name, entry, make_args, self.stage_context, restart_on_clean_exit)
        self.extra_stages.append(stage)
        if on_event is not None:
            self._event_handlers[name] = on_event
        return stage

    @property
    def stages(self) -> dict[str, Stage[Any]]:
        """Every stage of this bot by name (started or not)."""
        stages: list[Stage[Any]] = [self.asr, self.capture]
        if self.compositor is not None:
            stages.append(self.compositor)
        return {stage.name: stage for stage in [*stages, *self.extra_stages]}

    @property
    def streams(self) -> dict[str, StreamRecord]:
        return self.router.streams

    @property
    def overlay_url(self) -> str | None:
        return self._overlay.url if self._overlay is not None else None

    def overlay_page(self, page: str) -> str | None:
        """The URL of an overlay page (with the token when one is set)."""
        return self._overlay.page_url(page) if self._overlay is not None else None

    # -- run --------------------------------------------------------------------------------------

    def run(self) -> PipelineResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._start_overlay()
        for output in self._shared_outputs():
            self.router.share(output)
        previous_handlers = self._install_signal_handlers()
        try:
            if self._start_stages():
                if self.on_start is not None:
                    self.on_start(self)
                self._loop()
        finally:
            self._shutdown()
            self._restore_signal_handlers(previous_handlers)
        return PipelineResult(
            streams=self.router.streams,
            outputs=self._written,
            reports=self._reports,
            restarts={
                name: stage.restarts
                for name, stage in self.stages.items()
                if stage.process is not None
            },
            error=self._error,
            dropped_caption_updates=self.router.dropped_caption_updates,
            dropped_audio=self.relay.dropped,
            overlay_url=self.overlay_url,
        )

    def _start_stages(self) -> bool:
        self.asr.start()
        if not self._wait_for_asr():
            return False
        self._origin_wall = time.time()
        self._origin.value = time.monotonic()
        self.capture.start()
        for stage in self.extra_stages:
            stage.start()
        if self.compositor is not None:
            self.compositor.start()
        return True

    def _wait_for_asr(self) -> bool:
        """Let the engine load before audio flows, so captions start in real time."""
        while "asr" not in self._reports:
            if self._stop_requested.is_set() or self._error is not None:
                return False
            if self.asr.exited:
                self._take_events()
                if self._error is None:
                    self._error = (
                        f"the ASR worker exited while loading (code {self.asr.exitcode}); "
                        "run with -v for details"
                    )
                return False
            time.sleep(POLL_S)
            self._take_events()
        return True

    # -- the arguments of each start of a stage (fresh queues every time) -----------------------

    def _asr_args(self, context: SpawnContext) -> AsrStageArgs:
        chunk_s = self.config.audio.chunk_s
        resume = {sid: tuple(record.words[-200:]) for sid, record in self.router.streams.items()}
        return AsrStageArgs(
            config=self.config,
            chunks=context.Queue(maxsize=max(2, math.ceil(ASR_QUEUE_S / chunk_s))),
            updates=context.Queue(),
            events=context.Queue(),
            stop=self.stop_event,
            origin=self._origin,
            resume=resume,
        )

    def _capture_args(self, context: SpawnContext) -> CaptureStageArgs:
        return CaptureStageArgs(
            config=self.config.audio,
            chunks=context.Queue(),
            events=context.Queue(),
            stop=self.stop_event,
            origin=self._origin.value,
        )

    def _compositor_args(self, context: SpawnContext) -> CompositorStageArgs:
        return CompositorStageArgs(
            config=self.config,
            captions=context.Queue(maxsize=CAPTION_QUEUE),
            events=context.Queue(),
            stop=self._video_stop,
        )

    # -- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        audio_done_at: float | None = None
        while not self._stop_requested.is_set() and self._error is None:
            self._take_events()
            self._relay_audio()
            self._route_updates(timeout=POLL_S)
            if audio_done_at is not None:
                if time.monotonic() - audio_done_at >= LINGER_S:
                    return
                continue
            if self.asr.exited:
                self._route_updates(timeout=0.0)
                self._take_events()
                if self._error is not None:
                    return
                if self.asr.exitcode == 0:
                    logger.info("all audio captioned")
                    audio_done_at = time.monotonic()
                    if self.compositor is None:
                        return
                    continue
                if self._restart(self.asr):
                    streams = self.router.streams.items()
                    self.relay.replay_uncommitted({s: resume_from(r.words) for s, r in streams})
            for stage in [self.capture, *self.extra_stages, self.compositor]:
                if stage is not None and stage.failed and self._error is None:
                    self._restart(stage)

    def _restart(self, stage: Stage[Any]) -> bool:
        code = stage.exitcode
        if not stage.policy.may_restart():
            self._error = (
                f"the {stage.name} process keeps failing (exit code {code}); "
                "run with -v for details"
            )
            return False
        stage.start()
        logger.warning(
            "%s process exited with code %s; restarted it (restart %d)",
            stage.name,
            code,
            stage.restarts,
        )
        return True

    def _relay_audio(self) -> None:
        captured = self.capture.args.chunks if self.capture.args is not None else None
        asr = self.asr.args.chunks if self.asr.args is not None and not self.asr.exited else None
        self.relay.relay(captured, asr)
        for stream_id, dropped in self.relay.dropped.items():
            files = self._files.get(stream_id)
            if files is not None:
                files.update_stats(_dropped_stats(dropped))

    def _route_updates(self, timeout: float) -> None:
        updates = self.asr.args.updates if self.asr.args is not None else None
        if updates is None:
            time.sleep(timeout)
            return
        compositor = self.compositor
        captions = compositor.args.captions if compositor is not None and compositor.args else None
        self.router.drain(updates, captions, timeout)

    def _take_events(self) -> None:
        for stage in self.stages.values():
            for event in stage.events():
                if isinstance(event, StageError):
                    if self._error is None:
                        self._error = event.message
                elif isinstance(event, StageReport):
                    self._reports[event.stage] = event
                elif isinstance(event, CaptionsDrawn):
                    self.router.record_drawn(event, self._origin_wall)
                elif stage.name in self._event_handlers:
                    self._event_handlers[stage.name](event)

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

    def _shared_outputs(self) -> list[CaptionOutput]:
        shared: list[CaptionOutput] = []
        if self._overlay is not None:
            shared.append(OverlayOutput(self._overlay))
        return shared + caption_api_outputs(self.config)

    def _open_stream_outputs(self, stream_id: str) -> list[CaptionOutput]:
        """A stream's caption files: `<stem>.*` for the first stream, `<stem>-<stream>.*` for
        every other one."""
        stem = self.stem if not self._files else f"{self.stem}-{stream_id}"
        files = LiveCaptionFiles(
            self.out_dir,
            stem,
            tuple(self.config.outputs.formats),
            caption_file_meta(self.config, stream_id),
        )
        files.update_stats(_dropped_stats(self.relay.dropped.get(stream_id, DroppedAudio())))
        self._files[stream_id] = files
        self._written[stream_id] = caption_file_paths(self.config, self.out_dir, stem)
        return [files]

    # -- stop -------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        self.stop_event.set()
        # The ASR stage commits what is shown when stopped: take those last updates.
        while self.asr.process is not None and not self.asr.exited:
            if time.monotonic() >= deadline:
                break
            self._route_updates(timeout=POLL_S)
        self._route_updates(timeout=0.0)
        self._video_stop.set()
        for stage in self.stages.values():
            stage.join(deadline)
        self._route_updates(timeout=0.0)
        self._take_events()
        for stream_id, files in self._files.items():
            files.update_stats(_dropped_stats(self.relay.dropped.get(stream_id, DroppedAudio())))
        self.router.close()
        if self._overlay is not None:
            self._overlay.stop()
        for stage in self.stages.values():
            stage.close_queues()

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


def _dropped_stats(dropped: DroppedAudio) -> dict[str, float | int]:
    return {"dropped_audio_chunks": dropped.chunks, "dropped_audio_s": round(dropped.seconds, 3)}
