"""Many sessions, one engine: the service's batched ASR loop on its own thread.

Sessions push audio from the network side (any thread); the engine thread takes what every
session received, runs one `StreamingTranscriber` round (windows of all sessions in one
batched engine call) and hands each session its own caption updates through its callback.
Each session's inbox is bounded: audio that waits longer than `queue_s` (the engine is stuck
behind) drops that session's oldest samples, counted and reported to it, and is replaced by
silence on the stream clock so later caption times stay right. Other sessions are untouched.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bot.asr.engine import DEFAULT_TASK, Engine, Hypothesis, Task, Window
from bot.config import ServeConfig
from bot.messages import SAMPLE_RATE, AudioChunk, CaptionUpdate, CommittedWord, EndOfStream
from bot.serve.memory import HeapReleaser
from bot.streaming.options import StreamingOptions
from bot.streaming.transcriber import StreamingTranscriber

logger = logging.getLogger(__name__)

IDLE_WAIT_S = 0.02
DRAINING_RETRY_S = 2.0
LATENCY_WINDOW = 2000
# Round time is smoothed over about this many rounds before it counts as overload.
ROUND_SMOOTHING = 0.2
HEAP_RELEASE_EVERY_S = 60.0
# From this many sessions with audio in a round, their audio is fed (VAD) on a thread pool.
PARALLEL_FEED_SESSIONS = 8
FEED_THREADS = min(8, len(os.sched_getaffinity(0)))

UpdateCallback = Callable[[CaptionUpdate], None]
DropCallback = Callable[[float, float], None]


class ServiceBusy(Exception):
    """No room for another real-time session now; try again after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class HubLimits:
    max_sessions: int = 8
    """Sessions served at once (admission); more get ServiceBusy."""
    queue_s: float = 10.0
    """Audio a session may have waiting for the engine before its oldest is dropped."""
    busy_round_s: float = 2.0
    """A smoothed engine round longer than this means full: new sessions are refused."""
    retry_after_s: float = 30.0

    @classmethod
    def of(cls, serve: ServeConfig, max_sessions: int) -> HubLimits:
        return cls(
            max_sessions=max_sessions,
            queue_s=serve.session_queue_s,
            busy_round_s=serve.busy_round_s,
            retry_after_s=serve.retry_after_s,
        )


@dataclass
class _Session:
    name: str
    task: Task
    language: str | None
    start_s: float
    history: tuple[CommittedWord, ...]
    on_update: UpdateCallback
    on_drop: DropCallback | None
    chunks: deque[np.ndarray] = field(default_factory=deque)
    queued: int = 0
    gap: int = 0
    received: int = 0
    dropped_s: float = 0.0
    reported_drop_s: float = 0.0
    ended: bool = False
    opened: bool = False
    origin: float | None = None
    backlog_s: float = 0.0
    allowance: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    words: int = 0
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class SessionView:
    """What /metrics and the sessions API show of a session."""

    name: str
    task: str
    language: str | None
    audio_s: float
    queued_s: float
    dropped_s: float
    words: int
    latency_p50: float | None
    latency_p90: float | None


@dataclass(frozen=True)
class HubSnapshot:
    sessions: tuple[SessionView, ...]
    max_sessions: int
    rounds: int
    decode_s: float
    batch_sizes: dict[int, int]
    round_s: float
    dropped_s: float
    draining: bool


