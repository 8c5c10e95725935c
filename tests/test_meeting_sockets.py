"""The bot's local sockets for the meeting page (its audio in, its camera out): a page that goes
away mid-handshake (the bot closing its browser) costs nothing and logs no error."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import struct
import time

import aiohttp
import pytest

from bot.audio.meeting import MeetingAudioSource
from bot.video.meeting import MeetingVideoSink


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def abort_handshakes(port: int, path: str, count: int) -> None:
    """Ask for a WebSocket upgrade and reset the connection at once, `count` times."""
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        connection.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()


async def connects(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        return not ws.closed


def open_audio(port: int) -> MeetingAudioSource:
    source = MeetingAudioSource(port, chunk_s=0.2, base_stream_id="meeting")
    source.open()
    return source


@pytest.mark.parametrize(
    ("path", "serve"), [("/audio", open_audio), ("/video", lambda port: MeetingVideoSink(port, 5))]
)
def test_handshakes_the_page_abandons_log_no_error_and_the_next_page_connects(caplog, path, serve):
    port = free_port()
    server = serve(port)
    try:
        with caplog.at_level(logging.ERROR):
            abort_handshakes(port, path, 20)
            time.sleep(0.5)
            assert asyncio.run(connects(f"ws://127.0.0.1:{port}{path}"))
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    finally:
        server.close()
