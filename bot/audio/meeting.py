"""The meeting's audio as the capture process receives it from the page (bot/join/page_bot.js).

The page's init script reads every remote WebRTC audio track with an AudioWorklet at 16 kHz and
sends it to a WebSocket served here on 127.0.0.1: binary messages are a little-endian uint32
track key and float32 samples; text messages announce a track (`{"type": "track", "key",
"name"}`) or its end. Key 0 is the mixed audio of every track; other keys are one participant
each, and become a stream named after the participant (`meeting-alice`) so captions, files
and overlay carry the speaker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from aiohttp import WSMsgType, web

from bot.audio.sources import StreamSamples
from bot.errors import DeviceError
from bot.web import accept_websocket

logger = logging.getLogger(__name__)

# A participant's first audio waits this long for the page to tell their name (the tile that
# shows the name is usually attached a moment after the track arrives).
NAME_WAIT_S = 1.5
# Audio kept per track while nobody reads (a stalled capture must not grow memory).
MAX_BUFFER_S = 30.0


def stream_slug(name: str) -> str:
    """A stream-id-safe form of a display name: 'Bob Smith' → 'bob-smith'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:40] or "participant"


@dataclass
class _Track:
    key: int
    seen: float
    name: str | None = None
    stream_id: str | None = None
    parts: list[np.ndarray] = field(default_factory=list)
    buffered: int = 0
    ended: bool = False  # the page said so: late audio is dropped, the rest is still read


class MeetingAudioSource:
    """Remote audio of the meeting page: mixed, or one stream per participant."""

    def __init__(self, port: int, chunk_s: float, base_stream_id: str) -> None:
        self.port = port
        self.chunk_s = chunk_s
        self.base = base_stream_id
        self.name = f"meeting page audio on 127.0.0.1:{port}"
        self._lock = threading.Condition()
        self._tracks: dict[tuple[int, int], _Track] = {}
        self._stream_ids: dict[str, str] = {}  # participant name → stream id, across rejoins
        self._connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # -- AudioSource ------------------------------------------------------------------------------

    def open(self) -> None:
        if self._thread is not None:
            return
        started = threading.Event()
        failure: list[str] = []
        self._thread = threading.Thread(
            target=self._serve, args=(started, failure), name="meeting-audio", daemon=True
        )
        self._thread.start()
        started.wait(10)
        if failure:
            self._thread = None
            raise DeviceError(f"cannot listen for the meeting audio: {failure[0]}")

    def read(self) -> list[StreamSamples] | None:
        deadline = time.monotonic() + self.chunk_s
        with self._lock:
            while time.monotonic() < deadline:
                self._lock.wait(max(deadline - time.monotonic(), 0.0))
            return self._take()

    def close(self) -> None:
        if self._loop is not None and self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            try:
                future.result(timeout=3)
            except Exception:  # closing: nothing left to save
                logger.debug("meeting audio server did not stop cleanly", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=3)
        self._thread = None
        self._loop = self._runner = None

    # -- buffering --------------------------------------------------------------------------------

    def _take(self) -> list[StreamSamples]:
        out = []
        now = time.monotonic()
        for where, track in list(self._tracks.items()):
            if track.ended and not track.buffered:
                del self._tracks[where]
                continue
            if not track.buffered:
                continue
            if track.stream_id is None:
                unnamed = track.key != 0 and track.name is None and not track.ended
                if unnamed and now - track.seen < NAME_WAIT_S:
                    continue
                track.stream_id = self._stream_for(track)
            samples = np.concatenate(track.parts)
            track.parts, track.buffered = [], 0
            out.append(StreamSamples(track.stream_id, samples, track.name))
        return out

    def _stream_for(self, track: _Track) -> str:
        if track.key == 0:
            return self.base
        label = track.name or f"participant {track.key}"
        if label not in self._stream_ids:
            stream_id = f"{self.base}-{stream_slug(label)}"
            taken = set(self._stream_ids.values())
            number = 2
            while stream_id in taken:
                stream_id = f"{self.base}-{stream_slug(label)}-{number}"
                number += 1
            self._stream_ids[label] = stream_id
            logger.info("participant %s is stream %s", label, stream_id)
        return self._stream_ids[label]

    def _add_audio(self, connection: int, key: int, samples: np.ndarray) -> None:
        with self._lock:
            track = self._track(connection, key)
            if track.ended:
                return
            track.parts.append(samples)
            track.buffered += len(samples)
            while track.buffered > MAX_BUFFER_S * 16_000 and len(track.parts) > 1:
                track.buffered -= len(track.parts.pop(0))
            self._lock.notify_all()

    def _track(self, connection: int, key: int) -> _Track:
        track = self._tracks.get((connection, key))
        if track is None:
            track = self._tracks[(connection, key)] = _Track(key, time.monotonic())
        return track

    def _on_text(self, connection: int, text: str) -> None:
        try:
            message = json.loads(text)
            key = int(message.get("key", 0))
        except (ValueError, TypeError, AttributeError):
            logger.warning("meeting page sent a malformed message: %.80s", text)
            return
        with self._lock:
            if message.get("type") == "track":
                track = self._track(connection, key)
                name = message.get("name")
                if isinstance(name, str) and name.strip():
                    track.name = name.strip()[:100]
            elif message.get("type") == "ended":
                self._track(connection, key).ended = True

    # -- the WebSocket server (its own thread and event loop) -----------------------------------

    def _serve(self, started: threading.Event, failure: list[str]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_get("/audio", self._socket)
        runner = web.AppRunner(app, access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            loop.run_until_complete(site.start())
        except OSError as error:
            failure.append(f"port {self.port}: {error.strerror or error}")
            started.set()
            loop.close()
            return
        self._loop, self._runner = loop, runner
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(compress=False, max_msg_size=4 * 1024 * 1024)
        failed = await accept_websocket(socket, request)
        if failed is not None:
            return failed
        self._connections += 1
        connection = self._connections
        logger.info("meeting page connected its audio (connection %d)", connection)
        async for message in socket:
            if message.type == WSMsgType.BINARY and len(message.data) >= 8:
                data = message.data
                (key,) = struct.unpack_from("<I", data)
                usable = (len(data) - 4) // 4 * 4
                samples = np.frombuffer(data, dtype="<f4", count=usable // 4, offset=4)
                self._add_audio(connection, key, samples.astype(np.float32))
            elif message.type == WSMsgType.TEXT:
                self._on_text(connection, message.data)
        logger.info("meeting page audio connection %d closed", connection)
        return socket
