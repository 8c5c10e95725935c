"""A private PulseAudio server with null sinks: loopback audio on a machine without sound card.

Headless hosts (a server running the meeting app in a container, CI) have no sound server. This
starts one under its own runtime folder, with null sinks for apps to play into; each sink's
`.monitor` source is what `captionbot run --source loopback --device <sink>.monitor` captures.
The tests and bench/end_to_end.py use it to capture real loopback audio.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from bot.errors import DeviceError


class PulseServer:
    """`with PulseServer(folder, ["meeting"]) as pulse:` sets this process's PULSE_* variables
    (children inherit them) and stops the server on exit."""

    def __init__(self, runtime: Path, sinks: list[str]) -> None:
        self.runtime = Path(runtime)
        self.sinks = sinks
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> PulseServer:
        if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
            raise DeviceError(
                "PulseAudio is not installed: apt install pulseaudio pulseaudio-utils"
            )
        self.runtime.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PULSE_SERVER"}
        env["PULSE_RUNTIME_PATH"] = str(self.runtime)
        command = [
            "pulseaudio",
            "-n",
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "--use-pid-file=yes",
            "--load=module-native-protocol-unix auth-anonymous=1",
        ]
        command += [f"--load=module-null-sink sink_name={name} norewinds=1" for name in self.sinks]
        started = subprocess.run(command, env=env, capture_output=True, text=True)
        if started.returncode != 0:
            raise DeviceError(f"PulseAudio did not start: {started.stderr.strip()[-200:]}")
        for name in ("PULSE_RUNTIME_PATH", "PULSE_SERVER"):
            self._saved[name] = os.environ.get(name)
        os.environ["PULSE_RUNTIME_PATH"] = str(self.runtime)
        os.environ.pop("PULSE_SERVER", None)
        for _ in range(100):
            if self.pactl("info").returncode == 0:
                return self
            time.sleep(0.05)
        self.__exit__()
        raise DeviceError("PulseAudio started but does not answer")

    def pactl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)

    def play(self, path: Path, sink: str) -> subprocess.Popen:
        """Play a sound file into a sink (as a meeting app would), in the background."""
        return subprocess.Popen(
            ["paplay", f"--device={sink}", str(path)], stderr=subprocess.DEVNULL
        )

    def __exit__(self, *_: object) -> None:
        self.pactl("exit")
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
