"""The compositor process: video source + caption updates → captioned frames → sinks.

Frames run on a fixed schedule at `video.fps`. Caption updates are drained before each frame;
the caption strip is re-rendered only when the text changed. A frame that would be late (the
machine was busy) is skipped and counted, so the video never falls behind real time.
"""

from __future__ import annotations

import logging
import queue
import time
from multiprocessing.synchronize import Event

import numpy as np

from bot.config import Config
from bot.errors import CaptionbotError
from bot.messages import CaptionsDrawn, CaptionUpdate, StageError, StageReport
from bot.video.caption_board import CaptionBoard
from bot.video.captions import CaptionRenderer
from bot.video.sinks import VideoSink, create_sinks
from bot.video.sources import VideoSource, create_video_source

logger = logging.getLogger(__name__)

REPORT_EVERY_S = 5.0


class FrameTimes:
    """Milliseconds of work per frame (source read, blend, send): average and p90."""

    def __init__(self, keep: int = 3000) -> None:
        self._ms: list[float] = []
        self._keep = keep
        self.total_ms = 0.0
        self.count = 0

    def add(self, ms: float) -> None:
        self.total_ms += ms
        self.count += 1
        self._ms.append(ms)
        if len(self._ms) > self._keep:
            del self._ms[: len(self._ms) - self._keep]

    def summary(self) -> dict[str, float]:
        avg = self.total_ms / self.count if self.count else 0.0
        p90 = float(np.percentile(self._ms, 90)) if self._ms else 0.0
        return {"ms_per_frame_avg": round(avg, 3), "ms_per_frame_p90": round(p90, 3)}


class Compositor:
    """Draws the captions of the bot's stream(s) on the video and sends it to the sinks."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.video = config.video
        self.boards: dict[str, CaptionBoard] = {}
        self.renderer = CaptionRenderer(config.captions, self.video.width, self.video.height)
        self.frames = 0
        self.dropped_frames = 0
        self.times = FrameTimes()
        self._cpu_start = time.process_time()

    def run(self, updates: queue.Queue, stop: Event, events: queue.Queue) -> None:
        source: VideoSource | None = None
        sinks: list[VideoSink] = []
        try:
            source = create_video_source(self.video)
            source.open()
            sinks = create_sinks(
                self.config.sinks, self.video.width, self.video.height, self.video.fps
            )
            self._loop(source, sinks, updates, stop, events)
        except CaptionbotError as error:
            events.put(StageError("compositor", str(error)))
        finally:
            for sink in sinks:
                try:
                    sink.close()
                except Exception:
                    logger.exception("closing %s failed", sink.name)
            if source is not None:
                source.close()
            events.put(self.report(sinks))

    def _loop(
        self,
        source: VideoSource,
        sinks: list[VideoSink],
        updates: queue.Queue,
        stop: Event,
        events: queue.Queue,
    ) -> None:
        period = 1.0 / self.video.fps
        next_frame = time.monotonic()
        next_report = next_frame + REPORT_EVERY_S
        while not stop.is_set():
            now = time.monotonic()
            if now < next_frame:
                stop.wait(next_frame - now)
                continue
            late = int((now - next_frame) / period)
            if late:
                self.dropped_frames += late
                next_frame += late * period
            next_frame += period
            started = time.perf_counter()
            changed = self._take_updates(updates)
            frame = source.read()
            self.renderer.draw(frame)
            for sink in sinks:
                sink.send(frame, late)
            wall = time.time()
            self.frames += 1
            self.times.add((time.perf_counter() - started) * 1000)
            for board in changed:
                events.put(
                    CaptionsDrawn(
                        board.stream_id, wall, board.committed_words, board.tentative_words
                    )
                )
            if now >= next_report:
                events.put(self.report(sinks))
                next_report = now + REPORT_EVERY_S

    def _take_updates(self, updates: queue.Queue) -> list[CaptionBoard]:
        changed: dict[str, CaptionBoard] = {}
        while True:
            try:
                update: CaptionUpdate = updates.get_nowait()
            except queue.Empty:
                break
            board = self.boards.get(update.stream_id)
            if board is None:
                board = self.boards[update.stream_id] = CaptionBoard(update.stream_id)
            if board.apply(update):
                changed[board.stream_id] = board
        if changed:
            # One caption strip: the most recently changed stream speaks.
            board = list(changed.values())[-1]
            self.renderer.set_text(board.committed, board.tentative, board.speaker)
        return list(changed.values())

    def report(self, sinks: list[VideoSink] | None = None) -> StageReport:
        sink_drops = sum(s.dropped for s in sinks or [])
        return StageReport(
            stage="compositor",
            wall_time=time.time(),
            counters={
                "frames": float(self.frames),
                "dropped_frames": float(self.dropped_frames),
                "sink_dropped_frames": float(sink_drops),
                "caption_renders": float(self.renderer.renders),
                # all threads of this process (drawing, blending, feeding ffmpeg), per frame
                "cpu_ms_per_frame": round(
                    1000 * (time.process_time() - self._cpu_start) / max(self.frames, 1), 3
                ),
                **self.times.summary(),
            },
        )


def compositor_main(config: Config, updates: queue.Queue, stop: Event, events: queue.Queue) -> None:
    """Process entry of the compositor process."""
    try:
        compositor = Compositor(config)
    except CaptionbotError as error:
        events.put(StageError("compositor", str(error)))
        return
    compositor.run(updates, stop, events)
