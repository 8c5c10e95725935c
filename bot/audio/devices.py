"""`captionbot devices`: the audio inputs (monitors included) and video devices of this machine,
and the check `run` makes of its audio device before any model loads."""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bot.audio.sources import (
    DEVICES_HINT,
    PORTAUDIO_INSTALL,
    FileSource,
    PulseSource,
    PyAudioSource,
    StdinSource,
    create_audio_source,
    pulse_available,
    pulse_sources,
    pyaudio_available,
    quiet_stderr,
)
from bot.config import AudioConfig
from bot.errors import DeviceError

V4L_SYSFS = Path("/sys/class/video4linux")
V4L2LOOPBACK_HINT = "sudo modprobe v4l2loopback exclusive_caps=1 card_label=captionbot"


@dataclass(frozen=True)
class AudioDevice:
    """An input: a sound-server source (by name) or a PortAudio device (by index).

    `is_default` marks what `run` captures without --device: the default sink's monitor for a
    monitor (loopback), the default source for an input (microphone)."""

    backend: str
    index: int | None
    name: str
    description: str
    is_monitor: bool
    channels: int = 0
    rate: int = 0
    is_default: bool = False


@dataclass(frozen=True)
class VideoDevice:
    """A V4L2 device: a camera, or a v4l2loopback device the virtual camera sink writes to."""

    path: str
    name: str
    is_loopback: bool


def list_audio_devices() -> list[AudioDevice]:
    devices = _pulse_devices() if pulse_available() else []
    if pyaudio_available():
        devices += _portaudio_inputs()
    return devices


def _pulse_devices() -> list[AudioDevice]:
    """Sources with their human names, from `pactl -f json` (PulseAudio 16+, PipeWire)."""
    default_monitor = _pactl_line("get-default-sink")
    default_monitor = f"{default_monitor}.monitor" if default_monitor else None
    default_input = _pactl_line("get-default-source")
    try:
        done = subprocess.run(
            ["pactl", "-f", "json", "list", "sources"], capture_output=True, text=True, timeout=5
        )
        sources = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        sources = None
    if not isinstance(sources, list):  # an older pactl without -f json: names only
        sources = [{"name": n, "description": d} for n, d in pulse_sources().items()]
    devices = []
    for source in sources:
        name = str(source.get("name", ""))
        properties = source.get("properties") or {}
        monitor = name.endswith(".monitor") or properties.get("device.class") == "monitor"
        default = name == (default_monitor if monitor else default_input)
        description = str(source.get("description") or properties.get("device.description", ""))
        devices.append(AudioDevice("pulse", None, name, description, monitor, is_default=default))
    return devices


