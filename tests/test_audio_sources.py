"""Audio sources and device listing on real backends: PortAudio through ALSA's PulseAudio plugin,
the resampler, the sound-server device list, and which source a configuration gets."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from bot.audio.capture import Capture
from bot.audio.devices import format_devices, list_audio_devices
from bot.audio.pulse import PulseServer
from bot.audio.resample import Resampler
from bot.audio.samples import bundled_sample
from bot.audio.sources import (
    FileSource,
    PulseSource,
    PyAudioSource,
    StdinSource,
    create_audio_source,
)
from bot.config import AudioConfig
from bot.errors import AudioInputError, DeviceError
from bot.messages import SAMPLE_RATE, StageReport

SINK = "call_app"


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    if shutil.which("pulseaudio") is None or shutil.which("parec") is None:
        pytest.skip("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils)")
    with PulseServer(tmp_path_factory.mktemp("pulse"), [SINK]) as server:
        yield server


def _tone(rate: int, seconds: float, hz: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    wave_ = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.repeat(wave_[:, None], channels, axis=1)


def _peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(samples))


def _alsa_pulse_input() -> bool:
    try:
        PyAudioSource("pulse", 0.1)._describe()
    except DeviceError:
        return False
    return True


def test_a_portaudio_input_reads_the_loopback_at_its_native_rate_as_16k_mono(
    pulse, tmp_path: Path, monkeypatch
) -> None:
    if not _alsa_pulse_input():
        pytest.skip("PortAudio has no 'pulse' ALSA device (apt install libasound2-plugins)")
    monkeypatch.setenv("PULSE_SOURCE", f"{SINK}.monitor")  # what ALSA's pulse device records
    tone = (_tone(48000, 2.0, 440.0)[:, 0] * 32767).astype("<i2")
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48000)
        out.writeframes(tone.tobytes())
    config = AudioConfig(source="loopback", device="pulse")
    source = create_audio_source(config)
    assert isinstance(source, PyAudioSource)
    source.open()
    player = pulse.play(path, SINK)
    parts = []
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        parts.append(source.read())
    source.close()
    player.wait(timeout=10)
    audio = np.concatenate(parts)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(_peak_hz(audio) - 440.0) < 2.0
    assert np.abs(audio).max() == pytest.approx(0.3, abs=0.03)


def test_a_missing_portaudio_device_is_a_one_line_error() -> None:
    source = PyAudioSource("no such microphone", 0.1)
    with pytest.raises(DeviceError, match="no such microphone.*captionbot devices") as error:
        source.open()
    assert "\n" not in str(error.value)


def test_an_unknown_device_name_goes_to_the_sound_server_and_names_the_device(pulse) -> None:
    source = create_audio_source(AudioConfig(source="microphone", device="headset_mic"))
    assert isinstance(source, PulseSource)
    with pytest.raises(DeviceError, match="'headset_mic' not found.*captionbot devices"):
        source.open()


def test_the_device_list_shows_the_sink_monitor_as_a_loopback(pulse) -> None:
    devices = {d.name: d for d in list_audio_devices()}
    monitor = devices[f"{SINK}.monitor"]
    assert monitor.is_monitor and monitor.backend == "pulse"
    listing = format_devices()
    assert f"{SINK}.monitor  [loopback]" in listing
    assert "Video devices" in listing


def test_chunked_resampling_matches_resampling_at_once() -> None:
    tone = _tone(44100, 1.0, 1000.0, channels=2)
    chunked = Resampler(44100, 2)
    parts = [chunked.convert(tone[i : i + 4410]) for i in range(0, len(tone), 4410)]
    streamed = np.concatenate(parts)
    whole = Resampler(44100, 2).convert(tone)
    # libswresample keeps its filter state between chunks: no clicks at chunk borders
    n = min(len(streamed), len(whole))
    assert abs(len(streamed) - SAMPLE_RATE) < 64
    np.testing.assert_allclose(streamed[:n], whole[:n], atol=1e-4)
    assert abs(_peak_hz(streamed) - 1000.0) < 2.0


def test_the_sample_source_plays_the_bundled_speech_and_a_missing_file_is_an_input_error(
    tmp_path: Path,
) -> None:
    source = create_audio_source(AudioConfig(source="sample"))
    assert isinstance(source, FileSource) and source.path == bundled_sample()
    with pytest.raises(AudioInputError, match="absent.wav"):
        create_audio_source(AudioConfig(source="file", file=str(tmp_path / "absent.wav")))
    with pytest.raises(AudioInputError, match="audio.file"):
        create_audio_source(AudioConfig(source="file"))


CAPTURE_FROM_STDIN = """
import multiprocessing as mp, queue, time
from bot.audio.capture import capture_main
from bot.config import AudioConfig
from bot.messages import AudioChunk, EndOfStream

if __name__ == "__main__":
    context = mp.get_context("spawn")
    chunks, events, stop = context.Queue(), context.Queue(), context.Event()
    config = AudioConfig(source="stdin", stdin_format="s16le", stdin_rate=48000)
    process = context.Process(
        target=capture_main, args=(config, chunks, stop, events, time.monotonic())
    )
    process.start()
    samples = 0
    while not isinstance(message := chunks.get(timeout=30), EndOfStream):
        samples += len(message.samples)
    process.join(5)
    print(samples, process.exitcode)
"""


def test_pcm_piped_into_the_bot_reaches_the_capture_process(shared_data, manifest) -> None:
    row = manifest["ljspeech_LJ001-0104"]
    decoder = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-i", str(shared_data / row["audio"])]
        + ["-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
        stdout=subprocess.PIPE,
    )
    bot = subprocess.run(
        [sys.executable, "-c", CAPTURE_FROM_STDIN],
        stdin=decoder.stdout,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    decoder.wait()
    assert bot.returncode == 0, bot.stderr
    samples, exitcode = bot.stdout.split()
    assert int(samples) / SAMPLE_RATE == pytest.approx(row["duration_s"], abs=0.02)
    assert exitcode == "0"


def test_capture_from_a_silent_stdin_stops_when_asked() -> None:
    read_end, write_end = os.pipe()
    config = AudioConfig(source="stdin")
    with os.fdopen(read_end, "rb") as pipe, os.fdopen(write_end, "wb"):
        source = StdinSource("s16le", 16000, 0.1, stream=pipe)
        events: queue.Queue = queue.Queue()
        capture = Capture(source, config, queue.Queue(), events, time.monotonic())
        stop = threading.Event()
        thread = threading.Thread(target=capture.run, args=(stop,))
        thread.start()
        time.sleep(0.5)
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "capture hung on a silent stdin"
    assert isinstance(events.queue[-1], StageReport) and capture.counters.chunks == 0
