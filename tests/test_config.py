"""The configuration: the example file documents every key, and mistakes are named."""

from pathlib import Path

import pytest
import yaml

from bot.config import Config, load_config
from bot.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"


def keys_of(model: type, prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            keys |= keys_of(annotation, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def flatten(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        keys |= flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return keys


def test_example_config_documents_every_key_with_its_default():
    assert flatten(yaml.safe_load(EXAMPLE.read_text())) == keys_of(Config)
    assert load_config(EXAMPLE) == Config()


def test_overrides_apply_over_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("engine:\n  model: tiny.en\nstreaming:\n  pause_s: 0.8\n")
    config = load_config(path, {"engine.model": "base", "language": "de", "task": None})
    assert config.engine.model == "base"
    assert config.streaming.pause_s == 0.8
    assert config.language_or_none == "de"
    assert config.streaming.options().pause_s == 0.8


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("engine:\n  modle: base\n", "engine.modle"),
        ("streaming:\n  max_buffer_s: 99\n", "streaming.max_buffer_s"),
        ("language: klingon\n", "language"),
        ("task: summarize\n", "task"),
        ("engine: [1, 2]\n", "engine"),
        ("- a\n- b\n", "mapping"),
        ("engine:\n  model: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, named):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert named in message and "\n" not in message


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml"):
        load_config(tmp_path / "nothere.yaml")
