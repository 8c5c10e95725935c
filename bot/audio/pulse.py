"""A private PulseAudio server with null sinks: loopback audio on a machine without sound card.

Headless hosts (a server running the meeting app in a container, CI) have no sound server. This
starts one under its own runtime folder, with null sinks for apps to play into; each sink's
`.monitor` source is what `captionbot run --source loopback --device <sink>.monitor` captures.
`captionbot run --headless` runs the bot inside one; the tests and bench/end_to_end.py use it to
capture real loopback audio.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bot.errors import DeviceError

# How long `pactl exit` may take before the server is killed (it took 1.2 s on 2 busy cores).
EXIT_WAIT_S = 5.0
INSTALL_HINT = "apt install pulseaudio pulseaudio-utils (or deploy/install-system-packages.sh run)"


class PulseServer:
    """`with PulseServer(folder, ["meeting"]) as pulse:` sets this process's PULSE_* variables
    (children inherit them) and stops the server on exit.

    Other programs (the meeting client) reach it with `PULSE_SERVER=<server_address>`.
    """

    def __init__(self, runtime: Path, sinks: list[str], description: str | None = None) -> None:
        self.runtime = Path(runtime)
        self.sinks = sinks
        self.description = description
        self._saved: dict[str, str | None] = {}

    @property
    def server_address(self) -> str:
        """The value of PULSE_SERVER that points a client at this server."""
        return f"unix:{self.runtime / 'native'}"

    def __enter__(self) -> PulseServer:
        if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
            raise DeviceError(f"PulseAudio is not installed: {INSTALL_HINT}")
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
        properties = (
            f" sink_properties=\"device.description='{self.description}'\""
            if self.description
            else ""
        )
        command += [
            f"--load=module-null-sink sink_name={name} norewinds=1{properties}"
            for name in self.sinks
        ]
        started = subprocess.run(command, env=env, capture_output=True, text=True)
        if started.returncode != 0:
            reason = started.stderr.strip().splitlines()[-1:] or ["no message"]
            raise DeviceError(f"PulseAudio did not start: {reason[0][-200:]}")
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
        pid = self._pid()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.pactl("exit")
        # `pactl exit` asks; a server that does not answer is ended by its pid file.
        if pid is not None:
            deadline = time.monotonic() + EXIT_WAIT_S
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _pid(self) -> int | None:
        try:
            return int((self.runtime / "pid").read_text().strip())
        except (OSError, ValueError):
            return None


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
