"""The streaming policy's rules, driven by a scripted engine (no model): each test is one rule.

The scripted engine answers every window with the words its script says are heard there, so
what these tests check is only what `OnlineStream` and `StreamingTranscriber` do with the
hypotheses: when words commit, what is shown, what is cut, what is decoded next.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
from conftest import decoded_at
from scripted_engine import Hearing, ScriptedEngine, fully_heard, spoken

from bot.asr.engine import Task
from bot.audio.decode import load_audio
from bot.audio.samples import bundled_sample
from bot.messages import SAMPLE_RATE, AudioChunk, CaptionUpdate, CommittedWord, EndOfStream, Word
from bot.streaming.agreement import normalized
from bot.streaming.feeding import Recording, run_fast
from bot.streaming.options import StreamingOptions
from bot.streaming.transcriber import StreamingTranscriber

NO_VAD = StreamingOptions(vad=False)

# The bundled JFK sample, with the words where Silero hears them (speech 0.32-2.24, 3.33-3.74,
# 4.03-4.35, 5.44-7.62, 8.22-10.50 s).
JFK_WORDS = [
    *spoken("And so my fellow Americans,", 0.35, 0.38),
    Word(" ask", 3.35, 3.7),
    Word(" not", 4.05, 4.33),
    *spoken("what your country can do for you.", 5.45, 0.3),
    *spoken("Ask what you can do for your country.", 8.25, 0.28),
]
JFK_TEXT = "".join(w.text for w in JFK_WORDS).strip()


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Audio every sample of which is distinct, so the engine can tell where a window lies."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.01).astype(np.float32)


@dataclass
class Captions:
    """What viewers of each stream saw, update by update."""

    updates: list[CaptionUpdate] = field(default_factory=list)

    def of(self, stream: str) -> list[CaptionUpdate]:
        return [u for u in self.updates if u.stream_id == stream]

    def committed(self, stream: str = "a") -> list[CommittedWord]:
        return [w for u in self.of(stream) for w in u.committed]

    def text(self, stream: str = "a") -> str:
        return "".join(w.text for w in self.committed(stream)).strip()

    def screens(self, stream: str = "a") -> list[tuple[str, str]]:
        """(committed, tentative) text after each update."""
        committed, screens = "", []
        for update in self.of(stream):
            committed += "".join(w.text for w in update.committed)
            screens.append((committed, "".join(w.text for w in update.tentative)))
        return screens


def play(
    engine: ScriptedEngine,
    options: StreamingOptions = NO_VAD,
    step_s: float = 0.5,
    task: Task = "transcribe",
    language: str = "en",
    tasks: dict[str, tuple[Task, str]] | None = None,
) -> tuple[Captions, StreamingTranscriber]:
    """Stream every scripted recording through the policy, `step_s` of audio per round, with
    `task` in `language`, or with its own (task, language) from `tasks`."""
    transcriber = StreamingTranscriber(engine, options, clock="audio")
    captions = Captions()
    recordings = [
        Recording(name, script.audio, *(tasks or {}).get(name, (task, language)))
        for name, script in engine.scripts.items()
    ]
    run_fast(transcriber, recordings, captions.updates.append, step_s=step_s)
    return captions, transcriber


def decode_steps(engine: ScriptedEngine, recording: str) -> list[float]:
    """The audio between one decode of `recording` and the next, the last (shorter: the
    stream's end) left out."""
    ends = [d.end for d in engine.decoded_from(recording)]
    return [round(b - a, 2) for a, b in zip(ends, ends[1:])][:-1]


def misheard_at_the_tail(words: list[Word], settle_s: float = 0.4) -> Hearing:
    """Like Whisper: a word only just spoken is heard wrong ("x" appended) until more audio
    follows it."""

    def hear(start: float, end: float, _n: int) -> list[Word]:
        return [
            w if w.end <= end - settle_s else Word(w.text + "x", w.start, w.end)
            for w in fully_heard(words)(start, end, _n)
        ]

    return hear


# -- committing ---------------------------------------------------------------------------------


def test_a_word_is_committed_only_when_two_consecutive_hypotheses_agree_on_it():
    words = spoken("The quick brown fox jumps over the lazy dog", 0.2)
    engine = ScriptedEngine.of(a=(noise(4.5), misheard_at_the_tail(words)))
    captions, _ = play(engine)
    assert captions.text() == "The quick brown fox jumps over the lazy dog"
    first = captions.of("a")[0]
    assert first.committed == () and first.tentative  # one hypothesis commits nothing
    for word in captions.committed()[:-1]:  # the last one is committed by the end of stream
        hypotheses_before = [d for d in engine.decoded if d.end <= word.emitted_s]
        assert len([d for d in hypotheses_before if d.end >= word.end]) >= 2, word
    shown = " ".join(tentative for _, tentative in captions.screens())
    assert "quickx" in shown  # the misheard forms were shown, but never committed


def test_committed_words_are_never_revised_when_later_hypotheses_change_their_mind():
    words = spoken("One two three four five six seven eight", 0.2)

    def fickle(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(words)(start, end, n)
        return [
            Word(" tree", w.start, w.end) if n >= 6 and w.text == " three" else w for w in heard
        ]

    captions, _ = play(ScriptedEngine.of(a=(noise(4.0), fickle)))
    assert captions.text() == "One two three four five six seven eight"
    screens = captions.screens()
    for (before, _), (after, _) in zip(screens, screens[1:]):
        assert after.startswith(before)
    assert all("tree" not in committed for committed, _ in screens)


def test_a_hypothesis_that_rehears_committed_audio_does_not_commit_it_twice():
    words = spoken("Alpha beta gamma delta epsilon zeta eta theta", 0.2, 0.5)
    captions, _ = play(ScriptedEngine.of(a=(noise(4.6), words)))
    assert captions.text().split() == [w.text.strip() for w in words]


# -- the buffer ---------------------------------------------------------------------------------


def test_the_buffer_is_cut_after_a_committed_sentence_end_once_it_is_long():
    words = spoken("One two three four five six. seven eight nine ten eleven twelve", 0.2)
    options = StreamingOptions(vad=False, trim_after_s=2.0, max_buffer_s=8.0)
    engine = ScriptedEngine.of(a=(noise(5.5), words))
    captions, _ = play(engine, options)
    assert captions.text() == "One two three four five six. Seven eight nine ten eleven twelve"
    six, seven = words[5], words[6]
    after_cut = [d for d in engine.decoded if six.end - 0.1 <= d.start <= seven.start]
    assert len(after_cut) >= 2  # cut between them, and decoded from there on
    assert all(d.window.prompt.endswith("six.") for d in after_cut)
    assert all(d.start > 0 for d in engine.decoded[engine.decoded.index(after_cut[0]) :])


def test_a_cut_after_a_sentence_end_keeps_the_tentative_word_aligned_across_it():
    """Aligned times overlap: "seven", first heard in the window that commits "six.", starts
    0.1 s before "six." ends. The cut after "six." stops at "seven"'s start: cut inside it,
    it dropped every tentative word, and the next window no longer held "seven" (a resumed
    stream lost "to letters of more generous design" that way)."""
    said = spoken("One two three four five six.", 0.2)
    said += [Word(" seven", said[-1].end - 0.1, said[-1].end + 0.9)]
    said += spoken("eight nine ten eleven twelve", said[-1].end + 0.1)
    options = StreamingOptions(vad=False, trim_after_s=2.0, max_buffer_s=8.0)
    engine = ScriptedEngine.of(a=(noise(6.0), said))
    captions, _ = play(engine, options)
    assert captions.text() == "One two three four five six. Seven eight nine ten eleven twelve"
    assert any(d.start == said[6].start for d in engine.decoded)  # the cut at "seven"


def test_the_buffer_never_grows_past_the_cap_even_when_nothing_agrees():
    words = spoken(" ".join(f"w{i}" for i in range(40)), 0.2)

    def never_agrees(start: float, end: float, n: int) -> list[Word]:
        return [Word(f"{w.text}v{n}", w.start, w.end) for w in fully_heard(words)(start, end, n)]

    options = StreamingOptions(vad=False, trim_after_s=2.0, max_buffer_s=4.0)
    engine = ScriptedEngine.of(a=(noise(16.5), never_agrees))
    captions, transcriber = play(engine, options)
    assert max(d.end - d.start for d in engine.decoded) <= options.max_buffer_s + 0.5
    assert transcriber.stats("a").forced_commits > 0
    assert len(captions.committed()) == 40  # every word still reaches the viewer, once


# -- pauses and the end of a stream -------------------------------------------------------------


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio(bundled_sample())


def test_a_pause_commits_the_pending_words_without_waiting_for_a_second_hypothesis(jfk):
    audio = np.concatenate([jfk[: int(2.3 * SAMPLE_RATE)], np.zeros(2 * SAMPLE_RATE, np.float32)])

    def never_agrees(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(JFK_WORDS[:5])(start, end, n)
        return [Word(f"{w.text}{'y' * n}", w.start, w.end) for w in heard]

    engine = ScriptedEngine.of(a=(audio, never_agrees))
    captions, transcriber = play(engine, StreamingOptions())
    committed = captions.committed()
    assert len(committed) == 5 and committed[-1].text.startswith(" Americans")
    speech_end = 2.24
    assert all(w.emitted_s <= speech_end + StreamingOptions().pause_s + 0.6 for w in committed)
    assert transcriber.stats("a").finalizations >= 1


def test_silence_is_never_decoded_and_words_heard_in_it_are_dropped(jfk):
    silence = np.zeros(3 * SAMPLE_RATE, np.float32)
    audio = np.concatenate([silence, jfk[: int(2.3 * SAMPLE_RATE)], silence])
    said = spoken("And so my fellow Americans,", 3.35, 0.38)
    thank_you = Word(" Thank", 4.0 + 2.3 + 0.5, 4.0 + 2.3 + 0.9)  # Whisper on silence

    def hear(start: float, end: float, n: int) -> list[Word]:
        return fully_heard([*said, thank_you])(start, end, n)

    engine = ScriptedEngine.of(a=(audio, hear))
    captions, _ = play(engine, StreamingOptions())
    assert "Thank" not in captions.text()
    assert all(d.end > 3.0 for d in engine.decoded)  # the leading silence was never decoded
    assert all(d.start >= 3.0 - StreamingOptions().preroll_s - 0.05 for d in engine.decoded)


def test_the_end_of_a_stream_commits_the_rest_in_a_final_update():
    words = spoken("See you all next week", 0.2)
    engine = ScriptedEngine.of(a=(noise(2.2), words))
    captions, _ = play(engine, step_s=1.0)
    last = captions.of("a")[-1]
    assert last.final and last.tentative == ()
    assert captions.text() == "See you all next week"
    assert sum(u.final for u in captions.updates) == 1


def test_a_shutdown_flush_commits_the_tentative_words_without_decoding():
    words = spoken("We are almost done here", 0.2)
    engine = ScriptedEngine.of(a=(noise(3.0), misheard_at_the_tail(words, settle_s=5.0)))
    transcriber = StreamingTranscriber(engine, NO_VAD, clock="audio")
    transcriber.open("a", "transcribe", "en")
    transcriber.feed(AudioChunk("a", engine.scripts["a"].audio[: 2 * SAMPLE_RATE], 0.0))
    transcriber.step()
    decoded = len(engine.decoded)
    (update,) = transcriber.flush()
    assert len(engine.decoded) == decoded
    assert update.final and update.tentative == ()
    assert [w.text for w in update.committed] == [w.text + "x" for w in words if w.end <= 2.0]


def test_a_translated_word_commits_once_its_sentence_has_ended_and_the_next_one_begun():
    """A translation of half a clause lacks what ends it (the German verb comes last), so a
    translating stream commits a sentence only once a hypothesis ends it and goes on (or at a
    pause, the cap, the end); transcribing, words commit as soon as two hypotheses agree."""
    words = spoken("I have seen the dog today. It was big and brown and very happy", 0.2)
    audio = noise(6.0)

    def emitted(task: Task, by_sentence: bool) -> dict[str, float]:
        engine = ScriptedEngine.of(a=(audio, words))
        options = StreamingOptions(
            vad=False, translation_by_sentence=by_sentence, translate_min_step_s=0.5
        )
        captions, _ = play(engine, options, task=task, language="de")
        assert captions.text() == "I have seen the dog today. It was big and brown and very happy"
        return {w.text.strip(" ."): w.emitted_s for w in captions.committed()}

    by_sentence = emitted("translate", True)
    it_heard = words[6].end  # " It", the first word after the full stop
    assert all(by_sentence[w] >= it_heard for w in ("I", "have", "seen"))
    assert all(by_sentence[w] == 6.0 for w in ("was", "big", "brown", "happy"))  # the end
    assert emitted("translate", False)["I"] < it_heard
    assert emitted("transcribe", True)["I"] < it_heard


# -- prompts and resuming -----------------------------------------------------------------------


def resumed(
    engine: ScriptedEngine,
    options: StreamingOptions,
    audio: np.ndarray,
    resume_at: float,
    history: list[CommittedWord],
) -> Captions:
    """Stream `audio` from `resume_at` (0.5 s a round) as a stream resumed with `history`."""
    transcriber = StreamingTranscriber(engine, options, clock="audio")
    transcriber.open("a", "transcribe", "en", start=resume_at, history=history)
    captions = Captions()
    for t in np.arange(resume_at, len(audio) / SAMPLE_RATE, 0.5):
        chunk = audio[int(t * SAMPLE_RATE) : int((t + 0.5) * SAMPLE_RATE)]
        transcriber.feed(AudioChunk("a", chunk, float(t)))
        captions.updates += transcriber.step()
    transcriber.feed(EndOfStream("a"))
    while transcriber.active:
        captions.updates += transcriber.step()
    return captions


def test_a_resumed_stream_prompts_with_its_history_and_does_not_repeat_it():
    words = spoken("it was the best of times it was the worst of times", 0.2)
    audio = noise(5.2)
    history = [CommittedWord(w.text, w.start, w.end, 1.0, w.end, w.end + 0.5) for w in words[:6]]
    engine = ScriptedEngine.of(a=(audio, words))
    resume_at = 1.0  # the old worker had received audio up to here
    captions = resumed(engine, NO_VAD, audio, resume_at, history)
    assert engine.decoded[0].window.prompt == "it was"  # history before the buffer
    assert captions.text() == "it was the worst of times"
    later = [d for d in engine.decoded if d.start >= words[5].end]
    assert all("best of times" in d.window.prompt for d in later)


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("which would not do justice to letters of more generous design", " to letters"),
        ("which would not do justice. It is discouraging to note that", " It is"),
    ],
)
def test_the_full_stop_a_drained_stream_ended_on_waits_until_the_resumed_stream_hears_it(
    said: str, expected: str
):
    """A service drained mid-sentence closes its last word ("justice") with a full stop the
    speaker never said. The resumed stream holds it, as at a pause, until a window re-hears
    the word: no prompt carries it, no sentence-end cut is made there, and it is not sent a
    second time when the speaker did end the sentence. Here the first decodes hear nothing
    (tiny.en heard only "is" in the first 7.5 s of such a window)."""
    words = spoken(said, 0.2)
    history = [CommittedWord(w.text, w.start, w.end, 1.0, w.end, w.end) for w in words[:4]]
    justice = words[4]
    history += [
        CommittedWord(" justice", justice.start, justice.end, 1.0, justice.end, justice.end),
        CommittedWord(".", justice.start, justice.end, 1.0, justice.end, justice.end),
    ]
    audio = noise(5.6)

    def late(start: float, end: float, n: int) -> list[Word]:
        return fully_heard(words)(start, end, n) if n >= 6 else []

    engine = ScriptedEngine.of(a=(audio, late))
    options = StreamingOptions(vad=False, trim_after_s=2.0, max_buffer_s=3.0)
    text = resumed(engine, options, audio, words[2].start, history).text()
    assert text.startswith(expected.strip()) and text.count(".") == 0, text
    after_justice = [d for d in engine.decoded if d.start >= justice.end]
    assert after_justice, "the buffer was never cut after the resumed history"
    went_on = "." not in said
    assert all(("justice." in d.window.prompt) != went_on for d in after_justice), [
        d.window.prompt for d in after_justice
    ]


def test_the_prompt_carries_committed_text_before_the_buffer_up_to_prompt_chars():
    words = spoken(". ".join(f"sentence {i}" for i in range(20)) + ".", 0.2)
    options = StreamingOptions(vad=False, trim_after_s=1.5, max_buffer_s=6.0, prompt_chars=30)
    engine = ScriptedEngine.of(a=(noise(16.5), words))
    captions, _ = play(engine, options)
    assert captions.text().lower().startswith("sentence 0. sentence 1.")
    for decoded in engine.decoded:
        before = [w for w in captions.committed() if w.end <= decoded.start + 0.05]
        expected = "".join(w.text for w in before).strip()[-30:]
        assert decoded.window.prompt == expected, decoded


# -- what the viewer sees -----------------------------------------------------------------------


def test_tentative_text_never_repeats_the_committed_words_before_it():
    said = JFK_WORDS[7:14]  # "what your country can do for you."
    echo = spoken("Ask not what your country can do", 7.46, 0.005, 0.0)  # Whisper's echo

    def echoing(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(said)(start, end, n)
        return heard + echo if 7.4 <= end < 7.6 else heard

    captions, _ = play(ScriptedEngine.of(a=(noise(8.2), echoing)))
    assert captions.text() == "What your country can do for you."
    for committed, tentative in captions.screens():
        tail = [normalized(w) for w in committed.split()[-6:]]
        shown = [normalized(w) for w in tentative.split()]
        repeated = [
            n
            for n in range(2, min(len(tail), len(shown)) + 1)
            if any(shown[i : i + n] == tail[-n:] for i in range(len(shown)))
        ]
        assert not repeated, (committed, tentative)


# -- scheduling ---------------------------------------------------------------------------------


def test_a_slow_round_is_followed_by_one_larger_step_not_a_queue_of_small_ones():
    words = spoken("catch up with the speaker without falling behind", 0.2)
    engine = ScriptedEngine.of(a=(noise(4.0), words))
    audio = engine.scripts["a"].audio
    transcriber = StreamingTranscriber(engine, NO_VAD, clock="audio")
    transcriber.open("a", "transcribe", "en")
    transcriber.feed(AudioChunk("a", audio[: SAMPLE_RATE // 2], 0.0))
    transcriber.step()
    # The round above took 3 s on a slow machine: 3 s of audio arrived meanwhile.
    transcriber.feed(AudioChunk("a", audio[SAMPLE_RATE // 2 : int(3.5 * SAMPLE_RATE)], 0.5))
    transcriber.step()
    assert not transcriber.pending_work()
    assert [(d.start, round(d.end, 2)) for d in engine.decoded] == [(0.0, 0.5), (0.0, 3.5)]


def test_one_round_batches_the_streams_with_new_speech_longest_waiting_first():
    engine = ScriptedEngine.of(
        **{name: (noise(3.0, seed), spoken("hello there", 0.2)) for seed, name in enumerate("abc")}
    )
    options = StreamingOptions(vad=False, max_batch=2)
    transcriber = StreamingTranscriber(engine, options, clock="audio")
    for name in "abc":
        transcriber.open(name, "transcribe", "en")
        transcriber.feed(AudioChunk(name, engine.scripts[name].audio[:SAMPLE_RATE], 0.0))
    transcriber.step()
    transcriber.step()
    batches = [[d.recording for d in engine.decoded if d.batch == b] for b in range(2)]
    assert batches == [["a", "b"], ["c"]]  # at most max_batch per call; c waited longest next
    assert engine.calls == 2


# -- reading like a careful captioner -----------------------------------------------------------


def test_a_pause_does_not_end_a_sentence_that_the_next_hypothesis_continues(jfk):
    def pause_says_period(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(JFK_WORDS)(start, end, n)
        # At the pause the model ends the sentence; once it hears what follows, it does not.
        if heard and heard[-1].text == " not" and end < 5.4:
            heard[-1] = Word(" not.", heard[-1].start, heard[-1].end)
        return heard

    engine = ScriptedEngine.of(a=(jfk, pause_says_period))
    captions, transcriber = play(engine, StreamingOptions())
    assert transcriber.stats("a").finalizations >= 1
    assert "not." in " ".join(tentative for _, tentative in captions.screens())
    text = captions.text()
    assert "ask not what your country can do for you." in text, text
    assert text.startswith("And so my fellow Americans, ask not what")


def test_a_word_commits_only_once_speech_follows_it_unless_the_pause_is_long(jfk):
    def without_right_context(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(JFK_WORDS)(start, end, n)
        # What Whisper base writes for windows ending 3.8-5.4 s (measured): "asked", "asked
        # not." - "ask not" only once it hears "what" after the pause.
        if end < 5.8:
            heard = [
                Word({" ask": " asked", " not": " not."}.get(w.text, w.text), w.start, w.end)
                for w in heard
            ]
        return heard

    engine = ScriptedEngine.of(a=(jfk, without_right_context))
    captions, _ = play(engine, StreamingOptions(right_context_s=0.5, long_pause_s=1.5))
    assert "Americans, ask not what your country" in captions.text(), captions.text()
    # ...and words with speech after them did not wait: "And so" committed in the first pause
    so = next(w for w in captions.committed() if w.text == " so")
    assert so.emitted_s < 3.3
    # Without the rule, two windows that agree commit what the model wrote without context.
    captions, _ = play(engine, StreamingOptions(right_context_s=0.0))
    assert "asked not" in captions.text(), captions.text()
    # A pause longer than long_pause_s commits everything: nobody waits that long.
    captions, _ = play(engine, StreamingOptions(right_context_s=0.5, long_pause_s=0.6))
    assert "asked not" in captions.text(), captions.text()


def test_a_sure_word_commits_in_the_first_hypothesis_that_hears_speech_after_it(jfk):
    """A word Whisper is sure of commits the first time it is heard, once
    `confident_right_context_s` of speech follows it: one decode sooner than two agreeing
    hypotheses. An unsure word still waits for the second."""
    unsure = {" fellow", " can"}
    said = [replace(w, probability=0.6 if w.text in unsure else 0.97) for w in JFK_WORDS]
    engine = ScriptedEngine.of(a=(jfk, said))
    # opening_s=0: these are the stream's first words, which the opening rule holds back
    # (tested on its own below).
    sure_first = StreamingOptions(opening_s=0, confident_above=0.9, confident_right_context_s=0.3)
    captions, _ = play(engine, sure_first)
    assert captions.text() == JFK_TEXT

    def hearings(word: CommittedWord) -> int:
        """The decodes that heard `word` by the time it committed."""
        return sum(1 for d in engine.decoded if word.end <= d.end <= word.emitted_s + 1e-6)

    committed = captions.committed()
    once = [w for w in committed if hearings(w) == 1]
    assert len(once) >= 5, [(w.text, hearings(w)) for w in committed]
    assert not unsure & {w.text.rstrip(",.") for w in once}
    # ...by the decode that heard 0.3 s after it
    assert all(any(w.end + 0.3 <= d.end <= w.emitted_s for d in engine.decoded) for w in once)

    engine = ScriptedEngine.of(a=(jfk, said))
    by_agreement, _ = play(engine, StreamingOptions(opening_s=0, confident_above=0.0))
    assert by_agreement.text() == JFK_TEXT
    agreed_at = {w.start: w.emitted_s for w in by_agreement.committed()}
    sooner = [agreed_at[w.start] - w.emitted_s for w in once]
    assert sum(1 for s in sooner if s >= 0.5) >= 5 and min(sooner) >= 0, sooner


def test_a_doubtful_word_waits_for_speech_after_it_even_across_a_pause(jfk):
    """Whisper base hears "ask" before JFK's pause as "asked" (probability 0.36) and ends the
    sentence there ("not." 0.56) until "what" follows: those unsure words stay tentative
    through the pause (shorter than long_pause_s) and the window that hears "what" gives
    "ask not what". Sure words commit as before."""

    def unsure_before_the_pause(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(JFK_WORDS)(start, end, n)
        if end < 5.8:
            unsure = {" ask": Word(" asked", 0, 0, 0.36), " not": Word(" not.", 0, 0, 0.56)}
            heard = [
                Word(unsure[w.text].text, w.start, w.end, unsure[w.text].probability)
                if w.text in unsure
                else w
                for w in heard
            ]
        return heard

    engine = ScriptedEngine.of(a=(jfk, unsure_before_the_pause))
    captions, _ = play(engine, StreamingOptions(doubtful_below=0.5))
    text = captions.text()
    assert "Americans, ask not what your country" in text, text
    americans = next(w for w in captions.committed() if w.text == " Americans")
    assert americans.emitted_s < 3.3  # a sure word before the pause did not wait
    # Below 0.36 "asked" is sure, and commits at the pause.
    asked_is_sure, _ = play(engine, StreamingOptions(doubtful_below=0.3))
    assert "asked not" in asked_is_sure.text(), asked_is_sure.text()
    # A pause longer than long_pause_s commits the doubtful words as they stand.
    captions, _ = play(engine, StreamingOptions(doubtful_below=0.5, long_pause_s=0.6))
    assert "asked not" in captions.text(), captions.text()


def test_a_streams_first_words_commit_only_once_speech_follows_them(jfk):
    """With no prompt and little audio, Whisper misreads a stream's first words and agrees with
    itself on them: base heard LJ001-0123's "This is awkward" as "This is all court." in every
    window up to 2.4 s, and "awkward" from 2.6 s. A word that ends in the first `opening_s` of
    speech commits only once as much speech follows it, or at a pause."""
    audio = jfk[int(5.0 * SAMPLE_RATE) :]  # "what your country can do for you. Ask what..."
    said = [replace(w, start=w.start - 5.0, end=w.end - 5.0) for w in JFK_WORDS[7:]]

    def misread_early(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(said)(start, end, n)
        return [replace(w, text=" can't") if w.text == " can" and end < 2.6 else w for w in heard]

    engine = ScriptedEngine.of(a=(audio, misread_early))
    waited, _ = play(engine, StreamingOptions())
    hasty, _ = play(engine, StreamingOptions(opening_s=0))
    assert "your country can do for you" in waited.text(), waited.text()
    assert "your country can't do for you" in hasty.text(), hasty.text()
    # The words behind the opening's wait for it; once it has its speech after it (4.4 s
    # here: speech from 0.44 s, with a pause at 2.62-3.22 s), words commit as before.
    later = [w.emitted_s for w in waited.committed() if w.start > 4.3]
    assert later and later == [w.emitted_s for w in hasty.committed() if w.start > 4.3]


def test_a_doubtful_word_commits_once_enough_speech_follows_it(jfk):
    """Two hypotheses agree on an unsure "fellow" (1.55-1.9 s): it commits once
    `doubtful_right_context_s` of speech has been heard after it ("Americans, ask not",
    across the pause), not at once, and the sure words before it do not wait."""

    def unsure_fellow(start: float, end: float, n: int) -> list[Word]:
        return [
            Word(w.text, w.start, w.end, 0.3) if w.text == " fellow" else w
            for w in fully_heard(JFK_WORDS)(start, end, n)
        ]

    engine = ScriptedEngine.of(a=(jfk, unsure_fellow))

    def emitted(options: StreamingOptions) -> dict[str, float]:
        captions, _ = play(engine, options)
        return {w.text: w.emitted_s for w in captions.committed()[:5]}

    # opening_s=0: these are the stream's first words, which the opening rule holds back
    # (tested on its own below).
    waited = emitted(
        StreamingOptions(opening_s=0, doubtful_below=0.5, doubtful_right_context_s=1.0)
    )
    plain = emitted(StreamingOptions(opening_s=0, doubtful_below=0.0))
    assert plain[" fellow"] <= 2.5 and waited[" my"] == plain[" my"]
    assert waited[" fellow"] >= 4.3, waited


def test_a_doubtful_word_commits_only_if_both_agreeing_hypotheses_heard_speech_after_it(jfk):
    """Two hypotheses a second apart agree on an unsure "could" for "can" (6.35-6.55 s): the
    later one heard a second of speech after it, the earlier one 0.45 s. Base heard
    LJ001-0123's first second as "This is all court." ("court." 0.27, 0.22 s before the
    window's end), the next window agreed, and only the one after it heard "awkward": the
    earlier hypothesis too must have heard half of `doubtful_right_context_s` after it."""

    def unsure_can(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(JFK_WORDS)(start, end, n)
        if end >= 8.5:
            return heard
        return [Word(" could", w.start, w.end, 0.3) if w.text == " can" else w for w in heard]

    engine = ScriptedEngine.of(a=(jfk, unsure_can))
    captions, _ = play(engine, StreamingOptions(doubtful_below=0.5), step_s=1.0)
    assert captions.text() == JFK_TEXT, captions.text()
    # Without the rule the hypotheses ending at 7 and 8 s commit "could".
    plain, _ = play(engine, StreamingOptions(doubtful_below=0.0), step_s=1.0)
    assert "country could do" in plain.text(), plain.text()


# Buffers trimmed from 10 s and capped at 15 s (the default is 5 / 8): the whole of JFK fits.
LONG_BUFFER = StreamingOptions(trim_after_s=10.0, max_buffer_s=15.0)


def test_a_pause_that_ends_a_sentence_keeps_its_period_and_the_next_word_is_capitalized(jfk):
    said = [*JFK_WORDS[:7], *spoken("now what your country can do for you.", 5.45, 0.27)]

    def new_sentence(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(said)(start, end, n)
        return [Word(" not.", w.start, w.end) if w.text == " not" else w for w in heard]

    # A buffer long enough that the window after the pause re-hears "not." (the scripted
    # model writes "now" lowercase, which a cut buffer would read as the sentence going on).
    captions, _ = play(ScriptedEngine.of(a=(jfk, new_sentence)), LONG_BUFFER)
    assert "ask not. Now what your country" in captions.text(), captions.text()
    not_ = next(w for w in captions.committed() if w.text.startswith(" not"))
    assert not_.emitted_s < 5.45  # committed at the pause; only its period waited


def test_a_word_said_again_back_to_back_is_committed_once():
    def stutter(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(spoken("All books are not primarily works of art", 0.2))(start, end, n)
        at = [i for i, w in enumerate(heard) if w.text == " not"]
        if at:
            w = heard[at[0]]
            heard.insert(at[0] + 1, Word(" not", w.end, w.end + 0.1))
        return heard

    captions, _ = play(ScriptedEngine.of(a=(noise(4.0), stutter)))
    assert captions.text() == "All books are not primarily works of art"


def test_a_phrase_the_model_loops_on_is_not_committed_again():
    said = spoken("Began to print in that city, 1469-1470.", 0.2)
    loop = spoken("1469-1470. 1469-1470. 1469-1470.", 2.7, 0.1, 0.0)

    def looping(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(said)(start, end, n)
        return heard + [w for w in loop if w.end <= end] if end >= 3.0 else heard

    captions, _ = play(ScriptedEngine.of(a=(noise(3.5), looping)))
    assert captions.text() == "Began to print in that city, 1469-1470."


def test_the_last_decode_of_a_long_buffer_hears_only_what_is_not_committed_yet():
    words = spoken("This is the end of the story", 0.2)
    options = StreamingOptions(vad=False, trim_after_s=2.0, max_buffer_s=8.0)
    engine = ScriptedEngine.of(a=(noise(3.1), words))
    captions, _ = play(engine, options)
    last = engine.decoded[-1]
    committed_before = [w for w in captions.committed() if w.emitted_s < 3.1]
    assert len(committed_before) >= 3
    # From the end of the word before the last committed one (aligned ends are often early).
    assert committed_before[-2].end - 0.1 <= last.start <= committed_before[-1].start
    assert captions.text() == "This is the end of the story"


def test_the_last_decode_of_a_short_buffer_hears_it_whole_for_context():
    engine = ScriptedEngine.of(a=(noise(3.1), spoken("This is the end of the story", 0.2)))
    play(engine)
    assert engine.decoded[-1].start == 0.0


def test_a_last_decode_that_stops_before_the_speech_does_decodes_the_rest_again(jfk):
    """Whisper may end its text early: decoding all of JFK, it stops after "for you." though
    3 s of speech follow. The VAD still hears that speech, so the audio after the last word
    heard is decoded once more, and "Ask what you can do for your country." is not lost."""

    def stops_early(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(JFK_WORDS)(start, end, n)
        if end >= len(jfk) / SAMPLE_RATE - 0.01 and start < 5.0:
            return [w for w in heard if w.end < 7.6]
        return heard

    engine = ScriptedEngine.of(a=(jfk, stops_early))
    captions, _ = play(engine, StreamingOptions(), step_s=4.0)
    assert captions.text().endswith("for you. Ask what you can do for your country."), (
        captions.text()
    )
    tail = engine.decoded[-1]
    assert 6.5 < tail.start < 7.6 and tail.window.prompt.endswith("can do for")


def test_speech_a_decode_stopped_short_of_before_a_pause_is_decoded_again(jfk):
    """A decode may hear less than the last one and end its text early: a joined meeting's
    stream showed "more generous." tentative after "letters of", then a decode heard nothing
    after "of" and the speech paused. The VAD still hears speech after the last word heard,
    so that audio is decoded again at the pause, and the sentence's end is not lost."""
    audio = np.concatenate([jfk[: int(2.3 * SAMPLE_RATE)], np.zeros(3 * SAMPLE_RATE, np.float32)])
    said = JFK_WORDS[:5]

    def stops_short(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(said)(start, end, n)
        if end >= 2.3 and start < 1.0:
            return [w for w in heard if w.end < 1.2]  # "And so my", and the text ends
        return heard

    engine = ScriptedEngine.of(a=(audio, stops_short))
    # opening_s=0: these are the stream's first words, which the opening rule holds back
    # (tested on its own below).
    captions, transcriber = play(engine, StreamingOptions(opening_s=0))
    assert captions.text() == "And so my fellow Americans,"
    assert transcriber.stats("a").unheard_redecodes == 1
    assert engine.decoded[-1].start >= 1.0


# tiny.en's real-time moments in a loaded service: at 8.25 s the pause commits "for you.";
# the buffer (11 s at the end) is then long enough for the last decode to start at a cut.
JFK_LOADED_DECODES_S = (5.25, 8.25)


def test_a_last_decode_that_loses_its_place_is_replaced_by_a_decode_of_the_whole_buffer(jfk):
    """tiny.en, from a cut at "for you." with nothing tentative, heard "for your country."
    with "for" over "you. Ask what you can do": it does not re-hear the committed "for you",
    so it lost its place, and the sentence after it was lost with it."""
    end_s = len(jfk) / SAMPLE_RATE

    def loses_place(start: float, end: float, n: int) -> list[Word]:
        if end >= end_s - 0.01 and start > 5.0:
            return [
                Word(" for", 7.68, 9.08),
                Word(" your", 9.08, 10.08),
                Word(" country.", 10.08, 10.46),
            ]
        return fully_heard(JFK_WORDS)(start, end, n)

    engine = ScriptedEngine.of(a=(jfk, loses_place))
    # The whole buffer must start before 5 s, where the scripted model keeps its place.
    text = decoded_at(engine, jfk, JFK_LOADED_DECODES_S, LONG_BUFFER)
    assert text.endswith("for you. Ask what you can do for your country."), text
    cut, whole = engine.decoded[-2:]
    assert cut.start > 5.0 and whole.start == 0.0 and whole.end == cut.end


def test_the_words_of_the_last_decode_are_not_cut_away_with_the_buffer(jfk):
    """The last decode's words stay tentative until the end commits them: a sentence-end cut
    of the buffer after it (at "for you.") must not drop them, even when the next word's
    aligned start lies before the cut ("Ask" aligned from 7.3 s, inside "you.")."""
    end_s = len(jfk) / SAMPLE_RATE

    def early_ask(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(JFK_WORDS)(start, end, n)
        if end >= end_s - 0.01:
            return [Word(w.text, 7.3, w.end) if w.text == " Ask" else w for w in heard]
        return heard

    engine = ScriptedEngine.of(a=(jfk, early_ask))
    text = decoded_at(engine, jfk, JFK_LOADED_DECODES_S, StreamingOptions())
    assert engine.decoded[-1].start > 5.0
    assert text.endswith("for you. Ask what you can do for your country."), text


def ends_with(words: list[Word], ending: list[Word], total_s: float) -> Hearing:
    """`words` as heard; the decode of the stream's end also hears `ending` (none before it)."""

    def hear(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(words)(start, end, n)
        return heard + ending if end >= total_s - 0.01 else heard

    return hear


SENTENCE = spoken("Always begin with a capital letter.", 0.2)  # said by 2.5 s


@pytest.mark.parametrize(
    ("ending", "task", "kept"),
    [
        # FLEURS en 001 in real time: "...in the middle of a sentence. Let's go." (0.53, 0.37).
        ([Word(" Let's", 2.72, 2.9, 0.525), Word(" go.", 2.9, 3.08, 0.368)], "transcribe", False),
        # FLEURS en 005: "...of others. The hospital has ive." at temperature 0.
        (
            [
                Word(" The", 2.7, 2.86, 0.006),
                Word(" hospital", 2.86, 2.86, 0.0),
                Word(" has", 2.86, 2.98, 0.063),
                Word(" ive.", 3.0, 3.04, 0.023),
            ],
            "transcribe",
            False,
        ),
        # Controls: a new sentence the model is sure of; unsure words read as a translation.
        ([Word(" See", 2.72, 2.9, 0.97), Word(" you.", 2.9, 3.08, 0.91)], "transcribe", True),
        ([Word(" Let's", 2.72, 2.9, 0.525), Word(" go.", 2.9, 3.08, 0.368)], "translate", True),
    ],
    ids=["unsure-new-sentence", "anomaly-at-temperature-0", "sure", "translating"],
)
def test_a_sentence_only_the_last_decode_heard_commits_only_if_the_model_heard_it(
    ending, task, kept
):
    """The end of a stream has no second decode to agree with, and Whisper prompted with a
    finished sentence reads a closing breath as a plausible next one."""
    engine = ScriptedEngine.of(a=(noise(3.5), ends_with(SENTENCE, ending, 3.5)))
    captions, transcriber = play(engine, task=task, language="de" if task == "translate" else "en")
    said = "Always begin with a capital letter."
    assert captions.text() == (said + "".join(w.text for w in ending) if kept else said)
    assert transcriber.stats("a").unheard_endings == (0 if kept else 1)


def test_an_unheard_sentence_left_tentative_before_the_end_is_not_committed_by_it():
    """A real-time run of FLEURS en 005: the decode before the end heard "The hospital"
    (0.006, 0.0) in the closing breath; the last one heard nothing there, and the end
    committed what was left tentative: "...of others. The"."""
    ending = [Word(" The", 2.7, 3.26, 0.006), Word(" hospital", 3.26, 3.3, 0.0)]

    def hear(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(SENTENCE)(start, end, n)
        return heard + ending if 3.4 <= end < 3.79 else heard

    captions, transcriber = play(ScriptedEngine.of(a=(noise(3.8), hear)))
    assert captions.screens()[-2][1].strip() == "The hospital"  # tentative, as in the run
    assert captions.text() == "Always begin with a capital letter."
    assert transcriber.stats("a").unheard_endings == 1


def test_an_improbable_word_only_the_last_decode_heard_is_dropped_mid_sentence_too():
    """The anomaly test (openai/whisper's, on the words after all earlier decodes heard) does
    not need a sentence end before them; an unsure word that continues the sentence stays."""
    words = spoken("We will meet in", 0.2)  # said by 1.8 s
    for ending, kept in [
        ([Word(" the", 2.0, 2.02, 0.05), Word(" ive", 2.02, 2.04, 0.02)], False),
        ([Word(" Lisbon.", 2.0, 2.6, 0.22)], True),
    ]:
        engine = ScriptedEngine.of(a=(noise(3.0), ends_with(words, ending, 3.0)))
        captions, _ = play(engine)
        expected = "We will meet in" + ("".join(w.text for w in ending) if kept else "")
        assert captions.text() == expected, ending


@pytest.mark.parametrize(
    ("ending", "audio_s", "kept"),
    [
        # FLEURS en 001 in real time: "...in the middle of a sentence. Let's go." (0.53, 0.37)
        # in the closing breath, heard by one decode; the pause after it committed "Let's"
        # (not doubtful), and the end, which found "go." inside a sentence, kept it.
        ([Word(" Let's", 4.25, 4.38, 0.525), Word(" go.", 4.38, 4.5, 0.368)], 5.3, False),
        # Held, not dropped: speech after the pause lets agreement decide.
        ([Word(" Let's", 4.25, 4.38, 0.525), Word(" go.", 4.38, 4.5, 0.368)], None, True),
        # A sure new sentence commits at the pause as ever.
        ([Word(" See", 4.25, 4.38, 0.97), Word(" you.", 4.38, 4.5, 0.91)], 5.3, True),
    ],
    ids=["unsure-then-end", "unsure-then-speech", "sure"],
)
def test_an_unsure_new_sentence_waits_at_a_pause_for_more_speech_or_the_end(
    jfk, ending, audio_s, kept
):
    said = [*JFK_WORDS[:6], Word(" not.", 4.05, 4.25, 0.9), *JFK_WORDS[7:]]

    def hear(start: float, end: float, n: int) -> list[Word]:
        # One decode in the pause hears the ending; the end's decode, 0.3 s on, does not.
        heard_now = 4.9 <= end < 5.2 or (audio_s is None and end >= 4.9)
        return fully_heard([*said[:7], *ending, *said[7:]] if heard_now else said)(start, end, n)

    audio = jfk if audio_s is None else jfk[: int(audio_s * SAMPLE_RATE)]
    captions, _ = play(ScriptedEngine.of(a=(audio, hear)), StreamingOptions())
    text = captions.text()
    said_first = "And so my fellow Americans, ask not."
    if kept:
        assert text.startswith(said_first + "".join(w.text for w in ending)), text
    else:  # not "...ask not. Let's go.": no word of it
        assert text == said_first
    if kept and audio_s is not None:  # the sure sentence did not wait for the end
        last = next(w for w in captions.committed() if w.start == ending[-1].start)
        assert last.emitted_s < audio_s, last  # (its full stop waits for what follows)


def test_words_of_no_length_at_the_end_of_a_hypothesis_are_not_speech():
    said = spoken("We will meet again", 0.2)

    def past_the_audio(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(said)(start, end, n)
        return heard + [Word(" again.", end, end), Word(" again.", end, end)]

    captions, _ = play(ScriptedEngine.of(a=(noise(2.0), past_the_audio)))
    assert captions.text() == "We will meet again"
    assert all(w.end > w.start for w in captions.committed())


def test_after_a_cut_the_case_of_a_word_comes_from_the_window_that_heard_what_preceded_it():
    said = spoken("For you, ask what you can do for your country and more", 0.2)
    options = StreamingOptions(vad=False, trim_after_s=1.0, max_buffer_s=2.4)

    def new_window_new_sentence(start: float, end: float, n: int) -> list[Word]:
        heard = fully_heard(said)(start, end, n)
        if start > 0 and heard:  # a window that starts at a cut reads a sentence start
            heard[0] = Word(heard[0].text.title(), heard[0].start, heard[0].end)
        return heard

    engine = ScriptedEngine.of(a=(noise(5.3), new_window_new_sentence))
    captions, _ = play(engine, options)
    assert any(d.start > 0 for d in engine.decoded)
    assert captions.text() == "For you, ask what you can do for your country and more"


def test_english_speech_asked_for_translation_into_english_is_transcribed():
    engine = ScriptedEngine.of(
        en=(noise(2.0, 1), spoken("Good morning everyone", 0.2)),
        de=(noise(2.0, 2), spoken("Guten Morgen zusammen", 0.2)),
    )
    play(engine, tasks={"en": ("translate", "en"), "de": ("translate", "de")})
    assert {d.window.task for d in engine.decoded_from("en")} == {"transcribe"}
    assert {d.window.task for d in engine.decoded_from("de")} == {"translate"}


def test_a_stream_fed_in_tenths_of_a_second_is_decoded_every_min_step_not_a_chunk_later():
    # Four 0.1 s chunks add up to 0.39999 s in floats; a stream compared that way waited for a
    # fifth chunk in most rounds, and its 0.4 s rounds were 0.5 s rounds.
    said = spoken("and so my fellow Americans ask not what your country can do for you " * 4, 0.2)
    engine = ScriptedEngine.of(a=(noise(45.0, 4), said))
    play(engine, StreamingOptions(vad=False, min_step_s=0.4), step_s=0.1)
    steps = decode_steps(engine, "a")
    assert any(d.start > 0 for d in engine.decoded), "no cut: the buffer start never moved"
    assert set(steps) == {0.4}, Counter(steps)


def test_a_translated_stream_is_decoded_in_longer_rounds_than_a_transcribed_one():
    engine = ScriptedEngine.of(
        en=(noise(6.0, 1), spoken("Good morning everyone and welcome to the meeting", 0.2)),
        de=(noise(6.0, 2), spoken("Guten Morgen zusammen und willkommen zum Treffen", 0.2)),
        de_said=(noise(6.0, 3), spoken("Guten Morgen zusammen und willkommen zum Treffen", 0.2)),
    )
    options = StreamingOptions(vad=False, min_step_s=0.5, translate_min_step_s=1.0)
    tasks: dict[str, tuple[Task, str]] = {
        "en": ("translate", "en"),
        "de": ("translate", "de"),
        "de_said": ("transcribe", "de"),
    }
    play(engine, options, step_s=0.25, tasks=tasks)
    steps = {name: decode_steps(engine, name) for name in tasks}
    assert {d.window.task for d in engine.decoded_from("de")} == {"translate"}
    assert set(steps["de"]) == {1.0}, steps["de"]
    assert set(steps["en"]) == {0.5}, steps["en"]  # English speech is transcribed
    assert set(steps["de_said"]) == {0.5}, steps["de_said"]
