"""The `captionbot serve` wire protocol: one WebSocket per session.

Client → service:
1. a JSON hello (text): `{"type": "hello", "session": "room-1", "task": "translate",
   "language": "en", "token": "...", "format": "s16le", "sample_rate": 16000}`; a resuming
   client adds `"start_s"` (the audio time of its first frame) and `"history"` (its last
   committed words as `[text, start, end]`), so the new session neither repeats nor loses words,
   and `"backlog_s"` (the audio it held while away, sent at once: the session queues it on top
   of its real-time limit instead of dropping it);
2. binary frames: an 8-byte little-endian sequence number (0, 1, 2, ... per connection) then
   mono 16 kHz samples, s16le (default) or f32le (`"format": "f32le"`);
3. `{"type": "end"}` (text) when the audio is over: the service finalizes and closes.

Service → client (JSON text): `ready`; `update` (the overlay's caption message, plus `words`
with the committed words' times); `dropped` (this session fell behind and lost its oldest
audio); `busy` (no capacity: retry after `retry_after_s`); `draining` (the service stops);
`error` (then a close whose reason says the same in short).
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.asr.engine import DEFAULT_TASK, Task
from bot.messages import SAMPLE_RATE, CaptionUpdate, CommittedWord, Word

FRAME_HEADER = struct.Struct("<Q")
SAMPLE_BYTES = {"s16le": 2, "f32le": 4}
SESSION_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_HELLO_BYTES = 64 * 1024
MAX_HISTORY_WORDS = 200
# A resuming client may send this much buffered audio at once (bot/serve/client.py REPLAY_S +
# its local queue); the session's queue holds it on top of its real-time limit.
MAX_BACKLOG_S = 120.0

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED = 1003
CLOSE_BAD_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_LATER = 1013


class ProtocolError(Exception):
    """A message the service will not take; `code` is the WebSocket close code to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Hello:
    session: str
    task: Task = DEFAULT_TASK
    language: str | None = None
    token: str | None = None
    session_token: str | None = None
    format: str = "s16le"
    start_s: float = 0.0
    history: tuple[CommittedWord, ...] = ()
    backlog_s: float = 0.0
    """Audio the client holds from before it connected (a resume) and sends at once."""


