"""Where captioned frames go: a virtual camera, a low-latency stream, an MP4 file, a preview,
the bot's camera in a meeting it joined (meeting.py).

Sinks never block the compositor for long: ffmpeg-based sinks are fed by a writer thread
through a queue, and a frame that does not fit is dropped (counted). A live stream or preview
queues two frames (late frames are worse than dropped ones); a file queues a few seconds, so
the encoder starting up or falling behind for a moment under load costs the file no frames.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from bot.config import SinksConfig
from bot.errors import DeviceError, OutputError

logger = logging.getLogger(__name__)

LIVE_QUEUE_FRAMES = 2
FILE_QUEUE_S = 4.0
FILE_QUEUE_BYTES = 256 * 1024 * 1024

V4L2LOOPBACK_HINT = (
    "create one with `sudo modprobe v4l2loopback exclusive_caps=1 card_label=captionbot` "
    "(package v4l2loopback-dkms)"
)


class VideoSink(Protocol):
    name: str
    dropped: int

    def send(self, frame: np.ndarray, late: int = 0) -> None:
        """Take one BGR frame, after `late` frames the compositor missed (a recording writes this
        one in their place, so the file keeps time); raise OutputError if the sink died."""
        ...

    def close(self) -> None: ...


class VirtualCameraSink:
    """pyvirtualcam: v4l2loopback on Linux (OBS Virtual Camera on Windows/macOS)."""

    def __init__(
        self, width: int, height: int, fps: float, device: str | None, backend: str | None
    ) -> None:
        import pyvirtualcam

        self.name = "virtual camera"
        self.dropped = 0
        try:
            self._camera = pyvirtualcam.Camera(
                width,
                height,
                fps,
                fmt=pyvirtualcam.PixelFormat.BGR,
                device=device,
                backend=backend,
            )
        except RuntimeError as error:
            where = f" '{device}'" if device else ""
            raise DeviceError(
                f"no virtual camera device{where} ({str(error).splitlines()[0]}): "
                + V4L2LOOPBACK_HINT
            ) from None
        self.name = f"virtual camera {self._camera.device}"
        logger.info("publishing to %s", self.name)

    def send(self, frame: np.ndarray, late: int = 0) -> None:
        self._camera.send(frame)

    def close(self) -> None:
        self._camera.close()


def ffmpeg_output_args(target: str) -> list[str]:
    """Encoder and container for a target: stream URL (udp/srt/rtmp/...) or file path."""
    low_latency = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"]
    yuv = ["-pix_fmt", "yuv420p"]
    if target.startswith("rtmp://") or target.startswith("rtmps://"):
        return [*low_latency, *yuv, "-g", "60", "-f", "flv", target]
    if "://" in target:
        return [*low_latency, *yuv, "-g", "30", "-f", "mpegts", target]
    # Fragmented MP4: playable even if the bot is killed before it finalizes the file.
    return [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        *yuv,
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-g",
        "60",
        "-f",
        "mp4",
        target,
    ]


class FfmpegSink:
    """Raw BGR frames piped into an ffmpeg process (stream or file) or into ffplay (preview)."""

    def __init__(
        self, target: str, width: int, height: int, fps: float, preview: bool = False
    ) -> None:
        self.name = "preview" if preview else target
        self.dropped = 0
        program = "ffplay" if preview else "ffmpeg"
        if shutil.which(program) is None:
            raise OutputError(f"{program} is not installed: install ffmpeg to use {self.name}")
        if preview and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise OutputError("preview needs a display: unset sinks.preview or run on a desktop")
        if not preview and "://" not in target:
            folder = Path(target).parent
            if not folder.is_dir():
                raise OutputError(f"cannot write video file {target}: folder {folder} is missing")
        raw = [
            "-f",
            "rawvideo",
            "-pixel_format" if preview else "-pix_fmt",
            "bgr24",
            "-video_size" if preview else "-s",
            f"{width}x{height}",
            "-framerate" if preview else "-r",
            f"{fps:g}",
            "-i",
            "-",
        ]
        if preview:
            command = ["ffplay", "-loglevel", "error", "-window_title", "captionbot", *raw]
        else:
            command = ["ffmpeg", "-loglevel", "error", "-y", *raw, *ffmpeg_output_args(target)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        live = preview or "://" in target
        self._keeps_timeline = not live
        # (frame, times to write it)
        self._frames: queue.Queue[tuple[bytes, int] | None] = queue.Queue(
            maxsize=LIVE_QUEUE_FRAMES if live else file_queue_frames(width, height, fps)
        )
        self._close_wait_s = 5.0 if live else 5.0 + FILE_QUEUE_S
        self._error: str | None = None
        self._writer = threading.Thread(target=self._write, name=f"sink {self.name}", daemon=True)
        self._writer.start()

    def send(self, frame: np.ndarray, late: int = 0) -> None:
        if self._error is not None:
            raise OutputError(self._error)
        copies = 1 + late if self._keeps_timeline else 1
        try:
            self._frames.put_nowait((frame.tobytes(), copies))
        except queue.Full:
            self.dropped += copies

    def _write(self) -> None:
        assert self._process.stdin is not None
        while True:
            item = self._frames.get()
            if item is None:
                break
            data, copies = item
            try:
                for _ in range(copies):
                    self._process.stdin.write(data)
            except (BrokenPipeError, OSError):
                self._error = f"{self.name}: {self._stderr_tail() or 'ffmpeg stopped'}"
                return

    def _stderr_tail(self) -> str:
        try:
            self._process.wait(timeout=2)
            assert self._process.stderr is not None
            lines = self._process.stderr.read().decode(errors="replace").strip().splitlines()
        except (subprocess.TimeoutExpired, OSError, ValueError):
            return ""
        return lines[-1] if lines else ""

    def close(self) -> None:
        """Let ffmpeg finish the file or stream (a few seconds at most)."""
        with contextlib.suppress(queue.Full):
            self._frames.put(None, timeout=self._close_wait_s)
        self._writer.join(timeout=self._close_wait_s)
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def file_queue_frames(width: int, height: int, fps: float) -> int:
    """Frames a file sink may queue: FILE_QUEUE_S of video, at most FILE_QUEUE_BYTES."""
    frame_bytes = width * height * 3
    return max(LIVE_QUEUE_FRAMES, min(round(FILE_QUEUE_S * fps), FILE_QUEUE_BYTES // frame_bytes))


def create_sinks(config: SinksConfig, width: int, height: int, fps: float) -> list[VideoSink]:
    """Every configured sink, opened; on an error the ones already opened are closed."""
    sinks: list[VideoSink] = []
    try:
        if config.virtual_camera:
            sinks.append(
                VirtualCameraSink(
                    width, height, fps, config.virtual_camera_device, config.virtual_camera_backend
                )
            )
        if config.stream_url:
            sinks.append(FfmpegSink(config.stream_url, width, height, fps))
        if config.file:
            sinks.append(FfmpegSink(config.file, width, height, fps))
        if config.preview:
            sinks.append(FfmpegSink("preview", width, height, fps, preview=True))
        if config.meeting:
            from bot.video.meeting import MeetingVideoSink

            sinks.append(MeetingVideoSink(config.meeting_port, min(config.meeting_fps, fps)))
    except Exception:
        for sink in sinks:
            sink.close()
        raise
    return sinks
