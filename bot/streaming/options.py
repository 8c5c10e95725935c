"""Knobs of the streaming policy (documented for users in config.example.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.messages import WHISPER_WINDOW_S
from bot.text import PROMPT_CHARS

# The most audio a stream's buffer ever holds: Whisper's window, less room for the silent tail
# that tells the decoder where speech stops. Audio beyond it is dropped (counted in the stats).
BUFFER_LIMIT_S = WHISPER_WINDOW_S - 2.0


@dataclass(frozen=True)
class StreamingOptions:
    min_step_s: float = 0.4
    """Least new audio a stream needs before it is decoded again."""
    translate_min_step_s: float = 1.5
    """The same for a stream translated into English. Each round is one more chance for two
    readings of half a sentence to agree, and half a sentence translates worse than half a
    transcript (26 FLEURS items, base, real time: chrF 44.2-44.3 in 0.4 s rounds at commit
    p50 2.8-3.0 s, 45.2-46.7 in 1.5 s rounds at 3.8 s; offline 46.4; README: Translation
    into English)."""
    trim_after_s: float = 5.0
    """Once the buffer is longer, cut it at the last committed sentence or segment end. Every
    window re-decodes its buffer, so this sets the cost of a round, hence the latency and
    the sessions a box serves; the committed text before a cut conditions the next window
    as its prompt. Measured (43 English items, --fast, 5 / 8 against 10 / 15): base WER
    3.49% / 3.44%, tiny.en 3.40% / 3.84%; faster rounds (README: Trimming, Serving)."""
    max_buffer_s: float = 8.0
    """Hard cap: cut at the last committed word, committing old tentative words if needed."""
    pause_s: float = 0.5
    """Silence after speech that finalizes the pending words without waiting for agreement."""
    right_context_s: float = 0.0
    """A word commits only once this much speech follows it, or silence of `long_pause_s`:
    Whisper bends the last words it hears ("ask" + a pause reads "asked" until "not what"
    follows)."""
    long_pause_s: float = 1.5
    """Silence after which every pending word is committed, right context or not."""
    opening_s: float = 2.0
    """A word that ends in the first this-many seconds of a stream's speech commits by
    agreement only once as much speech follows it (or at a pause): with no prompt and little
    audio, Whisper misreads a stream's first words and agrees with itself on them ("This is
    all court." for "This is awkward" in every window up to 2.4 s; "All now is" for "All
    nouns" up to 2.2 s)."""
    doubtful_below: float = 0.5
    """A word whose probability in either agreeing hypothesis is under this is doubtful: it
    commits by agreement only once the later hypothesis heard `doubtful_right_context_s` of
    speech after it and the earlier one half of that (or at a pause). Whisper's misheard
    words are mostly unsure ones ("asked" 0.36 before "not")."""
    doubtful_right_context_s: float = 1.0
    confident_above: float = 0.0
    """Transcribing, a word this probable commits the first time it is heard, once
    `confident_right_context_s` of speech follows it and every tentative word before it has
    agreed: one decode sooner than agreement. Off (0): it gains most where a round is long,
    which is where one hypothesis is least safe to trust (2.5 s steps committed "to place"
    for "took place"); measured in README: Sure words."""
    confident_right_context_s: float = 0.3
    translation_by_sentence: bool = False
    """Translating, a word commits by agreement only once a hypothesis ends its sentence and
    goes on: a translation of half a clause lacks what ends it (a German verb). A pause, the
    cap and the end of the stream commit as ever."""
    vad: bool = True
    """Skip silence (Silero VAD): no decoding and no hallucinated text where nobody speaks."""
    vad_threshold: float = 0.5
    prompt_chars: int = PROMPT_CHARS
    """How much committed text conditions the next window (Whisper's previous-text prompt)."""
    max_batch: int = 8
    """Most windows (from different streams) decoded in one engine call."""
    preroll_s: float = 0.4
    """Audio kept before detected speech so its first word is not clipped."""
