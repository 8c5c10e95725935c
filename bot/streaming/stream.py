"""One stream's state: its audio buffer, its speech detector and its caption state.

The buffer holds the audio Whisper must still look at: it starts at the last safe cut (a
committed sentence end, a pause, or the hard cap) and ends at the newest sample. Every decode
covers the whole buffer, so the cost of an update is bounded by the buffer cap, never by how
far behind the stream is: a slow machine takes larger steps instead of queueing audio.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from bot.asr.decoding import is_anomaly, spoken_words
from bot.asr.engine import Hypothesis, Task, Window
from bot.messages import SAMPLE_RATE, CaptionUpdate, CommittedWord, Word
from bot.streaming.agreement import MIN_WORD_S, Doubt, FirstSight, LocalAgreement, normalized
from bot.streaming.options import BUFFER_LIMIT_S, StreamingOptions
from bot.streaming.vad import SileroModel, SpeechDetector
from bot.text import ends_sentence

logger = logging.getLogger(__name__)

# A stream's language is learned from windows with this much speech: under 2 s, base detects
# noise ("en" 0.72 on 0.07 s of Portuguese, "lt" 0.82 on 1.25 s); with 0.4 s rounds the
# first windows locked German and Portuguese streams to English, which transcribed them to
# nothing (4-5 of 26 FLEURS items per real-time run). Until then each window detects its own.
LANGUAGE_MIN_SPEECH_S = 2.5
LANGUAGE_CONFIDENT = 0.8
LANGUAGE_VOTES = 3
PAUSE_MARGIN_S = 0.2
WORD_SPEECH_MARGIN_S = 0.1
QUIET_SEARCH_S = 0.25
QUIET_FRAME = SAMPLE_RATE // 100
# The earlier of two hypotheses agreeing on a doubtful word must have heard this share of
# `doubtful_right_context_s` after it; the later one all of it.
EARLIER_CONTEXT_SHARE = 0.5
# The last decode stopped early when the VAD hears speech this long after its last word.
STOPPED_EARLY_S = 0.5
UNHEARD_ENDING_BELOW = 0.5
"""A tentative sentence that the end of a stream would commit, begun after one that ended, is
dropped when its words' mean probability is under this: the end has no second decode to agree
or disagree with, and Whisper prompted with a finished sentence reads a breath or a click as a
plausible next one ("...in the middle of a sentence. Let's go.", 0.53 and 0.37, FLEURS en 001
in real time with 0.4 s rounds). Words the end heard that speakers said read 0.9 or more,
except lone ones (a card name, 0.22-0.56), which follow no sentence."""
MARKS = ".,;:?!。，？！、"


@dataclass
class StreamStats:
    updates: int = 0
    decode_s: float = 0.0
    finalizations: int = 0
    forced_commits: int = 0
    dropped_audio_s: float = 0.0
    max_buffer_s: float = 0.0
    whole_redecodes: int = 0
    """Last decodes from a cut that lost their place and were redone on the whole buffer."""
    unheard_redecodes: int = 0
    """Pauses before which the last decode stopped early: the speech after it decoded again."""
    unheard_endings: int = 0
    """Tentative sentences dropped as unheard before the end or a pause committed them."""


@dataclass(frozen=True)
class PendingSentence:
    """The last sentence of a stream's tentative words."""

    first: int
    """Index of its first word among the tentative words."""
    words: list[Word]
    """Its spoken words (no lone marks)."""
    unsure_new: bool
    """Begun after a sentence that ended, its mean probability under `UNHEARD_ENDING_BELOW`."""


