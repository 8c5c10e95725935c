"""aiohttp helpers shared by the servers: starting an application, accepting a WebSocket."""

from __future__ import annotations

from aiohttp import web


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app` on host:port (0 picks a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = site._server.sockets if site._server else []  # noqa: SLF001 - the bound port
    return runner, sockets[0].getsockname()[1] if sockets else port


async def accept_websocket(
    socket: web.WebSocketResponse, request: web.Request
) -> web.StreamResponse | None:
    """Complete the handshake; if the page went away mid-way, the response to return instead
    (not the half-open socket: aiohttp would try to finish it and log "Call .prepare() first")."""
    try:
        await socket.prepare(request)
    except (ConnectionError, RuntimeError):
        return web.Response(status=400, text="websocket handshake failed")
    return None
