"""The capture process on real sources: a PulseAudio loopback sink, files, stdin, lost devices."""

from __future__ import annotations

import multiprocessing as mp
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import english_wer

from bot.audio.capture import Capture, capture_main
from bot.audio.pulse import PulseServer
from bot.audio.sources import FileSource, PulseSource, StdinSource, create_audio_source
from bot.config import AudioConfig
from bot.errors import DeviceError
from bot.messages import SAMPLE_RATE, AudioChunk, EndOfStream, StageError, StageReport

SINK = "meeting_app"
ITEM = "ljspeech_LJ001-0101"


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    if shutil.which("pulseaudio") is None or shutil.which("parec") is None:
        pytest.skip("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils)")
    with PulseServer(tmp_path_factory.mktemp("pulse"), [SINK]) as server:
        yield server


def _collect(chunks: mp.Queue, until: float) -> list[AudioChunk | EndOfStream]:
    out = []
    while time.monotonic() < until:
        try:
            out.append(chunks.get(timeout=0.1))
        except queue.Empty:
            continue
        if isinstance(out[-1], EndOfStream):
            break
    return out


def _audio(messages) -> np.ndarray:
    return np.concatenate([m.samples for m in messages if isinstance(m, AudioChunk)])


def test_loopback_capture_of_a_meeting_app_sink_holds_the_speech(
    pulse, shared_data, manifest, tiny_engine
) -> None:
    row = manifest[ITEM]
    config = AudioConfig(source="loopback", device=f"{SINK}.monitor", stream_id="room")
    context = mp.get_context("spawn")
    chunks, events, stop = context.Queue(), context.Queue(), context.Event()
    origin = time.monotonic()
    process = context.Process(target=capture_main, args=(config, chunks, stop, events, origin))
    process.start()
    time.sleep(1.5)  # the capture process is up and recording
    player = pulse.play(shared_data / row["audio"], SINK)
    player.wait(timeout=30)
    messages = _collect(chunks, time.monotonic() + 1.0)
    stop.set()
    messages += _collect(chunks, time.monotonic() + 1.0)
    process.join(5)
    assert process.exitcode == 0
    audio_chunks = [m for m in messages if isinstance(m, AudioChunk)]
    assert all(c.stream_id == "room" for c in audio_chunks)
    # One continuous clock: every chunk starts where the previous one ended.
    for before, after in zip(audio_chunks, audio_chunks[1:]):
        assert after.start == pytest.approx(before.start + len(before.samples) / SAMPLE_RATE)
    audio = _audio(messages)
    assert len(audio) / SAMPLE_RATE > row["duration_s"]
    text = " ".join(w.text for w in tiny_engine.transcribe_offline(audio, "transcribe", "en").words)
    assert english_wer(row["text"], text) < 0.15


def test_a_missing_sound_server_device_is_a_one_line_error(pulse) -> None:
    source = PulseSource("no_such_sink.monitor", 0.1, monitor=True)
    with pytest.raises(DeviceError, match="no_such_sink.monitor.*captionbot devices"):
        source.open()


def test_a_lost_loopback_device_is_reopened_and_capture_goes_on(pulse) -> None:
    config = AudioConfig(source="loopback", device="flaky.monitor", reopen_backoff_s=0.2)
    module = pulse.pactl("load-module", "module-null-sink", "sink_name=flaky").stdout.strip()
    chunks: queue.Queue = queue.Queue()
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    capture = Capture(create_audio_source(config), config, chunks, events, time.monotonic())
    thread = threading.Thread(target=capture.run, args=(stop,))
    thread.start()
    time.sleep(1.0)
    pulse.pactl("unload-module", module)  # the device disappears
    time.sleep(1.0)
    pulse.pactl("load-module", "module-null-sink", "sink_name=flaky")
    before = capture.counters.chunks
    deadline = time.monotonic() + 15
    while capture.counters.chunks < before + 10 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(5)
    assert capture.counters.reopens >= 1
    assert capture.counters.chunks >= before + 10, "capture resumed after the device came back"
    starts = [m.start for m in list(chunks.queue) if isinstance(m, AudioChunk)]
    assert starts == sorted(starts)
    assert isinstance(events.queue[-1], StageReport)


def test_a_file_is_played_at_real_time_speed_and_ends_the_stream(shared_data, manifest) -> None:
    row = manifest["ljspeech_LJ001-0104"]  # 2.4 s
    config = AudioConfig(source="file", file=str(shared_data / row["audio"]))
    chunks: queue.Queue = queue.Queue()
    started = time.monotonic()
    Capture(create_audio_source(config), config, chunks, queue.Queue(), started).run(
        threading.Event()
    )
    took = time.monotonic() - started
    messages = list(chunks.queue)
    assert isinstance(messages[-1], EndOfStream)
    assert len(_audio(messages)) / SAMPLE_RATE == pytest.approx(row["duration_s"], abs=0.01)
    assert took >= row["duration_s"] - 0.2  # paced like a live source, not read at once
    last = messages[-2]
    # audio time matches the wall clock it was played on
    assert last.start + len(last.samples) / SAMPLE_RATE == pytest.approx(took, abs=0.3)


def test_stdin_pcm_from_another_program_is_converted_to_16k_float(shared_data, manifest) -> None:
    row = manifest["ljspeech_LJ001-0104"]
    decoder = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-i", str(shared_data / row["audio"])]
        + ["-f", "s16le", "-ac", "1", "-ar", "48000", "-"],
        stdout=subprocess.PIPE,
    )
    source = StdinSource("s16le", 48000, 0.1, stream=decoder.stdout)
    source.open()
    parts = []
    while (samples := source.read()) is not None:
        parts.append(samples)
    decoder.wait()
    audio = np.concatenate(parts)
    assert audio.dtype == np.float32
    assert len(audio) / SAMPLE_RATE == pytest.approx(row["duration_s"], abs=0.05)
    assert 0.05 < np.abs(audio).max() <= 1.0


def test_when_the_worker_falls_behind_the_oldest_audio_is_dropped_and_counted(
    shared_data, manifest
) -> None:
    row = manifest["ljspeech_LJ001-0104"]
    source = FileSource(shared_data / row["audio"], 0.1, realtime=False)
    config = AudioConfig(source="file", file="x")
    chunks: queue.Queue = queue.Queue(maxsize=5)
    # An origin in the future puts the first chunk at 0 s however late the first read comes,
    # so chunk starts count samples only.
    later = time.monotonic() + 60.0
    capture = Capture(source, config, chunks, queue.Queue(), later, resync=False)
    capture.run(threading.Event())
    kept = list(chunks.queue)
    assert len(kept) == 5 and isinstance(kept[-1], EndOfStream)
    assert capture.counters.dropped_chunks == capture.counters.chunks - 4
    # the newest audio is what is kept
    assert kept[-2].start == pytest.approx(capture.counters.seconds - 0.1, abs=0.11)


def test_capture_main_reports_a_missing_file_as_a_stage_error(tmp_path: Path) -> None:
    events: queue.Queue = queue.Queue()
    config = AudioConfig(source="file", file=str(tmp_path / "absent.wav"))
    capture_main(config, queue.Queue(), threading.Event(), events, time.monotonic())
    (error,) = list(events.queue)
    assert isinstance(error, StageError) and "absent.wav" in error.message


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("PulseAudio loopback capture is Linux-only")
