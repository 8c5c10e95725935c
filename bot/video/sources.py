"""Video sources of the compositor: BGR uint8 frames of the configured size.

- `BackgroundSource`: a plain colour ("#rrggbb") or an image file, for a captions-only camera.
- `ScreenSource`: the X11 screen (or a region of it: the meeting window) through mss.
- `CameraSource`: a V4L2 camera through OpenCV.
- `FileSource`: a video file through OpenCV, looped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from bot.config import VideoConfig
from bot.errors import DeviceError
from bot.video.captions import parse_colour

logger = logging.getLogger(__name__)


class VideoSource(Protocol):
    def open(self) -> None: ...

    def read(self) -> np.ndarray:
        """The current picture (never blocks for long; repeats the last one if needed)."""
        ...

    def close(self) -> None: ...


def fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale to the frame size keeping the aspect ratio, letterboxed in black."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    x, y = (width - new_w) // 2, (height - new_h) // 2
    frame[y : y + new_h, x : x + new_w] = resized
    return frame


class BackgroundSource:
    def __init__(self, background: str, width: int, height: int) -> None:
        self.background = background
        self.width, self.height = width, height
        self._frame = np.zeros((height, width, 3), dtype=np.uint8)

    def open(self) -> None:
        if self.background.startswith("#"):
            r, g, b = parse_colour(self.background, "video.background")
            self._frame[:] = (b, g, r)
            return
        image = cv2.imread(self.background, cv2.IMREAD_COLOR)
        if image is None:
            raise DeviceError(
                f"video.background '{self.background}' is neither #rrggbb nor a readable image"
            )
        self._frame = fit(image, self.width, self.height)

    def read(self) -> np.ndarray:
        return self._frame.copy()

    def close(self) -> None:
        pass


class ScreenSource:
    """X11 screen capture (mss): the whole first monitor or `region` (x, y, width, height)."""

    def __init__(
        self,
        display: str | None,
        region: tuple[int, int, int, int] | None,
        width: int,
        height: int,
    ) -> None:
        self.display = display
        self.region = region
        self.width, self.height = width, height
        self._grabber = None
        self._area: dict[str, int] = {}

    def open(self) -> None:
        import mss

        display = self.display or os.environ.get("DISPLAY")
        if not display:
            raise DeviceError(
                "screen capture needs an X display: set video.display (e.g. ':0') or DISPLAY"
            )
        try:
            self._grabber = mss.MSS(display=display)
        except Exception as error:  # mss raises its own ScreenShotError and others
            raise DeviceError(f"cannot open X display {display}: {error}") from None
        monitor = self._grabber.monitors[1 if len(self._grabber.monitors) > 1 else 0]
        if self.region is not None:
            x, y, w, h = self.region
            self._area = {"left": x, "top": y, "width": w, "height": h}
        else:
            self._area = dict(monitor)

    def read(self) -> np.ndarray:
        assert self._grabber is not None
        shot = np.asarray(self._grabber.grab(self._area))
        return fit(np.ascontiguousarray(shot[:, :, :3]), self.width, self.height)

    def close(self) -> None:
        if self._grabber is not None:
            self._grabber.close()
            self._grabber = None


class _CaptureSource:
    """Shared by camera and file: an OpenCV VideoCapture, last frame repeated on a miss."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._capture: cv2.VideoCapture | None = None
        self._last = np.zeros((height, width, 3), dtype=np.uint8)

    def _grab(self) -> np.ndarray | None:
        assert self._capture is not None
        ok, frame = self._capture.read()
        return fit(frame, self.width, self.height) if ok and frame is not None else None

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class CameraSource(_CaptureSource):
    def __init__(self, device: str, width: int, height: int) -> None:
        super().__init__(width, height)
        self.device = device

    def open(self) -> None:
        target: str | int = int(self.device) if self.device.isdigit() else self.device
        if isinstance(target, str) and not Path(target).exists():
            raise DeviceError(f"camera {target} not found: run `captionbot devices`")
        self._capture = cv2.VideoCapture(target, cv2.CAP_V4L2)
        if not self._capture.isOpened():
            raise DeviceError(f"cannot open camera {self.device}: is another program using it?")
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)

    def read(self) -> np.ndarray:
        frame = self._grab()
        if frame is not None:
            self._last = frame
        return self._last.copy()


class FileSource(_CaptureSource):
    """A video file played at the compositor's frame rate (looped if `loop`)."""

    def __init__(self, path: str, loop: bool, width: int, height: int) -> None:
        super().__init__(width, height)
        self.path = path
        self.loop = loop

    def open(self) -> None:
        if not Path(self.path).is_file():
            raise DeviceError(f"video file {self.path} does not exist")
        self._capture = cv2.VideoCapture(self.path)
        if not self._capture.isOpened():
            raise DeviceError(f"cannot read video file {self.path}")

    def read(self) -> np.ndarray:
        frame = self._grab()
        if frame is None and self.loop and self._capture is not None:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frame = self._grab()
        if frame is not None:
            self._last = frame
        return self._last.copy()


def create_video_source(config: VideoConfig) -> VideoSource:
    w, h = config.width, config.height
    if config.source == "screen":
        return ScreenSource(config.display, config.region, w, h)
    if config.source == "camera":
        return CameraSource(config.camera, w, h)
    if config.source == "file":
        if not config.file:
            raise DeviceError("video.source is file but video.file is not set")
        return FileSource(config.file, config.loop, w, h)
    return BackgroundSource(config.background, w, h)
