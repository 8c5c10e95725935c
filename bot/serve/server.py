"""The `captionbot serve` web service: sessions over WebSocket, health, metrics, sessions API.

aiohttp runs on one event loop (the main thread under the CLI, a background thread in tests);
the engine runs on the hub's thread. Every connection is one session: its hello is checked
(token, formats, admission), its frames go to the hub, and only its own caption updates come
back. A bad frame closes that connection alone, with the reason; the service keeps running.

Security: binds 127.0.0.1 unless told otherwise; any other address requires `serve.token`,
which every hello (or an `Authorization: Bearer` header) and every API request must carry.
`serve.session_tokens` gives sessions their own token on top.

Why one ~600-line module: the connection handler, the HTTP API and the drain share one
event loop and the session table; the wire format (protocol.py), the batching hub (hub.py)
and the metrics text (metrics.py) are already apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import socket as stdlib_socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from bot.audio.decode import load_audio
from bot.config import ServeConfig
from bot.errors import CaptionbotError, ConfigError, OutputError
from bot.messages import SAMPLE_RATE, CaptionUpdate
from bot.outputs.live_files import LiveCaptionFiles
from bot.overlay.server import is_loopback
from bot.serve.hub import ServiceBusy, SessionHub
from bot.serve.meetings import MeetingBots, MeetingRefused
from bot.serve.metrics import prometheus_text
from bot.serve.protocol import (
    CLOSE_BAD_DATA,
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    CLOSE_UNSUPPORTED,
    MAX_HELLO_BYTES,
    Hello,
    ProtocolError,
    decode_frame,
    parse_hello,
    update_message,
)
from bot.web import start_site

logger = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
# What may wait for one client in each buffer on the way out (aiohttp's writer, the event
# loop's transport, the kernel's send buffer). A session sends ~1 KB a decode, so this holds
# seconds of captions, ample on any network; with the defaults (256 KB, 64 KB, and a kernel
# buffer that grows to 4 MB) a client that stops reading tied up megabytes of the box's memory
# and `slow_reader_messages` counted only what was left over, minutes later.
SEND_BUFFER_BYTES = 8192
# WebSocket close reasons are at most 123 bytes.
MAX_REASON = 120


class ServeServer:
    """Listens for sessions; `start()` in a thread, or `run()` on this one until SIGTERM."""

    def __init__(
        self,
        config: ServeConfig,
        hub: SessionHub,
        out_dir: Path | None = None,
        formats: tuple[str, ...] = ("json", "srt", "vtt", "txt"),
        meetings: MeetingBots | None = None,
    ) -> None:
        if not is_loopback(config.host) and not config.token:
            raise ConfigError(
                f"serve.host {config.host} is reachable from other machines: "
                "set serve.token (--token) too; every client must then send it"
            )
        self.config = config
        self.hub = hub
        self.out_dir = out_dir
        self.formats = formats
        self.meetings = meetings
        self.port = config.port
        self._connections: dict[str, _Connection] = {}
        self._players: dict[str, asyncio.Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: asyncio.Future | None = None
        self._started_at = time.time()
        self.closed_reasons: list[tuple[str, int, str]] = []

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"ws://{host}:{self.port}/ws"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on a background thread; returns once the port is open."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as error:  # reported to start()'s caller
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close(drain=False))
            loop.close()

        self._thread = threading.Thread(target=serve, name="serve-http", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise _listen_error(failure[0], self.config) from None

    def stop(self, drain: bool = True) -> None:
        """Drain the sessions (tell them, finalize their files), then stop listening."""
        if self._loop is None or self._thread is None:
            return
        if drain:
            future = asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
            future.result(self.config.drain_timeout_s + 15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def run(self, on_ready: Any = None) -> None:
        """Serve on this thread until SIGTERM or SIGINT, then drain."""
        asyncio.run(self._run_until_signal(on_ready))

    async def _run_until_signal(self, on_ready: Any) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self._open()
        except OSError as error:
            raise _listen_error(error, self.config) from None
        stop = asyncio.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(number, stop.set)
        if on_ready is not None:
            on_ready(self)
        await stop.wait()
        logger.info("draining %d sessions", len(self._connections))
        await self._close(drain=True)

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/sessions", self._list_sessions)
        app.router.add_post("/api/sessions", self._start_session)
        app.router.add_delete("/api/sessions/{name}", self._stop_session)
        self._runner, self.port = await start_site(app, self.config.host, self.config.port)
        if self.meetings is not None:
            self.meetings.service_url = f"ws://127.0.0.1:{self.port}/ws"
        logger.info("captionbot serve listening at %s", self.url)
        self._watchdog = asyncio.ensure_future(self._watch_engine())

    async def _watch_engine(self) -> None:
        """An engine that failed ends every session at once, saying why (not a silent hang)."""
        while self.hub.failure is None:
            await asyncio.sleep(0.5)
        reason = f"engine failed: {self.hub.failure}"
        logger.error("%s; closing every session", reason)
        for connection in list(self._connections.values()):
            connection.fail(CLOSE_INTERNAL, reason)

    async def _close(self, drain: bool) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        if drain:
            await self._drain()
        for connection in list(self._connections.values()):
            await connection.close(CLOSE_GOING_AWAY, "service shutting down")
        for player in self._players.values():
            player.cancel()
        if self.meetings is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.meetings.close)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _drain(self) -> None:
        if self.meetings is not None:  # they leave first: their last words reach the hub
            await asyncio.get_running_loop().run_in_executor(None, self.meetings.close)
        for connection in list(self._connections.values()):
            connection.end_reason = (CLOSE_GOING_AWAY, "service shutting down")
            connection.send({"type": "draining", "message": "service shutting down"})
        await asyncio.get_running_loop().run_in_executor(
            None, self.hub.drain, self.config.drain_timeout_s
        )
        for connection in list(self._connections.values()):
            await connection.finished_sent(5.0)
            await connection.close(CLOSE_GOING_AWAY, "service shutting down")

    # -- HTTP -------------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # The socket checks its token in the hello (browsers cannot set headers on sockets);
        # /healthz tells nothing but "up".
        if request.path not in ("/ws", "/healthz") and not self._authorized(request, None):
            return web.Response(status=403, text="forbidden: send Authorization: Bearer TOKEN\n")
        return await handler(request)

    def _authorized(self, request: web.Request, hello: Hello | None) -> bool:
        token = self.config.token
        given = hello.token if hello is not None and hello.token else ""
        header = request.headers.get("Authorization", "")
        if not given and header.startswith("Bearer "):
            given = header[len("Bearer ") :]
        if token and not hmac.compare_digest(given.encode(), token.encode()):
            return False
        if hello is not None:
            own = (self.config.session_tokens or {}).get(hello.session)
            if own and not hmac.compare_digest((hello.session_token or "").encode(), own.encode()):
                return False
        return True

    async def _healthz(self, request: web.Request) -> web.Response:
        failure = self.hub.failure
        if failure is not None:
            return web.json_response({"status": "failed", "error": str(failure)}, status=503)
        snapshot = self.hub.snapshot()
        status = "draining" if snapshot.draining else "ok"
        return web.json_response(
            {"status": status, "sessions": len(snapshot.sessions)},
            status=503 if snapshot.draining else 200,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        text = prometheus_text(self.hub.snapshot(), self.hub.engine, self._started_at)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _list_sessions(self, request: web.Request) -> web.Response:
        sessions = [
            {
                "session": view.name,
                "task": view.task,
                "language": view.language,
                "audio_s": round(view.audio_s, 2),
                "dropped_s": round(view.dropped_s, 2),
                "words": view.words,
                "latency_p90_s": view.latency_p90,
            }
            for view in self.hub.snapshot().sessions
        ]
        bots = list(self.meetings.bots.values()) if self.meetings is not None else []
        return web.json_response({"sessions": sessions, "meetings": [b.view() for b in bots]})

    async def _stop_session(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        connection = self._connections.get(name)
        player = self._players.get(name)
        if self.meetings is not None and self.meetings.stop(name):
            return web.json_response({"session": name, "stopping": True})  # the bot leaves
        if connection is not None:
            connection.stop_requested()
        elif player is not None:
            player.cancel()
            self.hub.end(name)
        else:
            raise web.HTTPNotFound(text="no such session\n")
        return web.json_response({"session": name, "stopping": True})

    async def _start_session(self, request: web.Request) -> web.Response:
        """A caption participant joining a meeting ({"url"}), or a file played ({"file"})."""
        try:
            body = await request.json()
            fields = {k: v for k, v in body.items() if k in ("session", "task", "language")}
            hello = parse_hello(json.dumps({**fields, "type": "hello"}))
        except ProtocolError as error:
            raise web.HTTPBadRequest(text=f"{error}\n") from None
        except (ValueError, AttributeError):
            raise web.HTTPBadRequest(
                text='body must be JSON: {"session", "url"} or {"session", "file"}\n'
            ) from None
        if "url" in body:
            return await self._start_meeting_session(hello, body)
        return await self._start_file_session(hello, body)

    async def _start_meeting_session(self, hello: Hello, body: dict[str, Any]) -> web.Response:
        if self.meetings is None:
            raise web.HTTPForbidden(text="meeting bots are off: set serve.max_meeting_bots\n")
        try:
            bot = await asyncio.get_running_loop().run_in_executor(
                None, self.meetings.start, hello.session, body
            )
        except MeetingRefused as refused:
            status = 503 if str(refused).startswith("busy") else 400
            return web.json_response({"type": "error", "message": str(refused)}, status=status)
        return web.json_response(bot.view(), status=201)

    async def _start_file_session(self, hello: Hello, body: dict[str, Any]) -> web.Response:
        """A session playing a file of serve.files_dir in real time (no client attached)."""
        if self.config.files_dir is None:
            raise web.HTTPForbidden(text="file sessions are off: set serve.files_dir\n")
        folder = Path(self.config.files_dir).resolve()
        path = (folder / str(body.get("file", ""))).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise web.HTTPBadRequest(text=f"file must be a file inside {folder}\n")
        loop = asyncio.get_running_loop()
        try:
            audio = await loop.run_in_executor(None, load_audio, path)
        except CaptionbotError as error:
            raise web.HTTPBadRequest(text=f"{error}\n") from None
        files = self._files(hello)

        def on_update(update: CaptionUpdate) -> None:
            if files is not None:
                files.add(update)
                if update.final:
                    files.close()
            if update.final:
                loop.call_soon_threadsafe(self._players.pop, hello.session, None)

        try:
            self.hub.open(hello.session, on_update, hello.task, hello.language)
        except ServiceBusy as busy:
            return web.json_response(
                {"type": "busy", "retry_after_s": round(busy.retry_after_s), "message": str(busy)},
                status=503,
            )
        except ValueError as error:
            raise web.HTTPConflict(text=f"{error}\n") from None
        self._players[hello.session] = asyncio.ensure_future(self._play(hello.session, audio))
        return web.json_response(
            {"session": hello.session, "audio_s": round(len(audio) / SAMPLE_RATE, 2)}, status=201
        )

    async def _play(self, name: str, audio: np.ndarray) -> None:
        step = SAMPLE_RATE // 10
        started = time.monotonic()
        for offset in range(0, len(audio), step):
            await asyncio.sleep(max(started + offset / SAMPLE_RATE - time.monotonic(), 0.0))
            self.hub.push(name, audio[offset : offset + step])
        self.hub.end(name)

    # -- sessions ---------------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        # aiohttp closes oversized messages without a reason: its cap is far above ours, and
        # ours is checked in _read to say what the limit is.
        limit = 4 * max(self.config.max_frame_bytes + 8, MAX_HELLO_BYTES)
        socket = web.WebSocketResponse(
            heartbeat=HEARTBEAT_S,
            max_msg_size=limit,
            compress=False,
            writer_limit=SEND_BUFFER_BYTES,
        )
        await socket.prepare(request)
        _bound_send_buffers(request)
        try:
            hello = await self._hello(request, socket)
        except ProtocolError as error:
            await _refuse(socket, error.code, str(error))
            self.closed_reasons.append(("", error.code, str(error)))
            return socket
        if hello is None:
            return socket
        connection = _Connection(self, socket, hello)
        try:
            self.hub.open(
                hello.session,
                connection.on_update,
                task=hello.task,
                language=hello.language,
                start_s=hello.start_s,
                history=hello.history,
                on_drop=connection.on_drop,
                backlog_s=hello.backlog_s,
            )
        except ServiceBusy as busy:
            retry = round(busy.retry_after_s)
            await socket.send_json(
                {"type": "busy", "retry_after_s": retry, "message": f"{busy}; retry in {retry} s"}
            )
            await socket.close(
                code=CLOSE_TRY_LATER, message=_reason(f"busy, retry after {retry} s")
            )
            return socket
        except ValueError as error:
            # Most often the same client back before its old connection finished finalizing.
            await socket.send_json(
                {"type": "busy", "retry_after_s": 1, "message": f"{error}; retry in 1 s"}
            )
            await socket.close(code=CLOSE_TRY_LATER, message=_reason(f"{error}, retry after 1 s"))
            return socket
        self._connections[hello.session] = connection
        try:
            await connection.serve()
        finally:
            self._connections.pop(hello.session, None)
        return socket

    async def _hello(self, request: web.Request, socket: web.WebSocketResponse) -> Hello | None:
        try:
            message = await socket.receive(timeout=self.config.hello_timeout_s)
        except TimeoutError:
            raise ProtocolError(
                CLOSE_POLICY, f"no hello within {self.config.hello_timeout_s:g} s"
            ) from None
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return None
        if message.type == WSMsgType.ERROR:
            raise ProtocolError(CLOSE_TOO_BIG, "hello too large")
        if message.type != WSMsgType.TEXT:
            raise ProtocolError(CLOSE_POLICY, "first message must be the JSON hello (text)")
        if len(message.data) > MAX_HELLO_BYTES:
            raise ProtocolError(CLOSE_TOO_BIG, f"hello over {MAX_HELLO_BYTES} bytes")
        languages = frozenset(getattr(self.hub.engine, "supported_languages", ()) or ()) or None
        hello = parse_hello(message.data, languages)
        if not self._authorized(request, hello):
            raise ProtocolError(CLOSE_POLICY, "bad or missing token")
        try:  # off the loop: a remote engine asks its replica
            await asyncio.get_running_loop().run_in_executor(
                None, self.hub.engine.check_task, hello.task, hello.language
            )
        except Exception as error:
            raise ProtocolError(CLOSE_POLICY, str(error)) from None
        return hello

    def _files(self, hello: Hello) -> LiveCaptionFiles | None:
        if self.out_dir is None:
            return None
        stem = f"{hello.session}-{time.strftime('%Y%m%d-%H%M%S')}"
        info = self.hub.engine.info
        return LiveCaptionFiles(
            self.out_dir,
            stem,
            self.formats,
            meta={
                "stream_id": hello.session,
                "model": info.model,
                "engine": info.name,
                "task": hello.task,
            },
        )


class _Connection:
    """One session's socket: frames in, its own caption updates out."""

    def __init__(self, server: ServeServer, socket: web.WebSocketResponse, hello: Hello) -> None:
        self.server = server
        self.socket = socket
        self.hello = hello
        self.name = hello.session
        self.loop = asyncio.get_running_loop()
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(
            maxsize=server.config.slow_reader_messages
        )
        self.files = server._files(hello)  # noqa: SLF001 - the server's own helper
        self._final = asyncio.Event()
        self._sequence = 0
        self._closing: tuple[int, str] | None = None
        self.end_reason: tuple[int, str] = (CLOSE_NORMAL, "session finished")

    # Called on the engine thread.
    def on_update(self, update: CaptionUpdate) -> None:
        if self.files is not None:
            self.files.add(update)
            if update.final:
                self.files.close()
        self.loop.call_soon_threadsafe(self._queue_update, update)

    def on_drop(self, dropped_s: float, total_s: float) -> None:
        message = {
            "type": "dropped",
            "audio_s": round(dropped_s, 2),
            "total_s": round(total_s, 2),
            "message": f"service behind: {dropped_s:.1f} s of this session's oldest audio dropped",
        }
        self.loop.call_soon_threadsafe(self.send, message)

    def _queue_update(self, update: CaptionUpdate) -> None:
        self.send(update_message(update, self.name))
        if update.final:
            self._final.set()

    def send(self, message: dict[str, Any]) -> None:
        if self._closing is not None:
            return
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            limit = self.server.config.slow_reader_messages
            self._closing = (CLOSE_POLICY, f"slow reader: {limit} caption messages unread")
            self.server.hub.end(self.name)
            self._drain_outbox()
            self.outbox.put_nowait(None)

    def stop_requested(self) -> None:
        self.send({"type": "stopping", "message": "session stopped through the API"})
        self.server.hub.end(self.name)

    async def finished_sent(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._final.wait(), timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox_empty(), timeout)

    async def _outbox_empty(self) -> None:
        while not self.outbox.empty():
            await asyncio.sleep(0.02)

    async def close(self, code: int, reason: str) -> None:
        if not self.socket.closed:
            await self.socket.close(code=code, message=_reason(reason))

    async def serve(self) -> None:
        await self.socket.send_json(
            {
                "type": "ready",
                "session": self.name,
                "sample_rate": 16000,
                "format": self.hello.format,
                "max_frame_bytes": self.server.config.max_frame_bytes,
            }
        )
        writer = asyncio.ensure_future(self._write())
        try:
            await self._read()
        finally:
            # A client gone mid-stream: its session finalizes and its files become final.
            self.server.hub.end(self.name)
            if self._closing is None:
                if not self.socket.closed:
                    await self._wait_final()
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
                await self.close(*self.end_reason)
            else:
                code, reason = self._closing
                self.server.closed_reasons.append((self.name, code, reason))
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(writer, 5.0)
                await self.close(code, reason)
            if not self._final.is_set():
                await self.loop.run_in_executor(
                    None, self.server.hub.wait_finished, self.name, 30.0
                )

    async def _wait_final(self) -> None:
        # Send the final updates out before closing (a client that said "end").
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._final.wait(), 60.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._outbox_empty(), 5.0)

    async def _read(self) -> None:
        fmt = self.hello.format
        while self._closing is None:
            reading = asyncio.ensure_future(self.socket.receive())
            done, _ = await asyncio.wait(
                {reading, asyncio.ensure_future(self._final.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            if reading not in done:
                reading.cancel()
                return
            message = reading.result()
            if message.type == WSMsgType.BINARY:
                if len(message.data) > self.server.config.max_frame_bytes + 8:
                    limit = self.server.config.max_frame_bytes
                    self._protocol_error(CLOSE_TOO_BIG, f"frame over {limit} bytes")
                    return
                try:
                    samples = decode_frame(message.data, fmt, self._sequence)
                except ProtocolError as error:
                    self._protocol_error(error.code, str(error))
                    return
                self._sequence += 1
                self.server.hub.push(self.name, samples)
            elif message.type == WSMsgType.TEXT:
                if not self._control(message.data):
                    return
            elif message.type == WSMsgType.ERROR:
                error = message.data
                text = str(error)
                if "exceeds limit" in text or "size" in text.lower():
                    limit = self.server.config.max_frame_bytes
                    self._protocol_error(CLOSE_TOO_BIG, f"frame over {limit} bytes")
                else:
                    self._protocol_error(CLOSE_BAD_DATA, f"bad WebSocket message: {text}")
                return
            else:  # the client closed or went away
                return

    def _control(self, text: str) -> bool:
        try:
            data = json.loads(text)
        except ValueError:
            self._protocol_error(CLOSE_BAD_DATA, "text message is not valid JSON")
            return False
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "end":
            self.server.hub.end(self.name)
            return True
        self._protocol_error(CLOSE_UNSUPPORTED, f'unknown message type {kind!r}: send "end"')
        return False

    def fail(self, code: int, message: str) -> None:
        """Close this session now (from the event loop), telling the client why."""
        self._protocol_error(code, message)
        self._final.set()

    def _protocol_error(self, code: int, message: str) -> None:
        logger.warning("session %s closed: %s", self.name, message)
        self._closing = (code, message)
        self._drain_outbox()
        self.outbox.put_nowait({"type": "error", "message": message})
        self.outbox.put_nowait(None)

    async def _write(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None:
                if self._closing is not None:
                    code, reason = self._closing
                    await self.close(code, reason)
                return
            try:
                await self.socket.send_str(json.dumps(message, ensure_ascii=False))
            except (ConnectionResetError, RuntimeError):
                return

    def _drain_outbox(self) -> None:
        while not self.outbox.empty():
            self.outbox.get_nowait()


async def _refuse(socket: web.WebSocketResponse, code: int, message: str) -> None:
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await socket.send_json({"type": "error", "message": message})
        await socket.close(code=code, message=_reason(message))


def _bound_send_buffers(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    transport.set_write_buffer_limits(high=SEND_BUFFER_BYTES)
    connection = transport.get_extra_info("socket")
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.setsockopt(
                stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, SEND_BUFFER_BYTES
            )


def _reason(text: str) -> bytes:
    return text.encode()[:MAX_REASON]


def _listen_error(error: BaseException, config: ServeConfig) -> BaseException:
    if isinstance(error, OSError):
        return OutputError(
            f"captionbot serve cannot listen on {config.host}:{config.port} "
            f"({error.strerror or error}): set serve.port (--port) to a free port"
        )
    return error


_ = WSCloseCode  # aiohttp's names for the codes in bot/serve/protocol.py