def parse_hello(text: str, known_languages: frozenset[str] | None = None) -> Hello:
    """The hello of a connection, or ProtocolError naming what is wrong with it."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ProtocolError(CLOSE_BAD_DATA, "hello is not valid JSON") from None
    if not isinstance(data, dict) or data.get("type") != "hello":
        raise ProtocolError(CLOSE_POLICY, 'first message must be {"type": "hello", ...}')
    session = data.get("session")
    if not isinstance(session, str) or not SESSION_NAME.match(session):
        raise ProtocolError(CLOSE_POLICY, "hello.session must be 1-64 of A-Z a-z 0-9 _ . -")
    task = data.get("task", DEFAULT_TASK)
    if task not in ("transcribe", "translate"):
        raise ProtocolError(CLOSE_POLICY, "hello.task must be transcribe or translate")
    language = data.get("language")
    if language in ("auto", ""):
        language = None
    if language is not None and (
        not isinstance(language, str)
        or (known_languages is not None and language not in known_languages)
    ):
        known = ", ".join(sorted(known_languages or ())[:12])
        raise ProtocolError(
            CLOSE_POLICY, f"hello.language {language!r} is not a language of this model ({known})"
        )
    fmt = data.get("format", "s16le")
    if fmt not in SAMPLE_BYTES:
        raise ProtocolError(CLOSE_UNSUPPORTED, "hello.format must be s16le or f32le")
    rate = data.get("sample_rate", SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        raise ProtocolError(
            CLOSE_UNSUPPORTED, f"sample_rate {rate} not supported: send 16000 Hz mono"
        )
    if data.get("channels", 1) != 1:
        raise ProtocolError(CLOSE_UNSUPPORTED, "channels must be 1: send mono audio")
    token = data.get("token")
    session_token = data.get("session_token")
    if not all(t is None or isinstance(t, str) for t in (token, session_token)):
        raise ProtocolError(CLOSE_POLICY, "hello.token and hello.session_token must be strings")
    start_s = data.get("start_s", 0.0)
    if not isinstance(start_s, int | float) or not math.isfinite(start_s) or start_s < 0:
        raise ProtocolError(CLOSE_POLICY, "hello.start_s must be a number >= 0")
    backlog_s = data.get("backlog_s", 0.0)
    if not isinstance(backlog_s, int | float) or not 0 <= backlog_s <= MAX_BACKLOG_S:
        raise ProtocolError(CLOSE_POLICY, f"hello.backlog_s must be 0-{MAX_BACKLOG_S:g} s")
    return Hello(
        session=session,
        task=task,
        language=language,
        token=token,
        session_token=session_token,
        format=fmt,
        start_s=float(start_s),
        history=_parse_history(data.get("history", [])),
        backlog_s=float(backlog_s),
    )


def _parse_history(rows: Any) -> tuple[CommittedWord, ...]:
    if not isinstance(rows, list) or len(rows) > MAX_HISTORY_WORDS:
        raise ProtocolError(
            CLOSE_POLICY, f"hello.history must be a list of at most {MAX_HISTORY_WORDS} words"
        )
    words = []
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != 3
            or not isinstance(row[0], str)
            or not all(isinstance(x, int | float) and math.isfinite(x) for x in row[1:])
        ):
            raise ProtocolError(CLOSE_POLICY, "hello.history rows must be [text, start, end]")
        words.append(CommittedWord(row[0], float(row[1]), float(row[2]), 1.0, 0.0, 0.0))
    return tuple(words)


def hello_message(
    session: str,
    task: Task = DEFAULT_TASK,
    language: str | None = None,
    token: str | None = None,
    fmt: str = "s16le",
    session_token: str | None = None,
    start_s: float = 0.0,
    history: tuple[CommittedWord, ...] | list[CommittedWord] = (),
    backlog_s: float = 0.0,
) -> str:
    data: dict[str, Any] = {
        "type": "hello",
        "session": session,
        "task": task,
        "language": language,
        "format": fmt,
        "sample_rate": SAMPLE_RATE,
        "start_s": round(start_s, 4),
        "history": [[w.text, w.start, w.end] for w in list(history)[-MAX_HISTORY_WORDS:]],
    }
    if backlog_s > 0:
        data["backlog_s"] = round(min(backlog_s, MAX_BACKLOG_S), 3)
    if token:
        data["token"] = token
    if session_token:
        data["session_token"] = session_token
    return json.dumps(data, ensure_ascii=False)


# -- audio frames ---------------------------------------------------------------------------------


def encode_frame(sequence: int, samples: np.ndarray, fmt: str = "s16le") -> bytes:
    """A binary frame of float samples in [-1, 1]."""
    if fmt == "f32le":
        payload = np.asarray(samples, dtype="<f4").tobytes()
    else:
        payload = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return FRAME_HEADER.pack(sequence) + payload


def decode_frame(data: bytes, fmt: str, expected_sequence: int) -> np.ndarray:
    """The float32 samples of a frame, or ProtocolError for a malformed one."""
    if len(data) < FRAME_HEADER.size:
        raise ProtocolError(CLOSE_BAD_DATA, "frame shorter than its 8-byte sequence number")
    (sequence,) = FRAME_HEADER.unpack_from(data)
    if sequence != expected_sequence:
        raise ProtocolError(
            CLOSE_BAD_DATA, f"frame sequence {sequence}, expected {expected_sequence}"
        )
    payload = memoryview(data)[FRAME_HEADER.size :]
    width = SAMPLE_BYTES[fmt]
    if len(payload) % width:
        raise ProtocolError(
            CLOSE_BAD_DATA, f"frame of {len(payload)} bytes is not whole {fmt} samples"
        )
    if fmt == "f32le":
        samples = np.frombuffer(payload, dtype="<f4").astype(np.float32)
        if not np.all(np.isfinite(samples)) or np.any(np.abs(samples) > 4.0):
            raise ProtocolError(CLOSE_BAD_DATA, "f32le samples must be finite, within [-1, 1]")
        return samples
    return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0


# -- caption updates ------------------------------------------------------------------------------


def update_message(update: CaptionUpdate, session: str) -> dict[str, Any]:
    """The overlay's update message (bot/overlay/server.py), with the committed words' times
    so a remote bot can write its own SRT/VTT files."""
    return {
        "type": "update",
        "stream": session,
        "committed": "".join(w.text for w in update.committed),
        "tentative": "".join(w.text for w in update.tentative).strip(),
        "language": update.language,
        "t_s": round(update.t_s, 3),
        "final": update.final,
        "words": [
            [
                w.text,
                round(w.start, 3),
                round(w.end, 3),
                round(w.probability, 3),
                round(w.first_seen_s, 3),
                round(w.emitted_s, 3),
            ]
            for w in update.committed
        ],
        "tentative_words": [[w.text, round(w.start, 3), round(w.end, 3)] for w in update.tentative],
    }


def update_from_message(
    message: dict[str, Any], stream_id: str, speaker: str | None = None
) -> CaptionUpdate:
    """The CaptionUpdate a client rebuilds from an update message (`speaker`: the client's
    name for the stream's participant)."""
    return CaptionUpdate(
        stream_id=stream_id,
        t_s=float(message.get("t_s", 0.0)),
        committed=tuple(
            CommittedWord(str(t), float(s), float(e), float(p), float(f), float(m))
            for t, s, e, p, f, m in message.get("words", [])
        ),
        tentative=tuple(
            Word(str(t), float(s), float(e)) for t, s, e in message.get("tentative_words", [])
        ),
        language=message.get("language"),
        final=bool(message.get("final", False)),
        speaker=speaker,
    )
