"""`captionbot devices`: the audio inputs (monitors included) and video devices of this machine."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from bot.audio.sources import pulse_available, pulse_sources, quiet_stderr


@dataclass(frozen=True)
class AudioDevice:
    """An input: a sound-server source (by name) or a PortAudio device (by index)."""

    backend: str
    index: int | None
    name: str
    description: str
    is_monitor: bool
    channels: int = 0
    rate: int = 0


def list_audio_devices() -> list[AudioDevice]:
    devices = []
    if pulse_available():
        for name, description in pulse_sources().items():
            devices.append(AudioDevice("pulse", None, name, description, name.endswith(".monitor")))
    devices += _portaudio_inputs()
    return devices


def _portaudio_inputs() -> list[AudioDevice]:
    try:
        import pyaudio
    except ImportError:
        return []
    # PortAudio prints ALSA probing noise on stderr; keep the listing clean.
    with quiet_stderr():
        audio = pyaudio.PyAudio()
        try:
            infos = [audio.get_device_info_by_index(i) for i in range(audio.get_device_count())]
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
        )
        for info in infos
        if info["maxInputChannels"] > 0
    ]


def list_video_devices() -> list[str]:
    return sorted(str(p) for p in Path("/dev").glob("video*"))


def format_devices() -> str:
    out = io.StringIO()
    audio = list_audio_devices()
    pulse = [d for d in audio if d.backend == "pulse"]
    port = [d for d in audio if d.backend == "portaudio"]
    out.write("Audio, sound server (use --device NAME; monitors capture what a sink plays):\n")
    if pulse:
        for d in pulse:
            kind = "loopback" if d.is_monitor else "input"
            out.write(f"  {d.name}  [{kind}]  {d.description}\n")
    else:
        out.write("  (no PulseAudio/PipeWire server answers)\n")
    out.write("Audio, PortAudio inputs (use --device INDEX):\n")
    if port:
        for d in port:
            out.write(f"  {d.index}: {d.name}  ({d.channels} ch, {d.rate} Hz)\n")
    else:
        out.write("  (none)\n")
    out.write("Video devices (virtual camera sink / camera source):\n")
    video = list_video_devices()
    if video:
        for path in video:
            out.write(f"  {path}\n")
    else:
        out.write(
            "  (none: for a virtual camera run "
            "`sudo modprobe v4l2loopback exclusive_caps=1 card_label=captionbot`)\n"
        )
    return out.getvalue().rstrip("\n")
