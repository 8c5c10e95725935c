"""The overlay server: caption pages for OBS and browsers, fed live over WebSocket or SSE.

Runs aiohttp on its own thread and event loop, so the supervisor just calls `publish()`.
A client joining late gets the stream's whole state at once, then every change as it happens.

Security: it binds 127.0.0.1 unless told otherwise; binding anything else requires a token,
which then every request and socket must carry (`?token=`, an `Authorization: Bearer`
header, or the cookie set when a page was opened with `?token=`). Only the pages of overlays/
are served (no listing, no paths), and nothing a client sends is acted upon.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import ipaddress
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from bot.config import OverlayConfig
from bot.errors import ConfigError, OutputError
from bot.messages import CaptionUpdate, join_words
from bot.web import start_site

logger = logging.getLogger(__name__)

PAGE_SUFFIXES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
STREAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
CLIENT_QUEUE = 256
HEARTBEAT_S = 15.0
TOKEN_COOKIE = "captionbot_token"


@dataclass
class _StreamState:
    """Everything a late joiner needs: all committed text and the tentative tail."""

    committed: list[str] = field(default_factory=list)
    tentative: str = ""
    language: str | None = None
    words: int = 0
    final: bool = False

    def snapshot(self, stream_id: str) -> dict[str, Any]:
        return {
            "type": "state",
            "stream": stream_id,
            "committed": "".join(self.committed).strip(),
            "tentative": self.tentative,
            "language": self.language,
            "final": self.final,
        }


def installed_pages() -> Path:
    """The pages shipped as the package `bot.overlay.pages` (overlays/ in the source tree)."""
    try:
        return Path(str(importlib.resources.files("bot.overlay.pages")))
    except ModuleNotFoundError:
        raise ConfigError(
            "the overlay pages (package bot.overlay.pages) are not installed: reinstall "
            "captionbot (pip install ., or pip install -e . in a checkout)"
        ) from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OverlayServer:
    """Serves overlays/ and pushes caption updates to every connected page."""

    def __init__(
        self,
        config: OverlayConfig,
        overlays_dir: Path | None = None,
        default_stream: str = "meeting",
    ) -> None:
        if not is_loopback(config.host) and not config.token:
            raise ConfigError(
                f"overlay.host {config.host} is reachable from other machines: "
                "set overlay.token too (every page and socket must then carry it)"
            )
        self.config = config
        self.default_stream = default_stream
        folder = Path(overlays_dir or installed_pages())
        self._pages = {
            p.name: p for p in folder.glob("*") if p.is_file() and p.suffix in PAGE_SUFFIXES
        }
        if "captions.html" not in self._pages:
            raise ConfigError(f"overlay pages not found in {folder}")
        self._states: dict[str, _StreamState] = {}
        self._clients: dict[str, set[asyncio.Queue]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self.port = config.port
        self.published = 0

    @property
    def url(self) -> str:
        host = self.config.host if self.config.host not in ("0.0.0.0", "::") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def page_url(self, page: str = "captions.html") -> str:
        query = f"?token={self.config.token}" if self.config.token else ""
        return f"{self.url}{page}{query}"

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (in a background thread); returns once the port is open."""
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._open())
            except BaseException as error:  # reported to start()'s caller
                failure.append(error)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=serve, name="overlay-server", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            error = failure[0]
            if isinstance(error, OSError):
                raise OutputError(
                    f"overlay server cannot listen on {self.config.host}:{self.config.port} "
                    f"({error.strerror or error}): set overlay.port (--overlay-port) or "
                    "--no-overlay"
                ) from None
            raise error
        logger.info("overlay server at %s", self.url)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop = None

    def publish(self, update: CaptionUpdate) -> None:
        """Hand an update to the server (any thread; never blocks)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply, update)

    # -- state ------------------------------------------------------------------------------------

    def _apply(self, update: CaptionUpdate) -> None:
        state = self._states.setdefault(update.stream_id, _StreamState())
        added = "".join(w.text for w in update.committed)
        if added:
            state.committed.append(added)
            state.words += len(update.committed)
        state.tentative = join_words(update.tentative)
        state.language = update.language or state.language
        state.final = update.final
        self.published += 1
        message = {
            "type": "update",
            "stream": update.stream_id,
            "committed": added,
            "tentative": state.tentative,
            "language": state.language,
            "t_s": round(update.t_s, 3),
            "final": update.final,
        }
        for client in self._clients.get(update.stream_id, set()):
            if client.full():  # a stalled client gets a fresh state instead of a backlog
                _drain(client)
                client.put_nowait(state.snapshot(update.stream_id))
            else:
                client.put_nowait(message)

    def _subscribe(self, stream_id: str) -> asyncio.Queue:
        client: asyncio.Queue = asyncio.Queue(maxsize=CLIENT_QUEUE)
        self._clients.setdefault(stream_id, set()).add(client)
        client.put_nowait(self._states.get(stream_id, _StreamState()).snapshot(stream_id))
        return client

    def _unsubscribe(self, stream_id: str, client: asyncio.Queue) -> None:
        self._clients.get(stream_id, set()).discard(client)

    # -- HTTP -------------------------------------------------------------------------------------

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/streams", self._streams)
        app.router.add_get("/api/transcript", self._transcript)
        app.router.add_get("/{page}", self._page)
        self._runner, self.port = await start_site(app, self.config.host, self.config.port)

    async def _close(self) -> None:
        for clients in self._clients.values():
            for client in clients:
                _drain(client)
                client.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        token = self.config.token
        from_query = False
        if token:
            given = request.cookies.get(TOKEN_COOKIE, "")
            header = request.headers.get("Authorization", "")
            if header.startswith("Bearer "):
                given = header[len("Bearer ") :]
            if "token" in request.query:
                given, from_query = request.query["token"], True
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.Response(status=403, text="forbidden: this overlay needs its token\n")
        response = await handler(request)
        if from_query and not response.prepared:
            # The page's own scripts and sockets then carry it without putting it in URLs.
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        if not response.prepared:
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    def _stream_of(self, request: web.Request) -> str:
        stream_id = request.query.get("stream") or self.default_stream
        if not STREAM_ID.match(stream_id):
            raise web.HTTPBadRequest(text="bad stream name\n")
        return stream_id

    async def _index(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(
            "/live.html" + (f"?{request.query_string}" if request.query_string else "")
        )

    async def _page(self, request: web.Request) -> web.Response:
        path = self._pages.get(request.match_info["page"])
        if path is None:
            raise web.HTTPNotFound(text="not found\n")
        return web.Response(
            body=path.read_bytes(), content_type=PAGE_SUFFIXES[path.suffix], charset="utf-8"
        )

    async def _streams(self, request: web.Request) -> web.Response:
        streams = [
            {"stream": sid, "words": state.words, "language": state.language}
            for sid, state in self._states.items()
        ]
        return web.json_response({"default": self.default_stream, "streams": streams})

    async def _transcript(self, request: web.Request) -> web.Response:
        stream_id = self._stream_of(request)
        state = self._states.get(stream_id, _StreamState())
        return web.json_response(state.snapshot(stream_id))

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        stream_id = self._stream_of(request)
        socket = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=1024)
        await socket.prepare(request)
        client = self._subscribe(stream_id)
        reader = asyncio.ensure_future(self._ignore_client(socket))
        try:
            while not socket.closed:
                getter = asyncio.ensure_future(client.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                message = getter.result()
                if message is None:
                    break
                await socket.send_str(json.dumps(message, ensure_ascii=False))
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self._unsubscribe(stream_id, client)
            reader.cancel()
            await socket.close()
        return socket

    @staticmethod
    async def _ignore_client(socket: web.WebSocketResponse) -> None:
        """Read (and discard) what the page sends, until it goes away."""
        async for message in socket:
            if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    async def _events(self, request: web.Request) -> web.StreamResponse:
        stream_id = self._stream_of(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        client = self._subscribe(stream_id)
        try:
            while True:
                try:
                    message = await asyncio.wait_for(client.get(), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if message is None:
                    break
                data = json.dumps(message, ensure_ascii=False)
                await response.write(f"data: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._unsubscribe(stream_id, client)
        return response


def _drain(client: asyncio.Queue) -> None:
    while not client.empty():
        client.get_nowait()
