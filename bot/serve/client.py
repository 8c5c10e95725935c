"""The remote ASR stage of `captionbot run --server URL`: audio to a `captionbot serve`,
caption updates back, in place of the local ASR worker.

It takes the same arguments as the local ASR stage (`asr_stage_main`), so the supervisor swaps one
for the other. Each stream is one session. When the service goes away (restart, network), the
stage reconnects with exponential backoff (0.5 s doubling up to `server.reconnect_max_s`, or
the service's "retry after N s") and resumes: the new session starts at the audio a few
seconds before the last committed word (bot/streaming/resume.py), with the last committed
words as history (prompt, and the words it re-hears are not committed again), so nothing
committed repeats and nothing uncommitted is lost. Audio captured
meanwhile waits locally, up to `audio.queue_s` (beyond it the oldest is dropped, counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np

from bot.config import Config
from bot.messages import (
    SAMPLE_RATE,
    AudioChunk,
    CaptionUpdate,
    CommittedWord,
    EndOfStream,
    StageError,
    StageReport,
)
from bot.serve.protocol import (
    CLOSE_TRY_LATER,
    MAX_HISTORY_WORDS,
    encode_frame,
    hello_message,
    update_from_message,
)
from bot.streaming.resume import resume_from

if TYPE_CHECKING:
    from bot.runtime.asr_stage import AsrStageArgs

logger = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
CONNECT_TIMEOUT_S = 10.0
FINAL_WAIT_S = 10.0
REPORT_EVERY_S = 5.0
POLL_S = 0.05
GAP_TOLERANCE_S = 0.02
MAX_FILLED_GAP_S = 60.0
# Audio sent but not yet committed is kept this long for a resume.
REPLAY_S = 30.0
FRAME_S = 0.1


class ServiceRefused(Exception):
    """The service will not take this session (bad token, bad hello): no point retrying."""


@dataclass
class _Stream:
    stream_id: str
    session: str
    pending: deque[AudioChunk] = field(default_factory=deque)
    sent: deque[AudioChunk] = field(default_factory=deque)
    history: list[CommittedWord] = field(default_factory=list)
    next_start: float | None = None
    ended: bool = False
    end_sent: bool = False
    finished: bool = False
    dropped_chunks: int = 0
    speaker: str | None = None
    connections: int = 0
    reconnects: int = 0
    """Connections after the first: the session resumed on the service."""

    @property
    def backlog_s(self) -> float:
        return sum(len(c.samples) for c in self.pending) / SAMPLE_RATE

    def resume_point(self) -> None:
        """Put the sent audio from a little before the last committed word (see
        bot/streaming/resume.py) back in front of the queue."""
        replay_from = resume_from(self.history)
        replay = [c for c in self.sent if c.start + len(c.samples) / SAMPLE_RATE > replay_from]
        self.sent.clear()
        self.pending.extendleft(reversed(replay))


class RemoteAsr:
    """Runs the streams of one bot on a `captionbot serve` (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        resume: Mapping[str, tuple[CommittedWord, ...]] | None = None,
    ) -> None:
        if not config.server.url:
            raise ValueError("RemoteAsr needs server.url")
        self.config = config
        self.url = config.server.url
        self._resume = dict(resume or {})
        self._streams: dict[str, _Stream] = {}
        self._max_pending = max(4, int(config.audio.queue_s / max(config.audio.chunk_s, 0.02)))
        self.connected_once = False
        self.updates_received = 0
        self.audio_sent_s = 0.0
        self.service_dropped_s = 0.0

    # -- the stage's entry ------------------------------------------------------------------------

    def run(
        self,
        chunks: Any,
        updates: Any,
        stop: Any,
        events: Any,
    ) -> None:
        """Take chunks and put updates (queues of the supervisor) until every stream finished
        or `stop` is set."""
        asyncio.run(self._main(chunks, updates, stop, events))

    async def _main(self, chunks: Any, updates: Any, stop: Any, events: Any) -> None:
        loop = asyncio.get_running_loop()
        tasks: dict[str, asyncio.Task] = {}
        async with aiohttp.ClientSession() as http:
            try:
                await self._probe(http)
            except OSError as error:
                events.put(StageError("asr", self._unreachable(error)))
                return
            events.put(self.report())
            next_report = time.monotonic() + REPORT_EVERY_S
            while not stop.is_set():
                message = await loop.run_in_executor(None, _get, chunks, POLL_S)
                if message is not None:
                    stream = self._take(message)
                    if stream.stream_id not in tasks:
                        tasks[stream.stream_id] = asyncio.ensure_future(
                            self._session(http, stream, updates, stop)
                        )
                for task in list(tasks.values()):
                    if task.done():
                        error = task.exception()
                        if error is not None:
                            events.put(StageError("asr", str(error)))
                            return
                if tasks and all(t.done() for t in tasks.values()):
                    break
                if time.monotonic() >= next_report:
                    events.put(self.report())
                    next_report = time.monotonic() + REPORT_EVERY_S
            for stream in self._streams.values():
                stream.ended = True
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*tasks.values(), return_exceptions=True), FINAL_WAIT_S
                )
            for task in tasks.values():
                task.cancel()
        events.put(self.report())

    def report(self) -> StageReport:
        return StageReport(
            stage="asr",
            wall_time=time.time(),
            counters={
                "streams": float(len(self._streams)),
                "remote": 1.0,
                "updates": float(self.updates_received),
                "audio_s": round(self.audio_sent_s, 3),
                "reconnects": float(sum(s.reconnects for s in self._streams.values())),
                "dropped_chunks": float(sum(s.dropped_chunks for s in self._streams.values())),
                "service_dropped_s": self.service_dropped_s,
            },
        )

    async def _probe(self, http: aiohttp.ClientSession) -> None:
        """Fail fast, with a clear line, when nothing listens at the URL."""
        health = self.url.replace("ws://", "http://").replace("wss://", "https://")
        health = health.rsplit("/ws", 1)[0] + "/healthz"
        try:
            async with http.get(health, timeout=aiohttp.ClientTimeout(CONNECT_TIMEOUT_S)):
                pass
        except (aiohttp.ClientError, TimeoutError) as error:
            raise OSError(str(error)) from None

    def _unreachable(self, error: BaseException) -> str:
        return (
            f"cannot reach captionbot serve at {self.url} ({error}): start it there, "
            "or fix server.url (--server)"
        )

    # -- audio in ---------------------------------------------------------------------------------

    def _take(self, message: AudioChunk | EndOfStream) -> _Stream:
        stream = self._streams.get(message.stream_id)
        if stream is None:
            # One session per stream (a joined meeting has one per participant).
            prefix = self.config.server.session or _hostname()
            session = _session_name(f"{prefix}-{message.stream_id}")
            stream = self._streams[message.stream_id] = _Stream(message.stream_id, session)
            stream.history = list(self._resume.pop(message.stream_id, ()))
        if isinstance(message, EndOfStream):
            stream.ended = True
            return stream
        if stream.next_start is not None:
            gap = message.start - stream.next_start
            if GAP_TOLERANCE_S < gap <= MAX_FILLED_GAP_S:
                silence = np.zeros(round(gap * SAMPLE_RATE), dtype=np.float32)
                stream.pending.append(AudioChunk(message.stream_id, silence, stream.next_start))
        if message.speaker:
            stream.speaker = message.speaker
        stream.pending.append(message)
        stream.next_start = message.start + len(message.samples) / SAMPLE_RATE
        while len(stream.pending) > self._max_pending:
            stream.pending.popleft()
            stream.dropped_chunks += 1
            if stream.dropped_chunks % 50 == 1:
                logger.warning(
                    "service unreachable: %d audio chunks of %s dropped",
                    stream.dropped_chunks,
                    stream.stream_id,
                )
        return stream

    # -- one stream's sessions --------------------------------------------------------------------

    async def _session(
        self, http: aiohttp.ClientSession, stream: _Stream, updates: Any, stop: Any
    ) -> None:
        backoff = FIRST_BACKOFF_S
        while not stream.finished:
            wait = backoff
            try:
                retry_after = await self._connect_once(http, stream, updates, stop)
                backoff = FIRST_BACKOFF_S
                if retry_after is None:
                    continue
                wait = retry_after
            except ServiceRefused:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                reason = str(error) or f"no answer within {CONNECT_TIMEOUT_S:g} s"
                logger.warning(
                    "service %s unavailable (%s); retrying in %.1f s", self.url, reason, wait
                )
                backoff = min(backoff * 2, self.config.server.reconnect_max_s)
            if stream.finished or (stop.is_set() and not stream.pending):
                return
            await asyncio.sleep(wait)

    async def _connect_once(
        self, http: aiohttp.ClientSession, stream: _Stream, updates: Any, stop: Any
    ) -> float | None:
        """One connection: resume, stream, read updates. Returns a wait before the next try
        (the service was busy), or None to reconnect at once (it went away after serving)."""
        stream.resume_point()
        start_s = stream.pending[0].start if stream.pending else (stream.next_start or 0.0)
        server = self.config.server
        # A service shutting down may accept the connection and never answer the handshake
        # (it hung 60 s, until aiohttp's shutdown timeout): bounded, it is retried.
        connecting = http.ws_connect(
            self.url, timeout=aiohttp.ClientWSTimeout(ws_close=5.0), heartbeat=15.0
        )
        async with await asyncio.wait_for(connecting, CONNECT_TIMEOUT_S) as ws:
            await ws.send_str(
                hello_message(
                    stream.session,
                    task=self.config.task,
                    language=self.config.language_or_none,
                    token=server.token,
                    start_s=start_s,
                    history=stream.history[-MAX_HISTORY_WORDS:],
                    backlog_s=stream.backlog_s if stream.connections else 0.0,
                )
            )
            first = await ws.receive(timeout=CONNECT_TIMEOUT_S)
            reply = _json(first)
            if reply.get("type") == "busy":
                retry = float(reply.get("retry_after_s", 30))
                logger.warning("service busy: %s", reply.get("message", "retry later"))
                return min(retry, 60.0)
            if reply.get("type") != "ready":
                message = reply.get("message") or first.extra or "refused"
                if ws.close_code == CLOSE_TRY_LATER:
                    return FIRST_BACKOFF_S
                raise ServiceRefused(
                    f"captionbot serve at {self.url} refused the session: {message}"
                )
            if stream.connections:
                stream.reconnects += 1
                logger.info("session %s resumed at %.1f s", stream.session, start_s)
            stream.connections += 1
            self.connected_once = True
            sender = asyncio.ensure_future(self._send(ws, stream, stop))
            try:
                await self._receive(ws, stream, updates)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, OSError):
                    await sender
        return None

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, stream: _Stream, stop: Any) -> None:
        sequence = 0
        frame = int(FRAME_S * SAMPLE_RATE)
        while True:
            if stream.pending:
                chunk = stream.pending.popleft()
                for offset in range(0, len(chunk.samples), frame):
                    await ws.send_bytes(
                        encode_frame(sequence, chunk.samples[offset : offset + frame])
                    )
                    sequence += 1
                stream.sent.append(chunk)
                self.audio_sent_s += len(chunk.samples) / SAMPLE_RATE
                horizon = chunk.start - REPLAY_S
                while stream.sent and stream.sent[0].start < horizon:
                    stream.sent.popleft()
                continue
            if (stream.ended or stop.is_set()) and not stream.end_sent:
                await ws.send_str(json.dumps({"type": "end"}))
                stream.end_sent = True
            await asyncio.sleep(POLL_S)

    async def _receive(
        self, ws: aiohttp.ClientWebSocketResponse, stream: _Stream, updates: Any
    ) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = _json(message)
            kind = data.get("type")
            if kind == "update":
                update = update_from_message(data, stream.stream_id, stream.speaker)
                stream.history.extend(update.committed)
                del stream.history[: -MAX_HISTORY_WORDS * 2]
                final = update.final and stream.end_sent
                drained = update.final and not final
                if drained:
                    # The service drained (restart): these words are committed; we resume.
                    update = CaptionUpdate(
                        update.stream_id, update.t_s, update.committed, (), update.language
                    )
                self.updates_received += 1
                updates.put(update)
                if final:
                    stream.finished = True
                    return
                if drained:
                    # Its session is over: close now rather than wait for a service that is
                    # shutting down to close the socket (it took up to 60 s under load).
                    return
            elif kind == "dropped":
                self.service_dropped_s = float(data.get("total_s", 0.0) or 0.0)
                logger.warning("service: %s", data.get("message"))
            elif kind == "error":
                logger.warning("service closed the session: %s", data.get("message"))
            elif kind == "draining":
                logger.info("service is restarting; the session will resume")


def remote_asr_stage_main(args: AsrStageArgs) -> None:
    """Process entry in place of the local ASR stage (bot/runtime/asr_stage.py), same args."""
    RemoteAsr(args.config, args.resume).run(args.chunks, args.updates, args.stop, args.events)


def _get(chunks: Any, timeout: float) -> AudioChunk | EndOfStream | None:
    try:
        return chunks.get(timeout=timeout)
    except queue.Empty:
        return None
    except (OSError, ValueError, EOFError):  # the supervisor closed the queue
        time.sleep(timeout)
        return None


def _json(message: aiohttp.WSMessage) -> dict[str, Any]:
    if message.type != aiohttp.WSMsgType.TEXT:
        return {}
    try:
        data = json.loads(message.data)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _hostname() -> str:
    return _session_name(socket.gethostname())[:40] or "bot"


def _session_name(text: str) -> str:
    """`text` in the characters a session name may hold (bot/serve/protocol.py SESSION_NAME)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_.-") else "-" for c in text)[:64]