class SessionHub:
    """Owns the engine and the transcriber; everything touching them runs on one thread."""

    def __init__(
        self,
        engine: Engine,
        options: StreamingOptions | None = None,
        limits: HubLimits | None = None,
        heap: HeapReleaser | None = None,
    ) -> None:
        """`heap`, if given, is trimmed every `HEAP_RELEASE_EVERY_S` from the engine thread."""
        self.engine = engine
        self._heap = heap
        self._heap_released = time.monotonic()
        self.options = options or StreamingOptions()
        self.limits = limits or HubLimits()
        self._metered = _MeteredEngine(engine)
        self._transcriber = StreamingTranscriber(self._metered, self.options, clock="wall")
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._draining = False
        self._round_s = 0.0
        self._batch_sizes: dict[int, int] = {}
        self._dropped_closed_s = 0.0
        self._failure: BaseException | None = None
        self._flush_requested = False
        self._feeder: ThreadPoolExecutor | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="serve-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        if self._feeder is not None:
            self._feeder.shutdown(wait=False)

    @property
    def failure(self) -> BaseException | None:
        """The exception that stopped the engine thread, if one did."""
        return self._failure

    # -- sessions (any thread) --------------------------------------------------------------------

    def open(
        self,
        name: str,
        on_update: UpdateCallback,
        task: Task = DEFAULT_TASK,
        language: str | None = None,
        start_s: float = 0.0,
        history: Sequence[CommittedWord] = (),
        on_drop: DropCallback | None = None,
        backlog_s: float = 0.0,
    ) -> None:
        """Admit a session, or raise ServiceBusy (full, overloaded or draining) or ValueError
        (a session of that name is live)."""
        with self._lock:
            if self._draining:
                # Most often a restart: come back soon rather than after a full retry period.
                raise ServiceBusy("service is shutting down", DRAINING_RETRY_S)
            if name in self._sessions:
                raise ValueError(f"session '{name}' is already connected")
            if len(self._sessions) >= self.limits.max_sessions:
                raise ServiceBusy(
                    f"busy: all {self.limits.max_sessions} real-time sessions in use",
                    self.limits.retry_after_s,
                )
            if self._round_s > self.limits.busy_round_s:
                raise ServiceBusy(
                    f"busy: engine rounds take {self._round_s:.1f} s, sessions would lag",
                    self.limits.retry_after_s,
                )
            session = _Session(name, task, language, start_s, tuple(history), on_update, on_drop)
            # A resuming client sends what it buffered while away at once: that is not the
            # engine falling behind, so it may queue on top of the real-time limit.
            session.backlog_s = backlog_s
            session.allowance = int(backlog_s * SAMPLE_RATE)
            self._sessions[name] = session

    def push(self, name: str, samples: np.ndarray) -> None:
        """Audio of a session; beyond its queue, its oldest waiting samples are dropped."""
        with self._lock:
            session = self._sessions.get(name)
            if session is None or session.ended:
                return
            limit = int(self.limits.queue_s * SAMPLE_RATE) + session.allowance
            if session.origin is None:
                # The first sample was captured backlog_s ago: latency counts from capture.
                session.origin = time.monotonic() - session.start_s - session.backlog_s
            session.chunks.append(samples)
            session.queued += len(samples)
            session.received += len(samples)
            while session.queued > limit and len(session.chunks) > 1:
                oldest = session.chunks.popleft()
                session.queued -= len(oldest)
                session.gap += len(oldest)
                session.dropped_s += len(oldest) / SAMPLE_RATE
        self._wake.set()

    def end(self, name: str) -> None:
        """No more audio: the session finalizes (decodes what it holds) and finishes."""
        with self._lock:
            session = self._sessions.get(name)
            if session is not None:
                session.ended = True
        self._wake.set()

    def wait_finished(self, name: str, timeout: float) -> bool:
        with self._lock:
            session = self._sessions.get(name)
        return session is None or session.finished.wait(timeout)

    def drain(self, timeout: float) -> None:
        """Refuse new sessions, end every session, and wait for their final updates; what is
        still pending after `timeout` is committed as it stands."""
        with self._lock:
            self._draining = True
            names = list(self._sessions)
        for name in names:
            self.end(name)
        deadline = time.monotonic() + timeout
        for name in names:
            self.wait_finished(name, max(deadline - time.monotonic(), 0.0))
        self._flush_requested = True
        self._wake.set()
        for name in names:
            self.wait_finished(name, 5.0)

    def snapshot(self) -> HubSnapshot:
        with self._lock:
            views = tuple(_view(s) for s in self._sessions.values())
            dropped = self._dropped_closed_s + sum(s.dropped_s for s in self._sessions.values())
            return HubSnapshot(
                sessions=views,
                max_sessions=self.limits.max_sessions,
                rounds=self._transcriber.rounds,
                decode_s=self._transcriber.decode_s,
                batch_sizes=dict(self._batch_sizes),
                round_s=self._round_s,
                dropped_s=dropped,
                draining=self._draining,
            )

    # -- the engine thread ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                backlog = self._take_audio()
                self._release_heap()
                if self._flush_requested:
                    self._deliver(self._transcriber.flush())
                    self._flush_requested = False
                if self._transcriber.pending_work() or self._transcriber.active or backlog:
                    started = time.monotonic()
                    updates = self._round()
                    self._deliver(updates)
                    elapsed = time.monotonic() - started
                    self._round_s += ROUND_SMOOTHING * (elapsed - self._round_s)
                    if not updates and not self._transcriber.pending_work() and not backlog:
                        self._wake.wait(IDLE_WAIT_S)
                        self._wake.clear()
                else:
                    self._round_s *= 1 - ROUND_SMOOTHING
                    self._wake.wait(IDLE_WAIT_S * 5)
                    self._wake.clear()
        except BaseException as error:  # the service reports it and stops admitting
            logger.exception("the engine thread stopped")
            self._failure = error
            with self._lock:
                self._draining = True
                sessions = list(self._sessions.values())
            for session in sessions:
                session.finished.set()

    def _release_heap(self) -> None:
        if self._heap is None or time.monotonic() - self._heap_released < HEAP_RELEASE_EVERY_S:
            return
        self._heap.release()
        self._heap_released = time.monotonic()

    def _round(self) -> list[CaptionUpdate]:
        self._metered.last_batch = 0
        updates = self._transcriber.step()
        batch = self._metered.last_batch
        if batch:
            self._batch_sizes[batch] = self._batch_sizes.get(batch, 0) + 1
        return updates

    def _take_audio(self) -> bool:
        """Hand queued audio to the transcriber; True if some stays queued (a burst)."""
        with self._lock:
            work = []
            # A round takes at most half a buffer of each session's audio: a burst (a client
            # resuming with what it held) is decoded in steps, not as one long window that
            # Whisper would only partly transcribe; the rest waits here (it is not dropped).
            most = max(int(self.options.max_buffer_s / 2 * SAMPLE_RATE), 1)
            backlog = False
            for session in self._sessions.values():
                chunks: list[np.ndarray] = []
                taken = 0
                while session.chunks and (not chunks or taken + len(session.chunks[0]) <= most):
                    chunks.append(session.chunks.popleft())
                    taken += len(chunks[-1])
                session.allowance = max(session.allowance - taken, 0)
                session.queued -= taken
                gap, session.gap = session.gap, 0
                work.append((session, chunks, gap, session.ended and not session.chunks))
                backlog = backlog or bool(session.chunks)
        feeds: list[tuple[_Session, list[AudioChunk | EndOfStream]]] = []
        for session, chunks, gap, ended in work:
            if not session.opened:
                if not chunks and not gap and not ended:
                    continue
                self._transcriber.open(
                    session.name,
                    session.task,
                    session.language,
                    origin=session.origin if session.origin is not None else time.monotonic(),
                    start=session.start_s,
                    history=session.history,
                )
                session.opened = True
            # One chunk per round (the dropped stretch as silence first): the VAD runs once
            # per session and round, not once per network frame.
            parts = ([np.zeros(gap, dtype=np.float32)] if gap else []) + chunks
            messages: list[AudioChunk | EndOfStream] = []
            if parts:
                messages.append(AudioChunk(session.name, np.concatenate(parts), 0.0))
            if ended:
                messages.append(EndOfStream(session.name))
            feeds.append((session, messages))
        self._feed(feeds)
        for session, _ in feeds:
            dropped = session.dropped_s + self._transcriber.stats(session.name).dropped_audio_s
            if dropped > session.reported_drop_s and session.on_drop is not None:
                session.on_drop(dropped - session.reported_drop_s, dropped)
                session.reported_drop_s = dropped
        return backlog

    def _feed(self, feeds: list[tuple[_Session, list[AudioChunk | EndOfStream]]]) -> None:
        """Hand each session its round's audio; with many sessions on several cores, side by
        side (each stream's VAD is its own state; the ONNX runtime releases the GIL)."""

        def feed(messages: list[AudioChunk | EndOfStream]) -> None:
            for message in messages:
                self._transcriber.feed(message)

        busy = [messages for _, messages in feeds if messages]
        if len(busy) < PARALLEL_FEED_SESSIONS or FEED_THREADS < 2:
            for messages in busy:
                feed(messages)
            return
        if self._feeder is None:
            self._feeder = ThreadPoolExecutor(FEED_THREADS, thread_name_prefix="serve-feed")
        list(self._feeder.map(feed, busy))

    def _deliver(self, updates: list[CaptionUpdate]) -> None:
        for update in updates:
            session = self._sessions.get(update.stream_id)
            if session is None:
                continue
            session.latencies.extend(w.emitted_s - w.end for w in update.committed)
            session.words += len(update.committed)
            try:
                session.on_update(update)
            except Exception:  # one session's broken callback must not stop the others
                logger.exception("session %s: update callback failed", session.name)
            if update.final:
                self._finish(session)

    def _finish(self, session: _Session) -> None:
        stats = self._transcriber.stats(session.name)
        self._transcriber.close(session.name)
        with self._lock:
            self._sessions.pop(session.name, None)
            self._dropped_closed_s += session.dropped_s + stats.dropped_audio_s
        session.finished.set()
        logger.info("session %s finished: %d words", session.name, session.words)


class _MeteredEngine:
    """The engine, remembering the size of its last batch (for /metrics)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.last_batch = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        self.last_batch = len(windows)
        return self._engine.transcribe(windows)


def _view(session: _Session) -> SessionView:
    latencies = np.array(session.latencies) if session.latencies else None
    return SessionView(
        name=session.name,
        task=session.task,
        language=session.language,
        audio_s=session.received / SAMPLE_RATE,
        queued_s=session.queued / SAMPLE_RATE,
        dropped_s=session.dropped_s,
        words=session.words,
        latency_p50=float(np.percentile(latencies, 50)) if latencies is not None else None,
        latency_p90=float(np.percentile(latencies, 90)) if latencies is not None else None,
    )
