"""Platform profiles: how to join each meeting platform, from a YAML file users can edit.

The bundled file is bot/join/platforms.yaml; `join.profiles` names a replacement. The join
section of the configuration overrides single selectors of the chosen profile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from importlib.resources import files
from pathlib import Path
from urllib.parse import quote

import yaml

from bot.config import JoinConfig
from bot.errors import ConfigError

BUNDLED = "platforms.yaml"


@dataclass(frozen=True)
class PlatformProfile:
    """Selectors and texts of one platform's meeting page (see platforms.yaml for each key)."""

    name: str
    url_pattern: str | None = None
    url_suffix: str | None = None
    name_field: str | None = None
    join_button: str | None = None
    in_meeting: str | None = None
    leave_button: str | None = None
    lobby_text: tuple[str, ...] = ()
    ended_text: tuple[str, ...] = ()
    participant_tile: str | None = None
    participant_name: str | None = None
    own_tiles: int = 0
    per_participant: bool = True

    def meeting_url(self, url: str, bot_name: str) -> str:
        if not self.url_suffix:
            return url
        suffix = self.url_suffix.replace("{name}", quote(bot_name))
        if suffix.startswith("#") and "#" in url:
            suffix = "&" + suffix[1:]
        return url + suffix


def load_profiles(path: str | Path | None = None) -> dict[str, PlatformProfile]:
    """Every profile of the bundled file (or of `path`), by name."""
    where = str(path) if path else f"bot/join/{BUNDLED}"
    try:
        text = (
            Path(path).read_text(encoding="utf-8")
            if path
            else files("bot.join").joinpath(BUNDLED).read_text(encoding="utf-8")
        )
        data = yaml.safe_load(text) or {}
    except OSError as error:
        raise ConfigError(f"cannot read platform profiles {where}: {error.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"platform profiles {where} are not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"platform profiles {where} must map platform names to profiles")
    known = {f.name for f in fields(PlatformProfile)} - {"name"}
    profiles = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"platform profile '{name}' in {where} must be a mapping")
        unknown = set(entry) - known
        if unknown:
            raise ConfigError(
                f"unknown key '{sorted(unknown)[0]}' in platform profile '{name}' ({where}): "
                f"the keys are {', '.join(sorted(known))}"
            )
        values = dict(entry)
        for key in ("lobby_text", "ended_text"):
            if key in values:
                texts = [values[key]] if isinstance(values[key], str) else values[key] or ()
                values[key] = tuple(str(t).lower() for t in texts)
        profiles[str(name)] = PlatformProfile(name=str(name), **values)
    return profiles


def resolve_profile(join: JoinConfig, url: str) -> PlatformProfile:
    """The profile for this meeting: named, or detected from the URL (else generic), with the
    selectors the configuration sets laid over it."""
    profiles = load_profiles(join.profiles)
    if join.platform != "auto":
        if join.platform not in profiles:
            raise ConfigError(
                f"no platform profile '{join.platform}' in the profiles file: "
                f"it has {', '.join(sorted(profiles))}"
            )
        profile = profiles[join.platform]
    else:
        detected = [p for p in profiles.values() if p.url_pattern and re.search(p.url_pattern, url)]
        profile = detected[0] if detected else profiles.get("generic", PlatformProfile("generic"))
    overrides = {
        key: getattr(join, key)
        for key in (
            "name_field",
            "join_button",
            "in_meeting",
            "leave_button",
            "participant_tile",
            "participant_name",
            "per_participant",
        )
        if getattr(join, key) is not None
    }
    return replace(profile, **overrides)
