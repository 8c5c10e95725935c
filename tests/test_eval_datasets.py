"""Evaluation datasets: every supported layout loads as the same items; bad rows are reported.

Each format's fixture is built in tmp_path from short real recordings of ../shared/data
(symlinked, or converted to FLAC where the layout asks for it).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.eval.datasets import Dataset, EvalItem, SkippedRow, load_dataset

CLIP_IDS = ("pocketsphinx_cards_001", "thorsten_gt_sample02", "pocketsphinx_cards_003")


@pytest.fixture
def clips(shared_data: Path, manifest: dict[str, dict], tmp_path: Path) -> list[dict]:
    """Three short manifest rows (two English, one German) whose audio is linked into tmp_path."""
    folder = tmp_path / "clips"
    folder.mkdir()
    rows = []
    for item_id in CLIP_IDS:
        row = manifest[item_id]
        link = folder / f"{item_id}.wav"
        link.symlink_to(shared_data / row["audio"])
        rows.append({**row, "wav": link})
    return rows


def ids_of(dataset: Dataset) -> list[str]:
    return [item.id for item in dataset.items]


def assert_one_line_error(error: pytest.ExceptionInfo[ConfigError], *names: object) -> None:
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert str(name) in message


def write_jsonl(file: Path, rows: list[dict]) -> Path:
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return file


def write_table(file: Path, header: list[str], rows: list[list[object]], delimiter: str) -> Path:
    with file.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return file


# ---------------------------------------------------------------------------------------------
# The shared manifest


def test_the_shared_manifest_loads_every_item_with_its_reference_and_audio(
    shared_data: Path, manifest: dict[str, dict]
):
    dataset = load_dataset(shared_data / "manifest.jsonl")

    assert dataset.format == "jsonl"
    assert len(dataset.items) == 87 == len(manifest)
    assert dataset.skipped == ()
    for item in dataset.items:
        row = manifest[item.id]
        assert item.audio == shared_data / row["audio"]
        assert item.audio.is_absolute() and item.audio.is_file()
        assert (item.text, item.language) == (row["text"], row["language"])
        assert item.translation == row.get("translation")
        assert item.duration_s == row["duration_s"]
    assert sum(item.translation is not None for item in dataset.items) == 26


def test_a_folder_holding_manifest_jsonl_loads_that_manifest(shared_data: Path):
    dataset = load_dataset(shared_data)

    assert dataset.format == "jsonl"
    assert dataset.name == "data"
    assert len(dataset.items) == 87


def test_the_language_filter_keeps_the_german_items(shared_data: Path, manifest: dict[str, dict]):
    german = [item_id for item_id, row in manifest.items() if row["language"] == "de"]

    dataset = load_dataset(shared_data / "manifest.jsonl", language="de")

    assert ids_of(dataset) == german
    assert {item.language for item in dataset.items} == {"de"}


def test_limit_takes_the_first_items_after_the_language_filter(shared_data: Path):
    dataset = load_dataset(shared_data / "manifest.jsonl", language="de", limit=3)

    assert ids_of(dataset) == ["fleurs_de_000", "fleurs_de_001", "fleurs_de_002"]


def test_the_ids_filter_keeps_the_named_items_in_dataset_order(shared_data: Path):
    wanted = ["thorsten_gt_sample02", "pocketsphinx_cards_001"]

    dataset = load_dataset(shared_data / "manifest.jsonl", ids=wanted)

    assert ids_of(dataset) == ["pocketsphinx_cards_001", "thorsten_gt_sample02"]


def test_ids_the_dataset_does_not_have_are_a_one_line_error_naming_them(shared_data: Path):
    with pytest.raises(ConfigError) as error:
        load_dataset(shared_data / "manifest.jsonl", ids=["pocketsphinx_cards_001", "nope_1"])

    assert_one_line_error(error, "nope_1", "manifest.jsonl")
    assert "pocketsphinx_cards_001" not in str(error.value)


def test_a_language_no_item_has_is_a_one_line_error_listing_the_languages(shared_data: Path):
    with pytest.raises(ConfigError) as error:
        load_dataset(shared_data / "manifest.jsonl", language="xx")

    assert_one_line_error(error, "'xx'", "de", "en", "pt")


def test_extras_rows_without_a_reference_are_skipped_with_the_reason(shared_data: Path):
    extras = shared_data / "extras" / "manifest.jsonl"

    dataset = load_dataset(extras)

    assert dataset.items == ()
    assert dataset.skipped == (
        SkippedRow("manifest.jsonl:1", "no reference"),
        SkippedRow("manifest.jsonl:2", "no reference"),
    )


# ---------------------------------------------------------------------------------------------
# Bad rows are reported, not fatal


def test_bad_manifest_rows_are_skipped_with_their_line_and_reason(clips: list[dict], tmp_path):
    good, german, other = clips
    empty_wav = tmp_path / "clips" / "empty.wav"
    empty_wav.write_bytes(b"")
    file = write_jsonl(
        tmp_path / "eval.jsonl",
        [
            {"id": "a", "audio": "clips/pocketsphinx_cards_001.wav", "text": good["text"]},
            {"id": "b", "audio": "clips/gone.wav", "text": "missing audio"},
            {"id": "c", "audio": str(german["wav"]), "text": "   ", "language": "de"},
            {"id": "a", "audio": str(other["wav"]), "text": other["text"]},
            {"id": "d", "audio": "clips/empty.wav", "text": "a zero-byte file"},
            {"id": "e", "audio": str(other["wav"]), "text": other["text"], "extra": [1, 2]},
        ],
    )
    with file.open("a") as handle:
        handle.write("{not json\n")

    dataset = load_dataset(file)

    assert ids_of(dataset) == ["a", "e"]
    assert dataset.items[0].audio == tmp_path / "clips" / "pocketsphinx_cards_001.wav"
    reasons = {row.source: row.reason for row in dataset.skipped}
    assert reasons == {
        "eval.jsonl:2": f"missing audio file {tmp_path / 'clips' / 'gone.wav'}",
        "eval.jsonl:3": "empty reference",
        "eval.jsonl:4": "duplicate id a (first at eval.jsonl:1)",
        "eval.jsonl:5": f"empty audio file {empty_wav} (0 bytes)",
        "eval.jsonl:7": "not valid JSON (Expecting property name enclosed in double quotes)",
    }
    assert all("\n" not in row.reason for row in dataset.skipped)


def test_without_check_audio_missing_files_are_kept_for_later(clips: list[dict], tmp_path):
    file = write_jsonl(
        tmp_path / "eval.jsonl", [{"id": "x", "audio": "nowhere.wav", "text": "hello"}]
    )

    dataset = load_dataset(file, check_audio=False)

    assert dataset.items == (EvalItem("x", tmp_path / "nowhere.wav", "hello", None),)


# ---------------------------------------------------------------------------------------------
# Tables


def test_a_common_voice_style_tsv_loads_with_its_column_names(clips: list[dict], tmp_path):
    file = write_table(
        tmp_path / "test.tsv",
        ["client_id", "path", "sentence", "locale"],
        [["spk", f"clips/{row['id']}.wav", row["text"], row["language"]] for row in clips],
        delimiter="\t",
    )

    dataset = load_dataset(file)

    assert dataset.format == "tsv"
    assert dataset.name == "test"
    assert ids_of(dataset) == list(CLIP_IDS)
    assert [(i.text, i.language) for i in dataset.items] == [
        (row["text"], row["language"]) for row in clips
    ]
    assert [item.audio for item in dataset.items] == [row["wav"] for row in clips]


def test_a_csv_with_id_translation_and_regional_languages(clips: list[dict], tmp_path):
    file = write_table(
        tmp_path / "eval.csv",
        ["ID", "Audio_Path", "Transcript", "Lang", "Translation"],
        [
            ["one", "clips/pocketsphinx_cards_001.wav", clips[0]["text"], "en-US", ""],
            ["two", "clips/thorsten_gt_sample02.wav", clips[1]["text"], "de-DE", "Hello, a test"],
        ],
        delimiter=",",
    )

    dataset = load_dataset(file, language="de")

    assert dataset.format == "csv"
    assert dataset.items == (
        EvalItem("two", clips[1]["wav"], clips[1]["text"], "de-DE", translation="Hello, a test"),
    )


def test_a_table_without_language_takes_the_requested_language(clips: list[dict], tmp_path):
    file = write_table(
        tmp_path / "eval.csv",
        ["file", "text"],
        [[f"clips/{row['id']}.wav", row["text"]] for row in clips],
        delimiter=",",
    )

    assert {item.language for item in load_dataset(file).items} == {None}
    assert {item.language for item in load_dataset(file, language="en").items} == {"en"}


def test_a_table_with_unknown_columns_is_a_one_line_error_naming_them(tmp_path):
    file = write_table(tmp_path / "eval.csv", ["clip", "words"], [["a.wav", "hi"]], ",")

    with pytest.raises(ConfigError) as error:
        load_dataset(file)

    assert_one_line_error(error, file, "clip, words", "audio_path", "transcript")


# ---------------------------------------------------------------------------------------------
# Folder layouts


def test_a_folder_of_audio_with_same_named_txt_references(clips: list[dict], tmp_path):
    folder = tmp_path / "clips"
    for row in clips[:2]:
        (folder / f"{row['id']}.txt").write_text(row["text"] + "\n")

    dataset = load_dataset(folder, language="en")

    assert dataset.format == "audio-folder"
    assert dataset.name == "clips"
    assert ids_of(dataset) == ["pocketsphinx_cards_001", "thorsten_gt_sample02"]
    assert [(item.audio, item.text) for item in dataset.items] == [
        (row["wav"], row["text"]) for row in clips[:2]
    ]
    assert dataset.skipped == (
        SkippedRow(
            "pocketsphinx_cards_003.wav", "no reference file pocketsphinx_cards_003.txt beside it"
        ),
    )


def test_a_kaldi_folder_pairs_wav_scp_with_text(clips: list[dict], tmp_path):
    folder = tmp_path / "kaldi"
    folder.mkdir()
    (folder / "wav.scp").write_text(
        f"utt1 {clips[0]['wav']}\n"
        "utt2\t../clips/pocketsphinx_cards_003.wav\n"
        "utt3 sox in.flac -t wav - |\n"
        "utt4 ../clips/thorsten_gt_sample02.wav\n"
    )
    (folder / "text").write_text(
        f"utt1 {clips[0]['text']}\nutt2 {clips[2]['text']}\nutt3 three\nutt5 no audio\n"
    )

    dataset = load_dataset(folder, language="en")

    assert dataset.format == "kaldi"
    assert ids_of(dataset) == ["utt1", "utt2"]
    assert [item.text for item in dataset.items] == [clips[0]["text"], clips[2]["text"]]
    assert dataset.items[1].audio.resolve() == clips[2]["wav"].resolve()
    assert {item.language for item in dataset.items} == {"en"}
    assert dataset.skipped == (
        SkippedRow("wav.scp:3", "piped wav.scp entries are not supported"),
        SkippedRow("wav.scp:4", "no reference for utt4 in text"),
        SkippedRow("utt5", "in text but not in wav.scp (no audio)"),
    )


def test_a_kaldi_folder_with_segments_is_a_one_line_error(clips: list[dict], tmp_path):
    folder = tmp_path / "kaldi"
    folder.mkdir()
    (folder / "wav.scp").write_text(f"rec1 {clips[0]['wav']}\n")
    (folder / "text").write_text("utt1 hello\n")
    (folder / "segments").write_text("utt1 rec1 0.0 1.0\n")

    with pytest.raises(ConfigError) as error:
        load_dataset(folder)

    assert_one_line_error(error, folder / "segments", "not supported")


def test_a_librispeech_split_reads_each_chapter_transcript(clips: list[dict], tmp_path):
    import soundfile

    chapter = tmp_path / "test-clean" / "1089" / "134686"
    chapter.mkdir(parents=True)
    audio, rate = soundfile.read(clips[0]["wav"])
    soundfile.write(chapter / "1089-134686-0000.flac", audio, rate)
    (chapter / "1089-134686-0001.wav").symlink_to(clips[2]["wav"])
    (chapter / "1089-134686.trans.txt").write_text(
        f"1089-134686-0000 {clips[0]['text'].upper()}\n"
        f"1089-134686-0001 {clips[2]['text'].upper()}\n"
        "1089-134686-0002 NO AUDIO FOR THIS ONE\n"
    )

    dataset = load_dataset(tmp_path / "test-clean")

    assert dataset.format == "librispeech"
    assert dataset.name == "test-clean"
    assert ids_of(dataset) == ["1089-134686-0000", "1089-134686-0001"]
    assert [item.audio.name for item in dataset.items] == [
        "1089-134686-0000.flac",
        "1089-134686-0001.wav",
    ]
    assert dataset.items[0].text == clips[0]["text"].upper()
    assert {item.language for item in dataset.items} == {"en"}
    (missing,) = dataset.skipped
    assert missing.source == "1089/134686/1089-134686.trans.txt:3"
    assert missing.reason == f"missing audio file {chapter / '1089-134686-0002.flac'}"


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets saved with save_to_disk


def test_a_hugging_face_audio_column_is_written_to_the_cache(clips: list[dict], tmp_path):
    hf = pytest.importorskip("datasets")
    saved = tmp_path / "hf"
    hf.Dataset.from_dict(
        {
            "audio": [str(row["wav"]) for row in clips],
            "transcription": [row["text"] for row in clips],
            "language": [row["language"] for row in clips],
        }
    ).cast_column("audio", hf.Audio()).save_to_disk(str(saved))

    dataset = load_dataset(saved, language="en", cache_dir=tmp_path / "cache")

    assert dataset.format == "huggingface"
    assert ids_of(dataset) == ["pocketsphinx_cards_001", "pocketsphinx_cards_003"]
    assert [item.text for item in dataset.items] == [clips[0]["text"], clips[2]["text"]]
    for item, row in zip(dataset.items, (clips[0], clips[2])):
        assert item.audio.parent == tmp_path / "cache" / "eval-audio"
        assert item.audio.read_bytes() == row["wav"].read_bytes()
    again = load_dataset(saved, language="en", cache_dir=tmp_path / "cache")
    assert [item.audio for item in again.items] == [item.audio for item in dataset.items]


def test_a_hugging_face_path_column_resolves_like_a_table(clips: list[dict], tmp_path):
    hf = pytest.importorskip("datasets")
    saved = tmp_path / "hf"
    hf.Dataset.from_dict(
        {
            "id": ["a", "b", "c"],
            "file": ["../clips/pocketsphinx_cards_001.wav", str(clips[1]["wav"]), "gone.wav"],
            "sentence": [row["text"] for row in clips],
            "lang": hf.ClassLabel(names=["de", "en"]).str2int(["en", "de", "en"]),
        },
        features=hf.Features(
            {
                "id": hf.Value("string"),
                "file": hf.Value("string"),
                "sentence": hf.Value("string"),
                "lang": hf.ClassLabel(names=["de", "en"]),
            }
        ),
    ).save_to_disk(str(saved))

    dataset = load_dataset(saved, cache_dir=tmp_path / "cache")

    assert [(item.id, item.language) for item in dataset.items] == [("a", "en"), ("b", "de")]
    assert dataset.items[0].audio.resolve() == clips[0]["wav"].resolve()
    assert dataset.skipped == (SkippedRow("row 2", f"missing audio file {saved / 'gone.wav'}"),)


def test_a_hugging_face_dataset_dict_asks_for_one_split(clips: list[dict], tmp_path):
    hf = pytest.importorskip("datasets")
    split = hf.Dataset.from_dict({"file": [str(clips[0]["wav"])], "text": [clips[0]["text"]]})
    hf.DatasetDict({"test": split, "validation": split}).save_to_disk(str(tmp_path / "hf"))

    with pytest.raises(ConfigError) as error:
        load_dataset(tmp_path / "hf")

    assert_one_line_error(error, "test, validation", tmp_path / "hf" / "test")
    assert ids_of(load_dataset(tmp_path / "hf" / "test")) == ["pocketsphinx_cards_001"]


def test_a_hugging_face_dataset_needs_the_datasets_package(monkeypatch, tmp_path):
    saved = tmp_path / "hf"
    saved.mkdir()
    (saved / "state.json").write_text("{}")
    (saved / "dataset_info.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if it were not installed

    with pytest.raises(ConfigError) as error:
        load_dataset(saved)

    assert_one_line_error(error, saved, "captionbot[eval]")


# ---------------------------------------------------------------------------------------------
# Paths that are no dataset


def test_a_path_that_does_not_exist_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_dataset(tmp_path / "nowhere.jsonl")

    assert_one_line_error(error, tmp_path / "nowhere.jsonl", ".jsonl", "wav.scp", "LibriSpeech")


def test_a_folder_matching_no_format_is_a_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")

    with pytest.raises(ConfigError) as error:
        load_dataset(tmp_path)

    assert_one_line_error(error, tmp_path, "matches no dataset format", ".csv/.tsv")


def test_an_empty_manifest_is_a_one_line_error(tmp_path):
    (tmp_path / "eval.jsonl").write_text("\n")

    with pytest.raises(ConfigError) as error:
        load_dataset(tmp_path / "eval.jsonl")

    assert_one_line_error(error, tmp_path / "eval.jsonl", "empty")


def test_a_file_of_another_kind_is_a_one_line_error(tmp_path):
    (tmp_path / "data.json").write_text("[]")

    with pytest.raises(ConfigError) as error:
        load_dataset(tmp_path / "data.json")

    assert_one_line_error(error, tmp_path / "data.json", ".jsonl, .csv or .tsv")
