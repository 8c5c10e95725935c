"""The compositor's frames as the bot's camera in a joined meeting.

`MeetingVideoSink` serves a WebSocket on 127.0.0.1; the init script bot/join/page_bot.js paints
every JPEG it receives onto the canvas whose `captureStream(30)` track is the bot's camera.
`send` only keeps the newest frame: an encoder thread turns it into a JPEG at most `fps` times a
second, and a client still busy with the previous frame skips one (counted in `dropped`).
Without compression on the socket: measured 29.9 of 30 fps at 15% CPU vs 24.5 fps at 26% with
permessage-deflate (JPEG does not compress further).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import cv2
import numpy as np
from aiohttp import web

from bot.errors import OutputError
from bot.web import accept_websocket

logger = logging.getLogger(__name__)

JPEG_QUALITY = 85


class MeetingVideoSink:
    """Publishes captioned frames to the meeting page over a loopback WebSocket."""

    def __init__(self, port: int, fps: float) -> None:
        self.name = f"meeting camera on 127.0.0.1:{port}"
        self.dropped = 0
        self.sent = 0
        self.port = port
        self.period = 1.0 / fps
        self._frame: np.ndarray | None = None
        self._fresh = threading.Condition()
        self._closing = threading.Event()
        self._clients: dict[web.WebSocketResponse, bool] = {}  # socket → busy
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self._app(), access_log=None)
        try:
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", port)
            self._loop.run_until_complete(site.start())
        except OSError as error:
            self._loop.close()
            raise OutputError(
                f"cannot serve the meeting camera on port {port}: {error.strerror or error}"
            ) from None
        self._server = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server.start()
        self._encoder = threading.Thread(target=self._encode, name="meeting-camera", daemon=True)
        self._encoder.start()
        logger.info("publishing to %s", self.name)

    def send(self, frame: np.ndarray, late: int = 0) -> None:
        with self._fresh:
            self._frame = frame.copy()
            self._fresh.notify()

    def close(self) -> None:
        self._closing.set()
        with self._fresh:
            self._fresh.notify()
        self._encoder.join(timeout=2)
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            future.result(timeout=3)
        except Exception:
            logger.debug("meeting camera server did not stop cleanly", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._server.join(timeout=3)

    # -- internals --------------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/video", self._socket)
        return app

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse(compress=False)
        failed = await accept_websocket(socket, request)
        if failed is not None:
            return failed
        self._clients[socket] = False
        logger.info("meeting page connected to the camera")
        try:
            async for _ in socket:
                pass
        finally:
            self._clients.pop(socket, None)
        return socket

    def _encode(self) -> None:
        next_due = time.monotonic()
        while not self._closing.is_set():
            with self._fresh:
                while self._frame is None and not self._closing.is_set():
                    self._fresh.wait(0.5)
                frame, self._frame = self._frame, None
            if frame is None:
                continue
            ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                self._loop.call_soon_threadsafe(self._publish, jpeg.tobytes())
            next_due = max(next_due + self.period, time.monotonic())
            self._closing.wait(max(next_due - time.monotonic(), 0.0))

    def _publish(self, jpeg: bytes) -> None:
        for socket, busy in list(self._clients.items()):
            if busy:
                self.dropped += 1
                continue
            self._clients[socket] = True
            asyncio.ensure_future(self._deliver(socket, jpeg))

    async def _deliver(self, socket: web.WebSocketResponse, jpeg: bytes) -> None:
        try:
            await socket.send_bytes(jpeg)
            self.sent += 1
        except (ConnectionError, RuntimeError):
            self._clients.pop(socket, None)
            return
        if socket in self._clients:
            self._clients[socket] = False

    async def _shutdown(self) -> None:
        for socket in list(self._clients):
            await socket.close()
        await self._runner.cleanup()
