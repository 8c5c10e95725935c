"""Audio sources of the capture process: 16 kHz mono float32 in chunks of about `chunk_s`.

- `PulseSource`: a PulseAudio / PipeWire source through `parec`: the monitor of the meeting
  app's output sink (loopback) or a microphone. The sound server converts rate and channels.
- `PyAudioSource`: any PortAudio input device (ALSA on Linux), by index or name, opened at its
  native rate and channel count, downmixed and resampled here.
- `FileSource`: an audio/video file (or the bundled sample) played at real-time speed.
- `StdinSource`: raw PCM on standard input (s16le or f32le, mono, any rate).
- `MeetingAudioSource` (meeting.py): the remote audio of a meeting page joined by
  `captionbot join`, one stream per participant (`StreamSamples`) or mixed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Protocol

import numpy as np

from bot.audio.resample import Resampler
from bot.config import AudioConfig
from bot.errors import AudioInputError, DeviceError
from bot.messages import SAMPLE_RATE

logger = logging.getLogger(__name__)

DEVICES_HINT = "run `captionbot devices` to list them"
PORTAUDIO_INSTALL = (
    "pip install 'captionbot[portaudio]' (it compiles PyAudio: "
    "sudo apt-get install gcc libc6-dev portaudio19-dev first)"
)
PULSE_INSTALL = "sudo apt-get install pulseaudio-utils"
# How often a sound-server source is checked to still exist (seconds).
PRESENCE_CHECK_S = 1.0


class DeviceLost(Exception):
    """The device stopped delivering audio (unplugged, server restarted): reopen it."""


@dataclass(frozen=True)
class StreamSamples:
    """Audio of one of several streams a source delivers together (a meeting's participants)."""

    stream_id: str
    samples: np.ndarray
    speaker: str | None = None


class AudioSource(Protocol):
    name: str

    def open(self) -> None:
        """Start delivering audio; raise DeviceError if the device cannot be opened."""
        ...

    def read(self) -> np.ndarray | list[StreamSamples] | None:
        """The next chunk (blocking about chunk_s); None when the source ended for good.
        A source of several streams returns a list, one entry per stream that has audio.
        Raise DeviceLost when the device went away (the capture reopens it)."""
        ...

    def close(self) -> None: ...


class FileSource:
    """A recording played at real-time speed, paced by the wall clock."""

    def __init__(self, path: Path, chunk_s: float, realtime: bool = True) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self.name = f"file {self.path.name}"
        self.chunk = max(1, round(chunk_s * SAMPLE_RATE))
        self._audio = np.zeros(0, dtype=np.float32)
        self._position = 0
        self._started = 0.0

    def open(self) -> None:
        from bot.audio.decode import load_audio

        if not self._audio.size:
            self._audio = load_audio(self.path)
        self._started = time.monotonic() - self._position / SAMPLE_RATE

    def read(self) -> np.ndarray | None:
        if self._position >= len(self._audio):
            return None
        end = min(self._position + self.chunk, len(self._audio))
        due = self._started + end / SAMPLE_RATE
        delay = due - time.monotonic()
        if self.realtime and delay > 0:
            time.sleep(delay)
        samples = self._audio[self._position : end]
        self._position = end
        return samples

    def close(self) -> None:
        pass


class StdinSource:
    """Raw mono PCM from standard input, converted to 16 kHz float32.

    Reads file descriptor 0 itself: in a multiprocessing child `sys.stdin` is /dev/null while
    descriptor 0 is still the pipe the bot was started with. A read waits at most `wait_s`, so
    the capture loop can notice `stop` while the writer is silent."""

    def __init__(
        self,
        fmt: str,
        rate: int,
        chunk_s: float,
        stream: BinaryIO | None = None,
        wait_s: float = 0.2,
    ) -> None:
        self.name = f"stdin {fmt} {rate} Hz"
        self.dtype = np.dtype("<i2") if fmt == "s16le" else np.dtype("<f4")
        self.frame_bytes = round(chunk_s * rate) * self.dtype.itemsize
        self.rate = rate
        self.wait_s = wait_s
        self._fd = stream.fileno() if stream is not None else 0
        self._pending = b""
        self._ended = False
        self._resampler = Resampler(rate, 1)

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        """A chunk; an empty array when nothing arrived within `wait_s`; None at end of input."""
        deadline = time.monotonic() + self.wait_s
        while not self._ended and len(self._pending) < self.frame_bytes:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                break
            data = os.read(self._fd, self.frame_bytes - len(self._pending))
            if not data:
                self._ended = True
            self._pending += data
        usable = len(self._pending) - len(self._pending) % self.dtype.itemsize
        if self._ended and not usable:
            return None
        if len(self._pending) < self.frame_bytes and not self._ended:
            return np.zeros(0, dtype=np.float32)
        data, self._pending = self._pending[:usable], self._pending[usable:]
        samples = np.frombuffer(data, dtype=self.dtype).astype(np.float32)
        if self.dtype.kind == "i":
            samples /= 32768.0
        return self._resampler.convert(samples.reshape(-1, 1))

    def close(self) -> None:
        pass


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class PulseSource:
    """A PulseAudio/PipeWire source read with `parec` (16 kHz mono float32 from the server)."""

    def __init__(self, device: str | None, chunk_s: float, monitor: bool) -> None:
        self.device = device
        self.monitor = monitor
        self.chunk_bytes = round(chunk_s * SAMPLE_RATE) * 4
        self.name = f"pulse {device or ('default monitor' if monitor else 'default input')}"
        self._process: subprocess.Popen | None = None

    def open(self) -> None:
        device = self.device or _default_pulse_source(self.monitor)
        known = pulse_sources()
        if device not in known:
            raise DeviceError(f"audio device '{device}' not found: {DEVICES_HINT}")
        self.name = f"pulse {device}"
        self._device = device
        self._checked = time.monotonic()
        self._process = subprocess.Popen(
            [
                "parec",
                f"--device={device}",
                "--format=float32le",
                f"--rate={SAMPLE_RATE}",
                "--channels=1",
                "--latency-msec=20",
                "--raw",
                "--client-name=captionbot",
                "--stream-name=captions",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def read(self) -> np.ndarray | None:
        assert self._process is not None and self._process.stdout is not None
        data = _read_exactly(self._process.stdout, self.chunk_bytes)
        if len(data) < self.chunk_bytes:
            error = self._process.stderr.read().decode(errors="replace").strip()
            raise DeviceLost(f"{self.name} stopped: {error or 'parec ended'}")
        # When a source disappears the server moves its recordings elsewhere without a word;
        # we would caption the wrong audio, so treat that as a lost device.
        if time.monotonic() - self._checked >= PRESENCE_CHECK_S:
            self._checked = time.monotonic()
            if self._device not in pulse_sources():
                raise DeviceLost(f"{self.name} disappeared")
        return np.frombuffer(data, dtype="<f4").astype(np.float32)

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


def pulse_available() -> bool:
    """A PulseAudio-compatible server (PulseAudio or pipewire-pulse) answers."""
    if shutil.which("pactl") is None or shutil.which("parec") is None:
        return False
    try:
        done = subprocess.run(["pactl", "info"], capture_output=True, timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def pulse_sources() -> dict[str, str]:
    """Source name → description of every PulseAudio source (monitors included)."""
    done = subprocess.run(
        ["pactl", "list", "short", "sources"], capture_output=True, text=True, timeout=5
    )
    sources = {}
    for line in done.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            sources[parts[1]] = "\t".join(parts[2:])
    return sources


def _default_pulse_source(monitor: bool) -> str:
    command = "get-default-sink" if monitor else "get-default-source"
    done = subprocess.run(["pactl", command], capture_output=True, text=True, timeout=5)
    name = done.stdout.strip()
    if done.returncode != 0 or not name:
        kind = "output sink" if monitor else "input"
        raise DeviceError(f"the sound server has no default {kind}: {DEVICES_HINT}")
    return f"{name}.monitor" if monitor else name


class PyAudioSource:
    """A PortAudio input device, by index or (part of its) name."""

    def __init__(self, device: str | int | None, chunk_s: float) -> None:
        self.device = device
        self.chunk_s = chunk_s
        self.name = f"input {device if device is not None else 'default'}"
        self._audio = None
        self._stream = None
        self._resampler: Resampler | None = None

    def open(self) -> None:
        pyaudio = _import_pyaudio(self.name)
        with quiet_stderr():
            self._audio = pyaudio.PyAudio()
        try:
            info = self._find(self._audio)
        except DeviceError:
            self.close()
            raise
        rate = int(info["defaultSampleRate"])
        channels = max(1, min(int(info["maxInputChannels"]), 2))
        self.name = f"input {info['index']}: {info['name']}"
        self._frames = max(1, round(self.chunk_s * rate))
        self._channels = channels
        self._resampler = Resampler(rate, channels)
        try:
            with quiet_stderr():
                self._stream = self._audio.open(
                    format=pyaudio.paFloat32,
                    channels=channels,
                    rate=rate,
                    input=True,
                    input_device_index=int(info["index"]),
                    frames_per_buffer=self._frames,
                )
        except OSError as error:
            self.close()
            raise DeviceError(f"cannot open audio device {self.name}: {error}") from None

    def _describe(self) -> dict:
        """PortAudio's description of the device (DeviceError if there is none such)."""
        pyaudio = _import_pyaudio(self.name)
        with quiet_stderr():
            audio = pyaudio.PyAudio()
        try:
            return self._find(audio)
        finally:
            audio.terminate()

    def _find(self, audio) -> dict:
        inputs = [
            audio.get_device_info_by_index(i)
            for i in range(audio.get_device_count())
            if audio.get_device_info_by_index(i)["maxInputChannels"] > 0
        ]
        if self.device is None:
            try:
                return audio.get_default_input_device_info()
            except OSError:
                raise DeviceError(f"no default audio input: {DEVICES_HINT}") from None
        for info in inputs:
            if self.device == info["index"] or str(self.device) == str(info["index"]):
                return info
        matches = [i for i in inputs if str(self.device).lower() in i["name"].lower()]
        if not matches:
            raise DeviceError(f"audio device '{self.device}' not found: {DEVICES_HINT}")
        return matches[0]

    def read(self) -> np.ndarray | None:
        assert self._stream is not None and self._resampler is not None
        try:
            data = self._stream.read(self._frames, exception_on_overflow=False)
        except OSError as error:
            raise DeviceLost(f"{self.name} stopped: {error}") from None
        samples = np.frombuffer(data, dtype=np.float32).reshape(-1, self._channels)
        return self._resampler.convert(samples)

    def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None
        if self._audio is not None:
            self._audio.terminate()
            self._audio = None


def create_audio_source(config: AudioConfig) -> AudioSource:
    """The source the configuration names (sound server first for loopback and microphone)."""
    if config.source == "sample":
        from bot.audio.samples import bundled_sample

        return FileSource(bundled_sample(), config.chunk_s)
    if config.source == "file":
        if not config.file:
            raise AudioInputError("audio.source is file but audio.file is not set: use --file PATH")
        path = Path(config.file)
        if not path.is_file():
            raise AudioInputError(f"audio file {path} does not exist")
        return FileSource(path, config.chunk_s)
    if config.source == "stdin":
        return StdinSource(config.stdin_format, config.stdin_rate, config.chunk_s)
    if config.source == "meeting":
        from bot.audio.meeting import MeetingAudioSource

        return MeetingAudioSource(config.meeting_port, config.chunk_s, config.stream_id)
    monitor = config.source == "loopback"
    if isinstance(config.device, int) or str(config.device).isdigit():
        return PyAudioSource(int(str(config.device)), config.chunk_s)
    if pulse_available() and (
        config.device is None
        or config.device in pulse_sources()
        # Neither backend knows it: PulseSource.open says so and points to `captionbot devices`.
        or not _is_portaudio_input(config.device)
    ):
        return PulseSource(config.device, config.chunk_s, monitor)
    if monitor and config.device is None:
        raise DeviceError(
            f"loopback capture needs PulseAudio or PipeWire: {_pulse_problem()}, "
            "or name an ALSA loopback input with --device"
        )
    if not pyaudio_available():
        raise DeviceError(
            f"no way to capture audio: {_pulse_problem()}, or for PortAudio (ALSA) inputs "
            f"{PORTAUDIO_INSTALL}"
        )
    return PyAudioSource(config.device, config.chunk_s)


def pyaudio_available() -> bool:
    """PyAudio (the optional `portaudio` extra) is installed."""
    return importlib.util.find_spec("pyaudio") is not None


def _import_pyaudio(device: str) -> ModuleType:
    """The pyaudio module, or a DeviceError saying how to install it."""
    try:
        import pyaudio
    except ImportError:
        raise DeviceError(
            f"{device} is a PortAudio device, which needs PyAudio: {PORTAUDIO_INSTALL}; "
            "sound-server sources (names from `captionbot devices`) work without it"
        ) from None
    return pyaudio


def _pulse_problem() -> str:
    """Why the sound-server path is unavailable, and what to do about it."""
    if shutil.which("parec") is None or shutil.which("pactl") is None:
        return f"parec and pactl are not installed ({PULSE_INSTALL})"
    return "no PulseAudio/PipeWire server answers (start one, or use --headless)"


def _is_portaudio_input(name: str | None) -> bool:
    """Whether a PortAudio input's name contains `name` (e.g. ALSA's "pulse" device)."""
    try:
        PyAudioSource(name, 0.1)._describe()
    except (DeviceError, ImportError):
        return False
    return True


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: PortAudio prints ALSA/JACK probing noise there."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
