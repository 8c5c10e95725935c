"""A small test meeting: an aiohttp page + WebSocket signalling relay for mesh WebRTC calls.

`python tests/meeting/server.py --port 0` prints `ready PORT` once it listens on 127.0.0.1.
Every participant of a room gets the others' ids and names; offers, answers and ICE candidates
are relayed to the named peer. The page (page.html) is the meeting client.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
from pathlib import Path

from aiohttp import WSMsgType, web

PAGE = Path(__file__).with_name("page.html")


class Rooms:
    def __init__(self) -> None:
        self.rooms: dict[str, dict[int, tuple[str, web.WebSocketResponse]]] = {}
        self.ids = itertools.count(1)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(encoding="utf-8"), content_type="text/html")

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        room = self.rooms.setdefault(request.query.get("room", "main"), {})
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        me: int | None = None
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if data["type"] == "join" and me is None:
                    me = next(self.ids)
                    peers = [{"id": i, "name": n} for i, (n, _) in room.items()]
                    room[me] = (str(data["name"]), ws)
                    await ws.send_json({"type": "welcome", "id": me, "peers": peers})
                    await self._broadcast(
                        room, me, {"type": "peer-joined", "id": me, "name": data["name"]}
                    )
                elif data["type"] == "signal" and me is not None:
                    target = room.get(int(data["to"]))
                    if target is not None:
                        await target[1].send_json(
                            {
                                "type": "signal",
                                "from": me,
                                "name": room[me][0],
                                "data": data["data"],
                            }
                        )
        finally:
            if me is not None:
                room.pop(me, None)
                await self._broadcast(room, me, {"type": "peer-left", "id": me})
        return ws

    @staticmethod
    async def _broadcast(room: dict, sender: int, message: dict) -> None:
        for peer, (_, ws) in list(room.items()):
            if peer != sender and not ws.closed:
                await ws.send_json(message)


async def serve(port: int) -> None:
    rooms = Rooms()
    app = web.Application()
    app.router.add_get("/", rooms.page)
    app.router.add_get("/ws", rooms.socket)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"ready {site._server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args().port))