class OnlineStream:
    """Streaming policy for one audio stream (a meeting, a file, a participant)."""

    def __init__(
        self,
        stream_id: str,
        options: StreamingOptions,
        task: Task,
        language: str | None,
        vad_model: SileroModel | None,
        start: float = 0.0,
        history: Sequence[CommittedWord] = (),
    ) -> None:
        """`start` is the audio time of the first sample; `history` the words this stream
        already committed (a restarted worker resumes with them as prompt and for dedupe)."""
        self.stream_id = stream_id
        self.options = options
        self.task: Task = task
        self.language = language
        self._language_votes: Counter[str] = Counter()
        self._audio = np.zeros(0, dtype=np.float32)
        self._buffer_start = start
        self._detector = (
            SpeechDetector(vad_model, options.vad_threshold, start) if vad_model else None
        )
        history = _marks_folded(history)
        self._agreement = LocalAgreement(history)
        self._recent: list[CommittedWord] = list(history)[-200:]
        self._segment_end_times: set[float] = set()
        self._sentence_end_times: set[float] = set()
        self._sentence_ended = not history or ends_sentence(history[-1].text)
        # The last committed word when nothing was heard after it (a pause), its closing marks
        # kept back until the next word: the pause, not the speaker, may have made the model
        # end the sentence ("ask not.").
        self._held: CommittedWord | None = None
        self._held_marks = ""
        self._held_reheard = False
        self._held_next = ""  # the word after it, as the window that re-heard it wrote it
        self._held_marks_sent = False  # a resumed stream's viewer has them already
        if history:
            # The marks a stream ended on may be its end's, not the speaker's: a service
            # drained mid-sentence closed "justice" with a ".", and the resumed stream, cut
            # and prompted there, skipped "to letters of more generous design". They wait,
            # as at a pause, for a window that re-hears the word.
            self._recent[-1] = self._hold_marks(self._recent[-1])
            self._held_marks_sent = self._held is not None
        self._heard: list[Word] = []
        # Where the opening's speech is looked for (`opening_s`); None once it is over, or
        # for a resumed stream, whose history prompts it.
        self._opening_from: float | None = None if history else start
        self._processed_end = start
        self._window: tuple[float, float] | None = None
        self._decode_whole = False
        # Where the last decode stopped hearing speech the VAD still hears: the tail after it
        # is decoded once more on its own.
        self._tail_from: float | None = None
        self._redecoded_pause: float | None = None
        self._shown: tuple[tuple[str, ...], ...] = ((), ())
        self.ended = False
        self.finished = False
        self.stats = StreamStats()

    # -- audio in ---------------------------------------------------------------------------------

    @property
    def received_end(self) -> float:
        return self._buffer_start + len(self._audio) / SAMPLE_RATE

    @property
    def buffer_s(self) -> float:
        return len(self._audio) / SAMPLE_RATE

    def add_audio(self, samples: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, samples.astype(np.float32, copy=False)])
        if self._detector is not None:
            self._detector.push(samples)
            self._skip_silence()
        if self.buffer_s > BUFFER_LIMIT_S:
            excess = self.buffer_s - BUFFER_LIMIT_S
            logger.warning(
                "stream %s: buffer over %.0f s, dropping %.1f s of audio",
                self.stream_id,
                BUFFER_LIMIT_S,
                excess,
            )
            self.stats.dropped_audio_s += excess
            self._cut(self.received_end - BUFFER_LIMIT_S)

    def end(self) -> None:
        self.ended = True

    # -- scheduling -------------------------------------------------------------------------------

    def wants_decode(self) -> bool:
        """Is there speech the engine has not heard yet, enough to be worth an update?"""
        if self.finished or self.received_end <= self._processed_end:
            return False
        if not self._has_speech(
            max(self._processed_end - 0.3, self._buffer_start), self.received_end
        ):
            return bool(self._agreement.pending) and self._covered_pause() is None
        if self.ended:
            return True
        # Counted in samples: times are float sums, and four 0.1 s chunks can come to 0.39999 s.
        new_samples = round((self.received_end - self._processed_end) * SAMPLE_RATE)
        return new_samples >= round(self._min_step_s() * SAMPLE_RATE)

    def _min_step_s(self) -> float:
        if self._task() == "translate":
            return self.options.translate_min_step_s
        return self.options.min_step_s

    def window(self) -> Window:
        start = self._buffer_start
        inside = [w for w in self._recent if w.end > start]
        heard: list[CommittedWord] = []
        if self._tail_from is not None:
            heard = [w for w in inside if w.end <= self._tail_from + 0.05]
        elif self.ended and not self._decode_whole and self.buffer_s > self.options.trim_after_s:
            # The last decode has no second opinion to agree with: from a long buffer it hears
            # only the audio not yet committed, so it cannot echo or loop over what is on
            # screen; and the last committed word again, as aligned word ends are often early
            # (a cut at "1469"'s end heard "49, 1470"). A short buffer is decoded whole: cut,
            # the 41 short English items measured pooled WER 5.56% instead of 5.26%.
            heard = inside
        if len(heard) >= 2:
            start = self._quiet_point(heard[-2].end)
        self._window = (start, self.received_end)
        first = int(round((start - self._buffer_start) * SAMPLE_RATE))
        return Window(
            audio=self._audio[first:].copy(),
            task=self._task(),
            language=self.language,
            prompt=self._prompt(start),
        )

    def _task(self) -> Task:
        """Whisper translates into English: English speech is transcribed (measured on the
        long English file, --fast: WER 6.2% asked to translate, 5.7% to transcribe)."""
        return "transcribe" if self.language == "en" else self.task

    # -- caption state ----------------------------------------------------------------------------

    def apply(self, hypothesis: Hypothesis, now: float, decode_s: float) -> CaptionUpdate | None:
        """Fold a decoded window into the caption state; return what the viewer now sees."""
        assert self._window is not None, "apply() without window()"
        window_start, window_end = self._window
        self._window = None
        self.stats.updates += 1
        self.stats.decode_s += decode_s
        timed = [
            Word(w.text, w.start + window_start, w.end + window_start, w.probability)
            for w in hypothesis.words
        ]
        words = self._heard_in_speech(_with_length(timed))
        if (
            self.ended
            and self._tail_from is None
            and window_start > self._buffer_start
            and not self._agreement.places(words, window_start)
        ):
            # The last decode, from a cut, lost its place: it does not re-hear the committed
            # words the cut kept, or disagrees with the tentative words a decode of the whole
            # buffer heard (tiny.en heard JFK's end as "for your country." after "ask what you
            # can do" was tentative, or after "for you." was committed): the whole buffer is
            # decoded once more instead.
            logger.debug("%s: the last decode lost its place; decoding it whole", self.stream_id)
            self.stats.whole_redecodes += 1
            self._decode_whole = True
            return None
        last = self.ended
        self._processed_end = window_end
        heard_end = words[-1].end if words else window_start
        if last and self._tail_from is None and self._speech_after(heard_end):
            # The decoder ended its text before the speech did (base heard LJ001-0115 to
            # "though it", not "professes to avoid ornament," in the 1.8 s after it): what it
            # heard counts as any update, and the audio after it is decoded again.
            self._tail_from = self._processed_end = heard_end
            last = False
        self.stats.max_buffer_s = max(self.stats.max_buffer_s, window_end - window_start)
        self._learn_language(hypothesis, (window_start, window_end))
        self._segment_end_times = {timed[i].end for i in hypothesis.segment_ends if i < len(timed)}
        self._heard = words
        self._reheard_held(words)
        committed = self._agreement.insert(
            words,
            window_start,
            now,
            self._commit_limit(words),
            last=last,
            doubt=self._doubt(),
            first_sight=self._first_sight(),
        )
        committed += self._finalize_if_paused(now)
        if not self.ended:
            # At the end no later window needs a short buffer, and a cut would drop tentative
            # words that started before it, which only the end commits now.
            committed += self._trim(now)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s window %.2f-%.2f heard %r %r committed %r tentative %r buffer_start %.2f",
                self.stream_id,
                window_start,
                window_end,
                "".join(w.text for w in words),
                [(round(w.start, 2), round(w.end, 2)) for w in words],
                "".join(w.text for w in committed),
                "".join(p.word.text for p in self._agreement.pending),
                self._buffer_start,
            )
        return self._update(committed, now)

    def poll(self, now: float) -> CaptionUpdate | None:
        """Changes that need no decoding: a pause after covered speech, or the end of audio."""
        if self.finished:
            return None
        if self._finalizes():
            committed = self._finalize(now)
            return self._update(committed, now)
        if self.ended and not self.wants_decode():
            self._drop_unheard_pending(sentences_too=True)
            committed = self._agreement.commit_pending(now)
            self.finished = True
            return self._update(committed, now, final=True)
        return None

    # -- internals --------------------------------------------------------------------------------

    def flush(self, now: float) -> CaptionUpdate | None:
        """Stop now (shutdown): commit the tentative words as they stand, without decoding."""
        if self.finished:
            return None
        self.ended = True
        self.finished = True
        return self._update(self._agreement.commit_pending(now), now, final=True)

    def _speech_after(self, heard_end: float, until: float | None = None) -> bool:
        """Does the VAD hear speech well after the last word a decode heard (before `until`,
        default the newest audio)?"""
        until = self.received_end if until is None else until
        return self._detector is not None and self._detector.has_speech(
            heard_end + STOPPED_EARLY_S, until
        )

    def _heard_in_speech(self, words: list[Word]) -> list[Word]:
        """Drop words the VAD heard no speech under: Whisper's "Thank you." on silence or noise."""
        if self._detector is None:
            return words
        margin = WORD_SPEECH_MARGIN_S
        return [w for w in words if self._detector.has_speech(w.start - margin, w.end + margin)]

    def _has_speech(self, start: float, end: float) -> bool:
        return self._detector is None or self._detector.has_speech(max(start, 0.0), end)

    def _speech_s(self, start: float, end: float) -> float:
        if self._detector is None:
            return end - start
        return self._detector.speech_s(start, end)

    def _pause(self) -> float | None:
        """Where the current pause started, if speech has paused for at least `pause_s`."""
        if self._detector is None:
            return None
        if self._detector.silence_at_end() < self.options.pause_s:
            return None
        return self._detector.last_speech_end()

    def _silence_s(self) -> float:
        return self._detector.silence_at_end() if self._detector is not None else float("inf")

    def _covered_pause(self) -> float | None:
        """Where the current pause started, if what was decoded reaches past it."""
        pause = self._pause()
        if pause is None or self._processed_end < pause + PAUSE_MARGIN_S:
            return None
        return pause

    def _finalize_if_paused(self, now: float) -> list[CommittedWord]:
        return self._finalize(now) if self._finalizes() else []

    def _finalizes(self) -> bool:
        """Has speech paused after what was decoded, with words tentative or speech that the
        last decode stopped short of? (A decode heard nothing after "letters of" though the
        last one heard "more generous."; with nothing tentative the pause must still decode
        that speech again.)"""
        pause = self._covered_pause()
        if pause is None:
            return False
        return bool(self._agreement.pending) or self._stopped_before(pause)

    def _drop_unheard_pending(self, sentences_too: bool) -> None:
        """Before the end or a pause commits the tentative words, which no two decodes agreed
        on, drop their last sentence if the model did not hear it: an anomaly (openai/whisper's
        test, which `settle_words` applies only to decodes that fell back: base wrote "The
        hospital has ive." at temperature 0, 0.0-0.06, on FLEURS en 005's closing breath), or,
        at the end (`sentences_too`), an unsure new sentence (`UNHEARD_ENDING_BELOW`). A pause
        mid-stream drops only anomalies: speech may go on after it, and a short unsure
        sentence before one is more likely said (it waits there: `_first_held_pending`).
        Transcribing only, as in `settle_words`."""
        last = self._last_pending_sentence()
        if last is None:
            return
        if is_anomaly(last.words) or (sentences_too and last.unsure_new):
            text = "".join(w.text for w in last.words)
            logger.debug("%s: %r was not heard", self.stream_id, text)
            self.stats.unheard_endings += 1
            self._agreement.keep_pending(last.first)

    def _last_pending_sentence(self) -> PendingSentence | None:
        """The last sentence of the tentative words, when transcribing."""
        pending = [p.word for p in self._agreement.pending]
        if self._task() != "transcribe" or not pending:
            return None
        ends = [i for i, word in enumerate(pending[:-1]) if ends_sentence(word.text)]
        first = ends[-1] + 1 if ends else 0
        sentence = spoken_words(pending[first:])
        if not sentence:
            return None
        before = pending[first - 1] if first else self._agreement.last_committed
        new_sentence = before is not None and ends_sentence(before.text)
        unsure = sum(w.probability for w in sentence) / len(sentence) < UNHEARD_ENDING_BELOW
        return PendingSentence(first, sentence, new_sentence and unsure)

    def _first_held_pending(self) -> Word | None:
        """The first tentative word a pause does not commit, while the hold lasts (no long
        pause yet, not the end of the stream): a doubtful word, or the first word of an unsure
        new sentence. Such a sentence waits for more speech (agreement decides), the end (which
        drops it) or a long pause: a pause that committed it let "...in the middle of a
        sentence. Let's go." (0.53, 0.37; FLEURS en 001's closing breath) past the end's check.
        It is held, not dropped: real sentences' first words read as low as 0.09 mid-stream."""
        if self.ended or self._silence_s() >= self.options.long_pause_s:
            return None
        pending = [p.word for p in self._agreement.pending]
        held: list[Word] = []
        if self.options.doubtful_below:
            doubt = Doubt(self.options.doubtful_below)  # no commit limit: only `doubtful` is asked
            held += [w for w in pending if doubt.doubtful(w)][:1]
        last = self._last_pending_sentence()
        if last is not None and last.unsure_new:
            held.append(pending[last.first])
        return min(held, key=lambda w: w.start, default=None)

    def _doubt(self) -> Doubt | None:
        """The doubtful-word rule as it stands now, None when it is off."""
        if not self.options.doubtful_below:
            return None
        context = self.options.doubtful_right_context_s
        limit = self._context_limit(context)
        heard = self._context_limit(context * EARLIER_CONTEXT_SHARE)
        return Doubt(self.options.doubtful_below, limit, heard)

    def _first_sight(self) -> FirstSight | None:
        """The confident-word rule as it stands now, None when it is off (or translating:
        a translation's words come in the order of the whole sentence)."""
        if not self.options.confident_above or self._task() != "transcribe":
            return None
        limit = self._context_limit(self.options.confident_right_context_s)
        if limit is None:
            return None
        return FirstSight(self.options.confident_above, limit)

    def _context_limit(self, context: float | None = None) -> float | None:
        """The latest word end that has `context` (default `right_context_s`) of speech after
        it in what was decoded; None when every word may commit (the rule is off, a long
        pause, the end)."""
        context = self.options.right_context_s if context is None else context
        if not context or self._detector is None or self.ended:
            return None
        if self._silence_s() >= self.options.long_pause_s:
            return None
        return self._detector.speech_start_before(self._processed_end, context)

    def _commit_limit(self, words: list[Word]) -> float | None:
        """The latest word end that may commit by agreement now (None: any)."""
        limits = [self._context_limit(), self._opening_limit(words)]
        if self.options.translation_by_sentence and self._task() == "translate":
            ended = [w.end for w in words[:-1] if ends_sentence(w.text)]
            limits.append(ended[-1] if ended else float("-inf"))
        return min((limit for limit in limits if limit is not None), default=None)

    def _opening_limit(self, words: list[Word]) -> float | None:
        """The latest word end that may commit while the stream's opening lasts (`opening_s`):
        a word of `words` that ends in the first `opening_s` of speech needs as much speech
        after it; the words after the opening do not wait once those have it. None when
        nothing waits: the opening is over (then for good), a long pause, the end."""
        if self._opening_from is None or self._detector is None or not self.options.opening_s:
            return None
        speech_start = self._detector.first_speech_after(self._opening_from)
        if speech_start is None:
            return None
        opening_end = speech_start + self.options.opening_s
        limit = self._context_limit(self.options.opening_s)
        committed_end = self._agreement.committed_end
        if (limit is not None and limit >= opening_end) or committed_end >= opening_end:
            self._opening_from = None
            return None
        waiting = [w.end for w in words if committed_end < w.end <= opening_end]
        if limit is None or not waiting or limit >= waiting[-1]:
            return None
        return limit

    def _finalize(self, now: float) -> list[CommittedWord]:
        self._drop_unheard_pending(sentences_too=self.ended)
        pause = self._pause() or self._processed_end
        limit = self._context_limit()
        if limit is not None:
            return self._agreement.commit_pending(now, until=limit, before_start=pause)
        held = self._first_held_pending()
        if held is not None:
            # "ask" before a pause reads "asked" until "not what" follows: a doubtful word, or
            # an unsure new sentence, waits for the speech after the pause, or a long pause.
            return self._agreement.commit_pending(now, until=held.start)
        committed = self._agreement.commit_pending(
            now, until=pause + PAUSE_MARGIN_S, before_start=pause
        )
        committed += self._agreement.commit_pending(now)
        self.stats.finalizations += 1
        if self._stopped_before(pause):
            # The decoder ended its text before the speech did (tiny.en, given 15 s at once
            # after a reconnect, heard "...to Great Britain." and not the 5 s of "And so my
            # fellow Americans, ask not" before the pause): that speech is decoded again, from
            # the last committed word, once per pause, instead of being cut away unheard.
            self._redecoded_pause = pause
            self.stats.unheard_redecodes += 1
            committed_end = self._agreement.committed_end
            if committed_end > self._buffer_start:
                self._cut(self._cut_point(committed_end))
            self._processed_end = max(committed_end, self._buffer_start)
        elif self.buffer_s > self.options.trim_after_s:
            # The audio before the pause stays as context for what follows, unless it is long.
            self._cut(max(pause, self._agreement.committed_end))
        return committed

    def _stopped_before(self, pause: float) -> bool:
        """Does the VAD hear speech before `pause` well after the last word decoded, for the
        first time at this pause?"""
        if pause == self._redecoded_pause:
            return False
        heard = [w.end for w in self._heard] + [self._agreement.committed_end, self._buffer_start]
        return self._speech_after(max(heard), until=pause)

    def _trim(self, now: float) -> list[CommittedWord]:
        """Keep the buffer short: cut at sentence ends, and never let it pass the cap."""
        committed: list[CommittedWord] = []
        inside = [w for w in self._recent if w.end > self._buffer_start]
        if self.buffer_s > self.options.trim_after_s:
            # Whisper's segment ends are often mid-sentence: only cut there once the buffer is long.
            long = self.buffer_s > (self.options.trim_after_s + self.options.max_buffer_s) / 2
            ends = [w.end for w in inside if self._ends_sentence(w, segment_ends_too=long)]
            if ends:
                self._cut(self._cut_point(ends[-1]))
        if self.buffer_s > self.options.max_buffer_s:
            keep_from = self.received_end - self.options.max_buffer_s / 2
            if self._agreement.committed_end < keep_from:
                forced = self._agreement.commit_pending(now, until=keep_from)
                self.stats.forced_commits += len(forced)
                committed += forced
            if self._agreement.committed_end > self._buffer_start:
                self._cut(min(self._cut_point(self._agreement.committed_end), keep_from))
            else:
                self._cut(keep_from)
        return committed

    def _cut_point(self, end: float) -> float:
        """Where to cut the buffer after a committed word: its quiet point, but not past the
        first tentative word's start. A cut inside a tentative word drops them all
        uncommitted (a resumed stream's quiet point after "justice." fell 0.01 s into "to",
        and "to letters of more generous design" was lost). The quiet point may lie past the
        next heard word's aligned start, which is often early; a tentative word's start is
        the limit only for cuts, which keep the words after them."""
        cut = self._quiet_point(end)
        pending = self._agreement.pending
        if pending and self._buffer_start < pending[0].word.start < cut:
            return pending[0].word.start
        return cut

    def _quiet_point(self, end: float) -> float:
        """Where to cut after a committed word: the quietest 10 ms between its aligned end
        and the next word. Aligned times are off by a tenth of a second or two, and a cut
        inside a word turns "and" into "nd" in the next window."""
        following = [w.start for w in self._heard if w.start >= end - 0.05]
        latest = min(
            following[0] + 0.05 if following else end + QUIET_SEARCH_S, end + QUIET_SEARCH_S
        )
        first = max(int((end - 0.1 - self._buffer_start) * SAMPLE_RATE), 0)
        last = min(int((max(latest, end) - self._buffer_start) * SAMPLE_RATE), len(self._audio))
        frames = (last - first) // QUIET_FRAME
        if frames < 2:
            return end
        energy = np.square(self._audio[first : first + frames * QUIET_FRAME].reshape(frames, -1))
        quietest = int(np.argmin(energy.mean(axis=1)))
        return (
            self._buffer_start + (first + quietest * QUIET_FRAME + QUIET_FRAME // 2) / SAMPLE_RATE
        )

    def _ends_sentence(self, word: CommittedWord, segment_ends_too: bool) -> bool:
        if ends_sentence(word.text) or word.end in self._sentence_end_times:
            return True
        if self._held is not None and word.end == self._held.end:
            # Its full stop is held for the next word, which a window that long may never
            # reach: the decoder stopped at "...back of the paper." for 5 s of the next
            # sentence until the stream ended, and the sentence was lost. Not the marks a
            # resumed stream's history ended on, until a window confirms them: tiny.en heard
            # only "is" in its first 7.5 s, and a cut at "justice." lost what followed.
            return ends_sentence(self._held_marks) and (
                self._held_reheard or not self._held_marks_sent
            )
        return segment_ends_too and word.end in self._segment_end_times

    def _hold_marks(self, word: CommittedWord) -> CommittedWord:
        text = word.text.rstrip()
        bare = text.rstrip(MARKS)
        if not bare.strip() or bare == text:
            return word
        held = replace(word, text=bare)
        self._held, self._held_marks, self._held_reheard = held, text[len(bare) :], False
        self._sentence_ended = False
        return held

    def _reheard_held(self, words: list[Word]) -> None:
        """A later window that still holds the held word says how it really ends."""
        held = self._held
        if held is None:
            return
        for word, after in zip(words, words[1:]):  # with a word after it: right context
            same = normalized(word.text) == normalized(held.text)
            if same and abs(word.start - held.start) < 0.5:
                text = word.text.rstrip()
                self._held_marks = text[len(text.rstrip(MARKS)) :]
                self._held_reheard = True
                self._held_next = after.text
                return

    def _in_sentence(self, committed: list[CommittedWord]) -> list[CommittedWord]:
        """Committed words as a careful captioner writes them: the marks held at a pause go
        before the next word (or are dropped if the sentence went on), and a word that starts
        a sentence is capitalized."""
        settled = []
        for word in committed:
            text = word.text
            if self._held is not None:
                marks = self._held_marks
                went_on = _starts_lowercase(text) and not self._held_reheard
                if went_on and ends_sentence(marks):
                    marks = ""
                if ends_sentence(marks):
                    self._sentence_end_times.add(self._held.end)
                if self._held_reheard and normalized(self._held_next) == normalized(text):
                    text = _with_case_of(self._held_next, text)  # "printing, and", not ", And"
                if self._held_marks_sent:
                    # The viewer has them on the word already (the last of the history, not
                    # yet followed by anything); the prompt reads them there.
                    self._recent[-1] = replace(self._held, text=self._held.text + marks)
                else:
                    text = marks + text
                self._sentence_ended = ends_sentence(marks)
                self._held, self._held_marks_sent = None, False
            if self._sentence_ended:
                text = _capitalized(text)
            if text.strip():
                self._sentence_ended = ends_sentence(text)
            settled.append(word if text == word.text else replace(word, text=text))
        return settled

    def _cut(self, time: float) -> None:
        if time <= self._buffer_start:
            return
        drop = min(int(round((time - self._buffer_start) * SAMPLE_RATE)), len(self._audio))
        self._audio = self._audio[drop:]
        self._buffer_start += drop / SAMPLE_RATE
        if self._detector is not None:
            self._detector.forget_before(self._buffer_start - 1.0)
        if self._agreement.pending and self._agreement.pending[0].word.start < self._buffer_start:
            self._agreement.keep_pending(0)

    def _skip_silence(self) -> None:
        """Drop silence the engine never needs to hear (keeping a short pre-roll)."""
        if self._agreement.pending or self._detector is None:
            return
        speech = self._detector.first_speech_after(self._buffer_start)
        keep_from = (speech if speech is not None else self._detector.end) - self.options.preroll_s
        if keep_from > self._buffer_start:
            self._cut(keep_from)
            self._processed_end = max(self._processed_end, self._buffer_start)

    def _prompt(self, start: float) -> str:
        """The committed text before `start` as it reads, with the marks that close it: a
        word's closing marks travel on the next word's head (or wait on the held word), and a
        window cut at a sentence end would otherwise be prompted with "...printers of Rome"
        and no full stop (tiny.en went on lowercase and looped on 20 of 351 such windows)."""
        before = [w for w in self._recent if w.end <= start + 0.05]
        text = "".join(w.text for w in before).rstrip()
        if before and len(before) < len(self._recent):
            text += _leading_marks(self._recent[len(before)].text)
        elif before and self._held is not None and before[-1].end == self._held.end:
            text += self._held_marks
        return text.strip()[-self.options.prompt_chars :]

    def _learn_language(self, hypothesis: Hypothesis, window: tuple[float, float]) -> None:
        if self.language is not None or not hypothesis.words:
            return
        if self._speech_s(*window) < LANGUAGE_MIN_SPEECH_S:
            return
        self._language_votes[hypothesis.language] += 1
        best, votes = self._language_votes.most_common(1)[0]
        if hypothesis.language_probability >= LANGUAGE_CONFIDENT or votes >= LANGUAGE_VOTES:
            self.language = (
                hypothesis.language
                if hypothesis.language_probability >= LANGUAGE_CONFIDENT
                else best
            )
            logger.info("stream %s: language %s", self.stream_id, self.language)

    def _update(
        self, committed: list[CommittedWord], now: float, final: bool = False
    ) -> CaptionUpdate | None:
        committed = self._in_sentence(committed)
        if committed and not self._agreement.pending and not final:
            # Nothing heard after it yet: its closing marks wait for the next word.
            committed[-1] = self._hold_marks(committed[-1])
        if final and self._held is not None and self._held_marks and not self._held_marks_sent:
            # No next word came: the marks close the text on their own (with the held word's
            # times, so the transcript reads "country." and no item has zero length).
            committed.append(replace(self._held, text=self._held_marks, emitted_s=now))
            self._held = None
        self._recent = (self._recent + committed)[-200:]
        tentative = tuple(p.word for p in self._agreement.pending)
        shown = (tuple(w.text for w in committed), tuple(w.text for w in tentative))
        if not committed and shown == self._shown and not final:
            return None
        self._shown = shown
        return CaptionUpdate(
            stream_id=self.stream_id,
            t_s=now,
            committed=tuple(committed),
            tentative=tentative,
            language=self.language,
            final=final,
        )


def _marks_folded(history: Sequence[CommittedWord]) -> list[CommittedWord]:
    """`history` with each word of marks only (a held "." sent on its own when a stream
    ended) put back on the word before it: a resumed stream matches committed words it
    re-hears by text, and a trailing "." matched nothing, so "justice" was committed again."""
    folded: list[CommittedWord] = []
    for word in history:
        if folded and not word.text.strip(MARKS + " "):
            folded[-1] = replace(folded[-1], text=folded[-1].text + word.text.strip())
        else:
            folded.append(word)
    return folded


def _with_length(words: list[Word]) -> list[Word]:
    """The words that the audio holds (see `MIN_WORD_S`)."""
    short = [w.end - w.start < MIN_WORD_S for w in words] + [True]
    return [
        w
        for i, w in enumerate(words)
        if not short[i] or not (short[i + 1] or (i > 0 and short[i - 1]))
    ]


def _initial(text: str) -> int | None:
    """Index of the first letter or digit of a word (after its space and opening marks)."""
    return next((i for i, c in enumerate(text) if c.isalnum()), None)


def _starts_lowercase(text: str) -> bool:
    i = _initial(text)
    return i is not None and text[i].islower()


def _with_case_of(form: str, text: str) -> str:
    i, j = _initial(form), _initial(text)
    if i is None or j is None:
        return text
    return text[:j] + form[i] + text[j + 1 :]


def _capitalized(text: str) -> str:
    i = _initial(text)
    if i is None or not text[i].islower():
        return text
    return text[:i] + text[i].upper() + text[i + 1 :]


def _leading_marks(text: str) -> str:
    """The closing marks a word carries for the word before it (". And" → ".")."""
    return text[: len(text) - len(text.lstrip(MARKS))]
