"""The compositor's parts on real components: caption rendering, sources, sinks, the loop."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import pyvirtualcam

from bot.config import CaptionStyle, Config, SinksConfig, VideoConfig, load_config
from bot.errors import DeviceError, OutputError
from bot.messages import CaptionsDrawn, CaptionUpdate, CommittedWord, StageReport, Word
from bot.video.captions import CaptionRenderer
from bot.video.compositor import Compositor
from bot.video.sinks import FfmpegSink, VirtualCameraSink, create_sinks
from bot.video.sources import BackgroundSource, ScreenSource, create_video_source

W, H = 640, 360
GREY = np.array([0x30, 0x30, 0x30], dtype=np.uint8)


def _frame() -> np.ndarray:
    return np.full((H, W, 3), GREY, dtype=np.uint8)


def _style(**changes: object) -> CaptionStyle:
    return CaptionStyle(**{"font_size": 28, **changes})


def _changed_rows(frame: np.ndarray) -> np.ndarray:
    return np.where((frame != GREY).any(axis=(1, 2)))[0]


def _pixels_near(frame: np.ndarray, bgr: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(frame.astype(int) - np.array(bgr)).max(axis=2) <= tolerance).sum())


def _update(committed: str = "", tentative: str = "", stream: str = "meeting") -> CaptionUpdate:
    return CaptionUpdate(
        stream,
        0.0,
        tuple(CommittedWord(" " + w, 0, 0, 1, 0, 0) for w in committed.split()),
        tuple(Word(" " + w, 0, 0) for w in tentative.split()),
    )


# -- rendering ------------------------------------------------------------------------------------


def test_committed_text_is_drawn_in_the_main_colour_and_tentative_text_greyed() -> None:
    renderer = CaptionRenderer(_style(color="#ffffff", tentative_color="#808080"), W, H)
    committed_only, both = _frame(), _frame()
    renderer.set_text("Grüße aus Köln", "")
    renderer.draw(committed_only)
    renderer.set_text("Grüße aus Köln", "und mehr")
    renderer.draw(both)
    grey_before = _pixels_near(committed_only, (128, 128, 128), 6)  # antialiased edges
    assert _pixels_near(committed_only, (255, 255, 255)) > 200
    assert _pixels_near(both, (128, 128, 128), 6) > 3 * grey_before + 100
    rows = _changed_rows(both)
    assert rows.min() > H // 2, "captions sit at the bottom"


def test_captions_can_sit_at_the_top() -> None:
    renderer = CaptionRenderer(_style(position="top"), W, H)
    frame = _frame()
    renderer.set_text("hello there", "")
    renderer.draw(frame)
    assert _changed_rows(frame).max() < H // 2


def test_cjk_text_is_drawn_with_real_glyphs_not_boxes() -> None:
    masks = []
    for text in ("你好世界", "東京大学"):
        renderer = CaptionRenderer(_style(), W, H)
        frame = _frame()
        renderer.set_text(text, "")
        renderer.draw(frame)
        masks.append((frame > 215).all(axis=2))
    assert masks[0].sum() > 100
    # Missing glyphs would draw the same box for every character.
    assert (masks[0] != masks[1]).sum() > 0.2 * masks[0].sum()


def test_only_the_newest_lines_are_shown_and_old_lines_scroll_away() -> None:
    renderer = CaptionRenderer(_style(lines=2), W, H)
    two, many = _frame(), _frame()
    renderer.set_text("one two three four five six seven eight nine ten eleven twelve", "")
    renderer.draw(two)
    two_rows = _changed_rows(two)
    long_text = " ".join(f"word{i}" for i in range(200))
    renderer.set_text(long_text, "")
    renderer.draw(many)
    many_rows = _changed_rows(many)
    assert many_rows.max() - many_rows.min() == two_rows.max() - two_rows.min()
    assert len(renderer.lines) == 2
    assert renderer.lines[-1].endswith("word199")
    shown = " ".join(renderer.lines).split()
    assert shown == long_text.split()[-len(shown) :]


def test_unchanged_text_is_not_rendered_again() -> None:
    renderer = CaptionRenderer(_style(), W, H)
    assert renderer.set_text("same words", "tail")
    assert not renderer.set_text("same words", "tail")
    assert renderer.renders == 1


def test_a_bad_colour_names_the_config_key() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="captions.tentative_color"):
        CaptionRenderer(_style(tentative_color="grey"), W, H)


# -- sources ---------------------------------------------------------------------------------------


def test_background_colour_and_image(tmp_path: Path) -> None:
    colour = BackgroundSource("#102030", W, H)
    colour.open()
    assert tuple(colour.read()[0, 0]) == (0x30, 0x20, 0x10)
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 2] = 255
    cv2.imwrite(str(tmp_path / "bg.png"), image)
    picture = BackgroundSource(str(tmp_path / "bg.png"), W, H)
    picture.open()
    frame = picture.read()
    assert frame.shape == (H, W, 3) and tuple(frame[H // 2, W // 2]) == (0, 0, 255)


def test_missing_camera_and_video_file_are_one_line_errors() -> None:
    with pytest.raises(DeviceError, match="/dev/video42.*captionbot devices"):
        create_video_source(VideoConfig(source="camera", camera="/dev/video42")).open()
    with pytest.raises(DeviceError, match="nowhere.mp4"):
        create_video_source(VideoConfig(source="file", file="/nowhere.mp4")).open()


@pytest.fixture()
def xvfb():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb)")
    display = ":87"
    server = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path("/tmp/.X11-unix/X87").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield display
    server.terminate()
    server.wait()


PAINTER = """
import tkinter
root = tkinter.Tk()
root.geometry("800x600+0+0")
root.configure(background="#ff8000")
root.after(20000, root.destroy)
root.mainloop()
"""


def test_screen_capture_under_xvfb_shows_what_is_on_the_screen(xvfb: str) -> None:
    # A window painted in a known colour covers the screen; capture a region of it.
    try:
        import tkinter  # noqa: F401
    except ImportError:
        pytest.skip("tkinter is not available to paint the test screen")
    painter = subprocess.Popen([sys.executable, "-c", PAINTER], env=dict(os.environ, DISPLAY=xvfb))
    source = ScreenSource(xvfb, (100, 100, 320, 180), W, H)
    source.open()
    try:
        deadline = time.monotonic() + 10
        frame = source.read()
        while tuple(frame[H // 2, W // 2]) != (0x00, 0x80, 0xFF) and time.monotonic() < deadline:
            time.sleep(0.1)
            frame = source.read()
    finally:
        source.close()
        painter.kill()
    assert frame.shape == (H, W, 3)
    assert tuple(frame[H // 2, W // 2]) == (0x00, 0x80, 0xFF)


def test_screen_capture_without_a_display_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(DeviceError, match="DISPLAY"):
        ScreenSource(None, None, W, H).open()


# -- sinks -----------------------------------------------------------------------------------------


class RecordingCamera:
    """A pyvirtualcam backend that keeps the frames it is sent (no /dev/video here)."""

    frames: list[np.ndarray] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device, **kw) -> None:
        self.width, self.height = width, height
        self._device = device or "recording"

    def send(self, frame: np.ndarray) -> None:
        RecordingCamera.frames.append(frame.reshape(self.height, self.width, 3).copy())

    def close(self) -> None:
        pass

    def device(self) -> str:
        return self._device

    def native_fourcc(self):
        return None


def test_virtual_camera_receives_frames_with_captions_drawn() -> None:
    pyvirtualcam.register_backend("recording", RecordingCamera)
    RecordingCamera.frames.clear()
    config = load_config(
        None,
        {
            "video.width": W,
            "video.height": H,
            "video.fps": 20,
            "sinks.virtual_camera": True,
            "sinks.virtual_camera_backend": "recording",
        },
    )
    updates: queue.Queue = queue.Queue()
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    compositor = Compositor(config)
    thread = threading.Thread(target=compositor.run, args=(updates, stop, events))
    thread.start()
    time.sleep(0.3)
    updates.put(_update("hello from the meeting", "and more"))
    time.sleep(0.5)
    stop.set()
    thread.join(5)
    frames = RecordingCamera.frames
    assert len(frames) >= 10
    background = frames[0][H // 2, W // 2]
    captioned = [f for f in frames if (f[H // 2 :] != background).any()]
    assert captioned and _pixels_near(captioned[-1], (255, 255, 255)) > 200
    drawn = [e for e in events.queue if isinstance(e, CaptionsDrawn)]
    assert drawn and drawn[0].committed_words == 4 and drawn[0].tentative_words == 2
    assert isinstance(list(events.queue)[-1], StageReport)


def test_without_a_loopback_device_the_virtual_camera_says_how_to_create_one() -> None:
    if list(Path("/dev").glob("video*")):
        pytest.skip("this machine has video devices")
    with pytest.raises(DeviceError, match="modprobe v4l2loopback"):
        VirtualCameraSink(W, H, 30, None, "v4l2loopback")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _captioned_frame() -> np.ndarray:
    renderer = CaptionRenderer(_style(font_size=40), W, H)
    frame = _frame()
    renderer.set_text("STREAM TEST", "")
    renderer.draw(frame)
    return frame


def test_the_udp_stream_decoded_by_ffmpeg_shows_the_caption_pixels(tmp_path: Path) -> None:
    port = _free_udp_port()
    received = tmp_path / "received.png"
    reader = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-y", "-i", f"udp://127.0.0.1:{port}?timeout=8000000"]
        + ["-frames:v", "1", "-update", "1", str(received)],
        stderr=subprocess.PIPE,
    )
    time.sleep(0.5)
    sink = FfmpegSink(f"udp://127.0.0.1:{port}?pkt_size=1316", W, H, 25)
    frame = _captioned_frame()
    deadline = time.monotonic() + 15
    while reader.poll() is None and time.monotonic() < deadline:
        sink.send(frame)
        time.sleep(0.04)
    sink.close()
    reader.wait(5)
    decoded = cv2.imread(str(received))
    assert decoded is not None, reader.stderr.read() if reader.stderr else ""
    rows = slice(H - 120, H)
    assert _pixels_near(decoded[rows], (255, 255, 255), 40) > 100
    assert _pixels_near(decoded[: H // 2], (255, 255, 255), 40) == 0


def test_the_file_sink_writes_a_playable_mp4_of_the_right_duration(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    (sink,) = create_sinks(SinksConfig(file=str(path)), W, H, 25)
    frame = _captioned_frame()
    for _ in range(75):  # 3 s at 25 fps
        sink.send(frame)
        time.sleep(0.04)
    sink.close()
    assert sink.dropped == 0
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"]
        + ["-show_entries", "stream=nb_read_frames:format=duration", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
    )
    numbers = [float(x) for x in probe.stdout.replace(",", "\n").split()]
    assert 75 in numbers and any(abs(x - 3.0) < 0.1 for x in numbers)
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read()
    assert ok and _pixels_near(first[H - 120 :], (255, 255, 255), 40) > 100


class StallingSource(BackgroundSource):
    """The meeting video, except that one read takes `stall_s` (a busy machine)."""

    def __init__(self, stall_at: int, stall_s: float) -> None:
        super().__init__("#202020", W, H)
        self.reads, self.stall_at, self.stall_s = 0, stall_at, stall_s

    def read(self) -> np.ndarray:
        self.reads += 1
        if self.reads == self.stall_at:
            time.sleep(self.stall_s)
        return super().read()


def test_a_compositor_that_falls_behind_still_writes_a_file_that_keeps_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stalled.mp4"
    config = Config(video=VideoConfig(width=W, height=H, fps=25), sinks=SinksConfig(file=str(path)))
    compositor = Compositor(config)
    source = StallingSource(stall_at=10, stall_s=1.0)
    source.open()
    (sink,) = create_sinks(config.sinks, W, H, 25)
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    started = time.monotonic()
    timer.start()
    compositor._loop(source, [sink], queue.Queue(), stop, queue.Queue())
    ran_s = time.monotonic() - started
    sink.close()
    assert compositor.dropped_frames >= 20  # the second it stalled
    capture = cv2.VideoCapture(str(path))
    written = 0
    while capture.read()[0]:
        written += 1
    assert written == compositor.frames + compositor.dropped_frames
    assert abs(written / 25 - ran_s) < 0.2, (written, ran_s)


def test_a_file_sink_into_a_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="missing"):
        FfmpegSink(str(tmp_path / "no" / "such" / "out.mp4"), W, H, 25)


def test_compositor_in_its_own_process_writes_the_captioned_video(tmp_path: Path) -> None:
    import multiprocessing as mp

    from bot.video.compositor import compositor_main

    path = tmp_path / "meeting.mp4"
    config = Config(
        video=VideoConfig(width=W, height=H, fps=25),
        sinks=SinksConfig(file=str(path)),
    )
    context = mp.get_context("spawn")
    updates, events, stop = context.Queue(), context.Queue(), context.Event()
    process = context.Process(target=compositor_main, args=(config, updates, stop, events))
    process.start()
    time.sleep(2.0)
    updates.put(_update("a caption in the video"))
    time.sleep(1.0)
    stop.set()
    process.join(10)
    assert process.exitcode == 0
    got = []
    while not events.empty():
        got.append(events.get())
    assert any(isinstance(e, CaptionsDrawn) for e in got)
    report = [e for e in got if isinstance(e, StageReport)][-1]
    assert report.counters["frames"] > 20
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    # Every frame drawn is in the file, and each one the compositor was late for is repeated.
    assert report.counters["sink_dropped_frames"] == 0
    assert len(frames) == report.counters["frames"] + report.counters["dropped_frames"]
    assert _pixels_near(frames[-1][H - 120 :], (255, 255, 255), 40) > 100
    assert _pixels_near(frames[0][H - 120 :], (255, 255, 255), 40) == 0
