"""The deployment files refer only to what exists: the files they copy, the scripts they run, the
captionbot commands and flags they start, the Debian packages of deploy/system-packages.txt.

Docker cannot build here (no engine), so the Dockerfile, compose.yaml and the systemd unit are
read as data and checked against the repository and the real `captionbot --help`.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from bot.config import OverlayConfig, load_config

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "deploy" / "install-system-packages.sh"
PROFILES = ("demo", "run", "test", "portaudio", "venv")


@functools.cache
def _help(*command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bot", *command, "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, f"captionbot {' '.join(command)} --help: {done.stderr}"
    return done.stdout


def _check_captionbot_command(args: list[str]) -> None:
    """`args` (after `captionbot`) name a real subcommand and only flags it has."""
    command = args[0]
    assert re.search(rf"^\s+{re.escape(command)}\s", _help(), re.MULTILINE), command
    flags = set(re.findall(r"--[a-z][a-z-]*", _help(command)))
    used = {a.split("=")[0] for a in args[1:] if a.startswith("--")}
    assert used <= flags, f"captionbot {command} has no {sorted(used - flags)}"


@functools.cache
def _packages(profile: str) -> tuple[str, ...]:
    done = subprocess.run([INSTALLER, "--list", profile], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tuple(done.stdout.split())


def _extras() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(pyproject["project"]["optional-dependencies"])


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _dockerfile_args() -> dict[str, str]:
    return dict(
        (rest.split("=", 1) + [""])[:2] for keyword, rest in _dockerfile() if keyword == "ARG"
    )


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def value(match: re.Match) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3) or ""
        if name in env:
            return env[name]
        assert operator != ":?", f"compose.yaml requires {name}: {rest}"
        return rest if operator == ":-" else ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", value, text)


def test_every_profile_lists_packages_of_the_one_list_and_ci_uses_the_test_profile() -> None:
    listed = {
        line.split()[0]
        for line in (REPO / "deploy" / "system-packages.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for profile in PROFILES:
        assert _packages(profile) and set(_packages(profile)) <= listed, profile
    assert set(_packages("demo")) <= set(_packages("run")) <= set(_packages("test"))
    assert set(_packages("portaudio")) <= set(_packages("test"))
    assert "gcc" not in _packages("run"), "only PyAudio needs a compiler"
    bogus = subprocess.run([INSTALLER, "bogus"], capture_output=True, text=True)
    assert bogus.returncode == 2 and "unknown profile 'bogus'" in bogus.stderr

    ci = (REPO / ".ci" / "run").read_text().split("\n")
    commands = [line.strip() for line in ci if line.strip() and not line.startswith(("#", "set"))]
    assert os.access(REPO / ".ci" / "run", os.X_OK)
    assert "deploy/install-system-packages.sh test" in commands
    readme_test = re.search(r"^(make test)\s+#", (REPO / "README.md").read_text(), re.MULTILINE)
    assert readme_test is not None and commands[-1] == readme_test.group(1)
    makefile = (REPO / "Makefile").read_text()
    for profile in re.findall(r"\$\(SYSTEM\) (\w+)", makefile):
        assert profile in PROFILES, f"Makefile uses an unknown profile {profile}"


def test_the_install_hints_of_audio_errors_name_packages_of_the_list() -> None:
    from bot.audio.sources import PORTAUDIO_INSTALL, PULSE_INSTALL

    portaudio = re.search(r"apt-get install ([\w .-]+?) first", PORTAUDIO_INSTALL)
    assert portaudio is not None
    assert set(portaudio.group(1).split()) == set(_packages("portaudio"))
    assert PULSE_INSTALL.split("apt-get install ")[1].split() == ["pulseaudio-utils"]
    assert "pulseaudio-utils" in _packages("run")


def test_without_root_or_sudo_the_installer_prints_the_one_command_to_run() -> None:
    missing = "cowsay"  # any real package that is not installed
    if shutil.which("setpriv") is None or shutil.which("dpkg-query") is None:
        pytest.skip("needs setpriv and dpkg (a Debian/Ubuntu machine)")
    installed = subprocess.run(["dpkg-query", "-W", missing], capture_output=True)
    if installed.returncode == 0:
        pytest.skip(f"{missing} is installed here")
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")
    with tempfile.TemporaryDirectory() as folder:  # pytest's tmp_path is root's alone
        copy = Path(folder)
        copy.chmod(0o755)
        shutil.copy2(INSTALLER, copy / INSTALLER.name)
        (copy / "system-packages.txt").write_text(f"{missing}  demo  a package not installed\n")
        done = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
            + [str(copy / INSTALLER.name), "demo"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"captionbot needs system packages that are missing; run: sudo apt-get install -y {missing}"
    ]


def test_the_dockerfile_copies_repo_files_and_runs_only_project_scripts_and_commands() -> None:
    instructions = _dockerfile()
    args = _dockerfile_args()
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    copied: dict[str, Path] = {}  # destination in the image -> file of the repo
    for keyword, rest in instructions:
        if keyword != "COPY":
            continue
        *sources, destination = shlex.split(rest)
        assert not [s for s in sources if s.startswith("--")], "COPY only from the context"
        for source in sources:
            path = REPO / source
            assert path.exists(), f"Dockerfile copies {source}, which is not in the repo"
            assert source not in ignored, f".dockerignore leaves out {source}"
            target = destination + path.name if destination.endswith("/") else destination
            copied[target] = path

    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    scripts = re.findall(r"(/\S+\.sh)", runs)
    assert scripts, "the system packages come from deploy/install-system-packages.sh"
    for script in scripts:
        assert script in copied and os.access(copied[script], os.X_OK), script
    for profile in args["SYSTEM_PROFILES"].split():
        assert profile in PROFILES
    assert "apt-get install" not in runs, "packages come from deploy/system-packages.txt"
    assert set(args["EXTRAS"].split(",")) <= _extras()
    assert "gpu" in _extras() and "EXTRAS=models,gpu" in (REPO / "Dockerfile").read_text()

    (entrypoint,) = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    (cmd,) = [rest for keyword, rest in instructions if keyword == "CMD"]
    assert yaml.safe_load(entrypoint) == ["captionbot"]
    _check_captionbot_command(yaml.safe_load(cmd))
    (user,) = [rest for keyword, rest in instructions if keyword == "USER"]
    assert user not in ("root", "0")
    (expose,) = [rest for keyword, rest in instructions if keyword == "EXPOSE"]
    assert int(expose) == OverlayConfig().port


def test_compose_builds_the_dockerfile_and_runs_captionbot_with_a_valid_config(tmp_path) -> None:
    text = (REPO / "compose.yaml").read_text()
    with pytest.raises(AssertionError, match="requires CAPTIONBOT_OVERLAY_TOKEN"):
        _interpolate(text, {})
    compose = yaml.safe_load(_interpolate(text, {"CAPTIONBOT_OVERLAY_TOKEN": "s3cret"}))
    (bot,) = compose["services"].values()
    build = bot["build"]
    assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).is_file()
    assert set(build["args"]) <= set(_dockerfile_args())
    assert set(build["args"]["EXTRAS"].split(",")) <= _extras()
    _check_captionbot_command(shlex.split(bot["command"]))

    (config_ref,) = bot["configs"]
    assert bot["environment"]["CAPTIONBOT_CONFIG"] == config_ref["target"]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(compose["configs"][config_ref["source"]]["content"])
    overlay = load_config(config_file).overlay
    assert overlay.token == "s3cret" and overlay.host == "0.0.0.0"
    (port,) = bot["ports"]
    host_ip, _, container_port = port.split(":")
    assert host_ip == "127.0.0.1" and int(container_port) == overlay.port
    for volume in bot["volumes"]:
        source = volume.split(":")[0]
        assert source.startswith("/") or source in compose["volumes"], volume


def _unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            key, _, value = line.partition("=")
            sections[current].append((key, value))
    return sections


def test_the_systemd_unit_runs_the_headless_bot_as_an_unprivileged_user(tmp_path) -> None:
    unit_path = REPO / "deploy" / "captionbot.service"
    service = dict(_unit(unit_path)["Service"])
    assert service["User"] not in ("", "root", "0")
    assert service["Restart"] == "on-failure"
    assert service["StandardOutput"] == service["StandardError"] == "journal"

    program, *args = shlex.split(service["ExecStart"])
    assert Path(program).name == "captionbot"
    assert args[0] == "run" and "--headless" in args
    _check_captionbot_command(args)

    env_path = REPO / "deploy" / Path(service["EnvironmentFile"]).name
    settings = dict(
        line.split("=", 1)
        for line in env_path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{?(\w+)\}?", service["ExecStart"]))
    assert used and used <= set(settings), f"{env_path.name} lacks {used - set(settings)}"
    resolved = [settings.get(a.strip("${}"), a) if a.startswith("$") else a for a in args]
    _check_captionbot_command(" ".join(resolved).split())

    comments = unit_path.read_text()
    for profile in re.findall(r"install-system-packages\.sh (\w+)", comments):
        assert profile in PROFILES
    for mentioned in re.findall(r"\b(deploy/[\w.-]+)", comments):
        assert (REPO / mentioned).is_file(), mentioned

    if shutil.which("systemd-analyze") is None:
        return
    # systemd's own check of the unit, with ExecStart pointing at this venv's captionbot.
    here = Path(sys.executable).with_name("captionbot")
    copy = tmp_path / unit_path.name
    copy.write_text(unit_path.read_text().replace(program, str(here)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr  # it warns, exits 0