def _pactl_line(command: str) -> str | None:
    try:
        done = subprocess.run(["pactl", command], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _portaudio_inputs() -> list[AudioDevice]:
    import pyaudio

    # PortAudio prints ALSA probing noise on stderr; keep the listing clean.
    with quiet_stderr():
        audio = pyaudio.PyAudio()
        try:
            infos = [audio.get_device_info_by_index(i) for i in range(audio.get_device_count())]
            try:
                default = int(audio.get_default_input_device_info()["index"])
            except OSError:
                default = None
        finally:
            audio.terminate()
    return [
        AudioDevice(
            "portaudio",
            int(info["index"]),
            str(info["name"]),
            "",
            "monitor" in str(info["name"]).lower(),
            int(info["maxInputChannels"]),
            int(info["defaultSampleRate"]),
            is_default=int(info["index"]) == default,
        )
        for info in infos
        if info["maxInputChannels"] > 0
    ]


def list_video_devices(sysfs: Path = V4L_SYSFS) -> list[VideoDevice]:
    """Every /dev/video* with the name its driver gives (v4l2loopback: its card_label)."""
    devices = {}
    for entry in sorted(sysfs.glob("video*")):
        try:
            name = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            name = ""
        # v4l2loopback devices have no hardware parent: they live under /sys/devices/virtual.
        loopback = "/devices/virtual/" in str(entry.resolve())
        devices[f"/dev/{entry.name}"] = VideoDevice(f"/dev/{entry.name}", name, loopback)
    for path in sorted(Path("/dev").glob("video*")):
        devices.setdefault(str(path), VideoDevice(str(path), "", False))
    return sorted(devices.values(), key=lambda d: (len(d.path), d.path))


def check_audio_source(config: AudioConfig) -> str:
    """What `run` will capture, checked now (DeviceError/AudioInputError, in well under a
    second) so that a wrong --device fails before the model loads."""
    source = create_audio_source(config)
    if isinstance(source, PulseSource):
        device = source.device or _default_monitor_or_input(source.monitor)
        known = pulse_sources()
        if device not in known:
            raise DeviceError(f"audio device '{device}' not found: {DEVICES_HINT}")
        kind = "loopback" if source.monitor else "microphone"
        described = f" ({known[device]})" if known[device] else ""
        default = "" if source.device else ", the default"
        return f"{kind} {device}{described}{default}"
    if isinstance(source, PyAudioSource):
        info = source._describe()  # noqa: SLF001 - the same lookup open() makes
        return f"PortAudio input {info['index']}: {info['name']}"
    if isinstance(source, FileSource):
        from bot.audio.decode import audio_duration

        audio_duration(source.path)  # an unreadable file fails here, not in the capture process
        return f"the file {source.path}, played in real time"
    if isinstance(source, StdinSource):
        return f"standard input ({source.name.removeprefix('stdin ')})"
    return source.name


def _default_monitor_or_input(monitor: bool) -> str:
    name = _pactl_line("get-default-sink" if monitor else "get-default-source")
    if not name:
        kind = "output sink" if monitor else "input"
        raise DeviceError(f"the sound server has no default {kind}: {DEVICES_HINT}")
    return f"{name}.monitor" if monitor else name


def format_devices() -> str:
    out = io.StringIO()
    audio = list_audio_devices()
    pulse = [d for d in audio if d.backend == "pulse"]
    port = [d for d in audio if d.backend == "portaudio"]
    out.write("Audio, sound server (use --device NAME; a monitor captures what its sink plays):\n")
    if pulse:
        width = max(len(d.name) for d in pulse)
        for d in pulse:
            kind = "[loopback]" if d.is_monitor else "[input]   "
            line = f"  {d.name.ljust(width)}  {kind}  {d.description}".rstrip()
            if d.is_default:
                which = "captionbot run" if d.is_monitor else "--source microphone"
                line += f"   <- {which} captures this by default"
            out.write(line + "\n")
    else:
        out.write(
            "  (no PulseAudio/PipeWire server answers; on a machine without one, "
            "`captionbot run --headless` starts its own)\n"
        )
    out.write("Audio, PortAudio inputs (use --device INDEX):\n")
    if not pyaudio_available():
        out.write(f"  (PyAudio is not installed; to list and use them: {PORTAUDIO_INSTALL})\n")
    elif port:
        for d in port:
            default = "   <- the default input" if d.is_default else ""
            out.write(f"  {d.index}: {d.name}  ({d.channels} ch, {d.rate} Hz){default}\n")
    else:
        out.write("  (none)\n")
    out.write("Video devices (--video camera: video.camera; --virtual-camera: a v4l2loopback):\n")
    video = list_video_devices()
    for d in video:
        kind = "  [v4l2loopback: virtual camera]" if d.is_loopback else ""
        out.write(f"  {d.path}  {d.name or '(no name)'}{kind}\n")
    if not any(d.is_loopback for d in video):
        none = "none" if not video else "no v4l2loopback device"
        out.write(f"  ({none}: for a virtual camera run `{V4L2LOOPBACK_HINT}`)\n")
    return out.getvalue().rstrip("\n")
