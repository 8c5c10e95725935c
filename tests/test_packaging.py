"""The package as a new user installs it: the wheel built offline, installed into a fresh
virtualenv, and run from there, outside the source tree.

Only `bot` comes from the wheel. Its dependencies (about 1 GB) are not downloaded again: the
fresh venv sees the project venv's site-packages through a .pth file, via a folder of links that
leaves out PyAudio (the optional `portaudio` extra) and the project's own editable install. So
the venv is what `pip install .` without extras gives, and it checks that PyAudio is optional.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
import wave
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import english_wer

REPO = Path(__file__).resolve().parents[1]
# What the build reads; copied out so the build leaves nothing (build/, *.egg-info) in the tree.
BUILD_INPUTS = ("bot", "overlays", "pyproject.toml", "setup.py", "README.md", "LICENSE")
# Left out of the dependencies the fresh venv sees (names in site-packages, lower case).
HIDDEN_PREFIXES = ("pyaudio", "__editable__", "captionbot-", "__pycache__")
JFK = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    env: dict[str, str]
    cwd: Path

    def run(self, *args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
        return subprocess.run(
            args,
            cwd=self.cwd,
            env=kwargs.pop("env", self.env),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def python(self, code: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess:
        return self.run(str(self.venv / "bin" / "python"), "-c", code, *args, **kwargs)


def _deps_without_pyaudio(folder: Path) -> Path:
    """A folder of links to the project venv's packages, PyAudio and captionbot left out."""
    folder.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        name = entry.name.lower()
        if name.endswith(".pth") or name.startswith(HIDDEN_PREFIXES):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def _committed(url: str) -> str:
    with urllib.request.urlopen(url + "api/transcript?stream=jfk", timeout=5) as response:
        return json.loads(response.read())["committed"].lower().replace(",", "")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    setuptools = int(importlib.metadata.version("setuptools").split(".")[0])
    assert setuptools >= 77, "the build needs setuptools>=77: pip install -e '.[dev]'"
    root = tmp_path_factory.mktemp("packaging")
    source = root / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--quiet", "--wheel-dir", str(root / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("captionbot-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = venv / "lib" / version / "site-packages"
    deps = _deps_without_pyaudio(root / "deps")
    (site_packages / "project-venv-dependencies.pth").write_text(f"{deps}\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install"]
        + ["--quiet", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    cwd = root / "work"  # not the repo: nothing may be imported from the source tree
    cwd.mkdir()
    return Installed(wheel, venv, site_packages, env, cwd)


def test_the_wheel_holds_every_file_of_bot_the_overlay_pages_and_the_license(
    installed: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    files = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "bot").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "bot/samples/jfk.wav" in files
    assert files - names == set(), "add them to [tool.setuptools.package-data] in pyproject.toml"
    pages = {f"bot/overlay/pages/{p.name}" for p in (REPO / "overlays").glob("*.*")}
    assert {"bot/overlay/pages/captions.html", "bot/overlay/pages/live.html"} <= pages
    assert pages - names == set()
    assert not [n for n in names if "__pycache__" in n]
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(installed.wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata


def test_bot_is_imported_from_the_installed_wheel_not_the_source_tree(
    installed: Installed,
) -> None:
    done = installed.python(
        "import bot\n"
        "from bot.audio.samples import bundled_sample\n"
        "from bot.overlay.server import installed_pages\n"
        "from bot.audio.sources import pyaudio_available\n"
        "print(bot.__file__, installed_pages(), bundled_sample(), pyaudio_available())"
    )
    assert done.returncode == 0, done.stderr
    module, pages, sample, has_pyaudio = done.stdout.split()
    for path in (module, pages, sample):
        assert Path(path).is_relative_to(installed.site_packages), path
    assert has_pyaudio == "False"


def test_the_installed_command_transcribes_the_bundled_sample_and_serves_the_overlay(
    installed: Installed,
) -> None:
    sample = installed.site_packages / "bot" / "samples" / "jfk.wav"
    out = installed.cwd / "out"
    done = installed.run(
        "captionbot", "transcribe", str(sample), "--model", "tiny.en", "--fast", "--no-progress",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    text = (out / "jfk.txt").read_text()
    # One word in 22 at most: tiny.en's int8 kernels differ by CPU ("asked not" on some).
    assert english_wer(JFK, text) < 0.1, text
    words = text.lower().replace(",", "").split()

    overlay = subprocess.Popen(
        ["captionbot", "overlay", "--follow", str(out / "jfk.json"), "--port", "0"],
        cwd=installed.cwd,
        env=installed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert overlay.stdout is not None
        url = overlay.stdout.readline().split()[-1].replace("captions.html", "")
        assert url.startswith("http://127.0.0.1:"), url
        for page, marker in (("captions.html", "<html"), ("live.html", "<html")):
            with urllib.request.urlopen(url + page, timeout=5) as response:
                assert response.status == 200
                assert marker in response.read().decode().lower()
        deadline = time.monotonic() + 10
        while _committed(url).split() != words and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _committed(url).split() == words  # the overlay shows what the file holds
    finally:
        overlay.send_signal(signal.SIGINT)
        overlay.wait(10)
    assert overlay.returncode == 0, overlay.stderr.read() if overlay.stderr else ""


def test_without_pyaudio_a_portaudio_device_says_what_to_install(installed: Installed) -> None:
    done = installed.python(
        "from bot.audio.sources import create_audio_source\n"
        "from bot.config import AudioConfig\n"
        "from bot.errors import DeviceError\n"
        "try:\n"
        "    create_audio_source(AudioConfig(source='microphone', device=3)).open()\n"
        "except DeviceError as error:\n"
        "    print(error)\n"
    )
    assert done.returncode == 0, done.stderr
    (error,) = done.stdout.splitlines()
    assert "PortAudio device, which needs PyAudio: pip install 'captionbot[portaudio]'" in error
    assert "apt-get install gcc libc6-dev portaudio19-dev" in error


def test_without_pyaudio_or_parec_the_error_names_both_installs(installed: Installed) -> None:
    # PATH holds only the venv: no parec or pactl, as on a machine without pulseaudio-utils.
    done = installed.python(
        "from bot.audio.sources import create_audio_source\n"
        "from bot.config import AudioConfig\n"
        "from bot.errors import DeviceError\n"
        "for source in ('microphone', 'loopback'):\n"
        "    try:\n"
        "        create_audio_source(AudioConfig(source=source))\n"
        "    except DeviceError as error:\n"
        "        print(error)\n",
        env=installed.env | {"PATH": str(installed.venv / "bin")},
    )
    assert done.returncode == 0, done.stderr
    microphone, loopback = done.stdout.splitlines()
    assert "apt-get install pulseaudio-utils" in microphone
    assert "pip install 'captionbot[portaudio]'" in microphone
    assert "apt-get install pulseaudio-utils" in loopback


def test_without_pyaudio_the_sound_server_path_captures_the_loopback(
    installed: Installed, tmp_path: Path
) -> None:
    if shutil.which("pulseaudio") is None or shutil.which("parec") is None:
        pytest.skip("PulseAudio is not installed (deploy/install-system-packages.sh run)")
    from bot.audio.pulse import PulseServer

    tone = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    with wave.open(str(tone), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2").tobytes())
    with PulseServer(tmp_path / "pulse", ["call_app"]):
        done = installed.python(
            "import subprocess, sys\n"
            "import numpy as np\n"
            "from bot.audio.sources import create_audio_source\n"
            "from bot.config import AudioConfig\n"
            "config = AudioConfig(source='loopback', device='call_app.monitor')\n"
            "source = create_audio_source(config)\n"
            "source.open()\n"
            "player = subprocess.Popen(['paplay', '--device=call_app', sys.argv[1]])\n"
            "audio = np.concatenate([source.read() for _ in range(12)])\n"
            "player.wait()\n"
            "source.close()\n"
            "print(type(source).__name__, float(np.abs(audio).max()))\n",
            str(tone),
            env=installed.env | {"PULSE_RUNTIME_PATH": os.environ["PULSE_RUNTIME_PATH"]},
        )
    assert done.returncode == 0, done.stderr[-2000:]
    kind, peak = done.stdout.split()
    assert kind == "PulseSource"
    assert float(peak) == pytest.approx(0.3, abs=0.05)
