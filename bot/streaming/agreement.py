"""LocalAgreement-2: commit the longest common prefix of two consecutive hypotheses."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from bot.messages import CommittedWord, Word
from bot.text import ends_sentence

TAIL_WORDS = 40
UNHEARD_MARGIN_S = 0.05
FRAGMENT_BELOW = 0.1
ECHO_FRAGMENT_BELOW = 0.5
ECHO_FRAGMENT_GAP_S = 0.1
ECHO_FRAGMENT_LETTERS = 4
"""An unsure word (under `ECHO_FRAGMENT_BELOW`) that starts inside the last committed word or
within `ECHO_FRAGMENT_GAP_S` after it and whose first `ECHO_FRAGMENT_LETTERS` letters are in
that word past its first letter is its tail heard again: "transparent" aligned to end 0.4 s
early, and the next window heard "parent." (0.24); "manufacture", then "factor" (0.27)."""
SAID_AGAIN_PAUSE_S = 0.3
"""A phrase repeated back to back is Whisper's doubling ("books not not primarily", "1469-1470.
1469-1470." aligned to no time), unless it begins a new sentence this long or more after the
one it repeats ended, every word of it sure and at the pace of speech: the long file says
"...driven off the paper. The paper on which the printing is to be done...", and every
streaming run dropped the second "The paper"."""
UNHEARD_MATCH_WORDS = 3
MIN_WORD_S = 0.02
"""Words this short, two or more in a row or one at the end of a hypothesis, are text the
aligner found no audio for (Whisper echoing its prompt, or writing past the end: the
end-of-stream loop "1469. 1469-1470. 1469-1470." had zero-length words): not speech. So is
an unsure one (under `ECHO_FRAGMENT_BELOW`) in front of a fragment of the last committed
word: "1462", then ". In" of no length at its end (0.14) and "1862,"."""
ECHO_WORDS = 4
ECHO_WORD_S = 0.1
"""A run of `ECHO_WORDS`+ words already committed or already in the hypothesis, squeezed into
less than this per word, is Whisper echoing its prompt, not speech: "can do for the Americans.
Ask not what your country can do for" all aligned at 6.88 s. Speech repeats long phrases too
("the forms of printed letters should" twice in 16 s of the long file), at ~0.3 s a word."""


def normalized(text: str) -> str:
    """Word identity for agreement: case and punctuation do not make two words differ."""
    return "".join(
        c
        for c in unicodedata.normalize("NFKC", text).casefold()
        if unicodedata.category(c)[0] not in "PZ"
    )


@dataclass(frozen=True)
class Doubt:
    """The doubtful-word rule: a word under probability `below` commits by agreement only if
    it ends by `until` (None: the rule does not hold back now)."""

    below: float
    until: float | None = None
    heard_until: float | None = None
    """The latest word end this hypothesis heard enough after for it to count as the
    earlier of two agreeing ones (a shorter context than `until`'s)."""

    def doubtful(self, word: Word) -> bool:
        return word.probability < self.below

    def holds_back(self, word: Word, before: PendingWord) -> bool:
        """Is `word`, agreeing with `before`, doubtful in either and short of `until`, or was
        `before` short of the `heard_until` of the hypothesis that heard it? Both hypotheses
        must have heard something of what follows a doubtful word: base heard LJ001-0123's
        first second as "This is all court." ("court." 0.27, 0.22 s before the window's end),
        the next window agreed, and the one after it heard "awkward"."""
        if self.until is None or not (self.doubtful(word) or self.doubtful(before.word)):
            return False
        short_before = before.doubt_until is not None and before.word.end > before.doubt_until
        return word.end > self.until or short_before


@dataclass(frozen=True)
class FirstSight:
    """Words that commit the first time a hypothesis hears them: those of probability
    `above` or more that end by `until`, while the hypothesis keeps every tentative word."""

    above: float
    until: float

    def commits(self, word: Word) -> bool:
        return word.probability >= self.above and word.end <= self.until


@dataclass(frozen=True)
class PendingWord:
    """A tentative word with the stream time it first appeared on screen in this form."""

    word: Word
    first_seen_s: float
    window_start: float = 0.0
    """Where the window that heard this form began (more left context: a truer case)."""
    doubt_until: float | None = None
    """The `Doubt.heard_until` of the hypothesis that heard it (None: the rule was off)."""


class LocalAgreement:
    """Tentative words of the last hypothesis, and the rule that turns them into committed ones.

    Hypotheses cover the whole audio buffer, which may still hold words committed earlier; those
    are recognised by time (and confirmed by text near the committed end) and skipped.
    """

    def __init__(self, history: Sequence[CommittedWord] = ()) -> None:
        self.pending: list[PendingWord] = []
        self._tail: list[CommittedWord] = list(history)[-TAIL_WORDS:]

    @property
    def committed_end(self) -> float:
        return self._tail[-1].end if self._tail else 0.0

    def insert(
        self,
        words: list[Word],
        window_start: float,
        now: float,
        until: float | None = None,
        last: bool = False,
        doubt: Doubt | None = None,
        first_sight: FirstSight | None = None,
    ) -> list[CommittedWord]:
        """Take a new hypothesis (absolute times); return the words it commits (those ending
        by `until`, if given: the rest stay tentative however well they agree).

        `doubt`: a doubtful word in this hypothesis or the last commits only as it allows.
        `first_sight`: once every tentative word agreed, the new words after them that it
        allows commit without waiting for the next hypothesis. (Also committing a sure word
        that revises a tentative one measured worse: real time, base, the long files 7.04% /
        1.54% against 6.51% / 1.18%.)

        `last` says no decode follows this one to correct it: tentative words from before its
        first word are kept, as it may have skipped them (the end of JFK, decoded from a cut
        at "for", heard only "for your country." after "ask what you can do" was tentative).
        """
        heard = self._after_committed(words, window_start)
        unheard = 0
        if last:
            heard, unheard = self._with_unheard_pending(heard)
        elif self.pending and window_start > self.pending[0].window_start:
            # The buffer was cut since the tentative words were heard, and a window from a cut
            # may skip the words at its head (a stream resumed after "justice." heard "It is
            # discouraging", not "to letters of more generous design"): where its first words
            # are found among the tentative ones, those before them are kept.
            found = self._found_in_pending(heard)
            if found:
                heard = self._with_pending_through(found, heard)
        new = self._without_repeats(heard)

        def in_time(word: Word) -> bool:
            return until is None or word.end <= until

        count = 0
        while (
            not unheard  # kept, not agreed on: the end commits them, if they were heard
            and count < len(new)
            and count < len(self.pending)
            and normalized(new[count].text) == normalized(self.pending[count].word.text)
            and in_time(new[count])
            and not (doubt and doubt.holds_back(new[count], self.pending[count]))
        ):
            count += 1
        if first_sight is not None and count == len(self.pending):
            while count < len(new) and first_sight.commits(new[count]) and in_time(new[count]):
                count += 1
        committed = [
            self._commit(
                self._with_agreed_case(self.pending[i], word, window_start)
                if i < len(self.pending)
                else word,
                self._first_seen(word, i, now),
                now,
            )
            for i, word in enumerate(new[:count])
        ]
        self.pending = [
            PendingWord(
                word,
                self._first_seen(word, count + j, now),
                window_start,
                doubt.heard_until if doubt else None,
            )
            for j, word in enumerate(new[count:])
        ]
        return committed

    def commit_pending(
        self, now: float, until: float | None = None, before_start: float | None = None
    ) -> list[CommittedWord]:
        """Commit tentative words without a second hypothesis (a pause, the end, the cap).

        `until` commits the leading words that end by then; `before_start` then drops the rest
        that start after it (words heard in silence are not speech).
        """
        take = 0
        while take < len(self.pending) and (until is None or self.pending[take].word.end <= until):
            take += 1
        committed = [self._commit(p.word, p.first_seen_s, now) for p in self.pending[:take]]
        self.pending = self.pending[take:]
        if before_start is not None:
            self.pending = [p for p in self.pending if p.word.start < before_start]
        return committed

    def keep_pending(self, count: int) -> None:
        """Drop the tentative words after the first `count`."""
        self.pending = self.pending[:count]

    @property
    def last_committed(self) -> CommittedWord | None:
        """The last committed word as heard (its closing marks included)."""
        return self._tail[-1] if self._tail else None

    def _after_committed(self, words: list[Word], window_start: float) -> list[Word]:
        """Drop the words of a hypothesis that re-hear already committed audio, and a
        fragment of the last committed word after them: a word Whisper is all but sure it
        did not hear (under `FRAGMENT_BELOW`) that starts inside that word, or an unsure one
        that echoes its end (`ECHO_FRAGMENT_BELOW`). A window cut
        just before the aligned end of "projections" heard its tail as "actions" (0.018),
        and two windows from the same cut agreed on it."""
        count, _ = self._rehearing(words, window_start)
        heard = list(words[count:])
        first = next((i for i, w in enumerate(heard) if not _unsure_of_no_length(w)), len(heard))
        if first < len(heard) and self._is_fragment(heard[first]):
            heard = heard[first + 1 :]
        return heard

    def _is_fragment(self, word: Word) -> bool:
        """Is `word`, the first heard after the committed ones, a piece of the last of them
        (see `FRAGMENT_BELOW` and `ECHO_FRAGMENT_BELOW`)?"""
        if not self._tail:
            return False
        if word.probability < FRAGMENT_BELOW and word.start < self.committed_end:
            return True
        if _number_heard_again(self._tail[-1], word):
            return True
        if (
            word.probability >= ECHO_FRAGMENT_BELOW
            or word.start > self.committed_end + ECHO_FRAGMENT_GAP_S
        ):
            return False
        head = normalized(word.text)[:ECHO_FRAGMENT_LETTERS]
        return len(head) == ECHO_FRAGMENT_LETTERS and head in normalized(self._tail[-1].text)[1:]

    def _rehearing(self, words: list[Word], window_start: float) -> tuple[int, bool]:
        """How many leading words of a hypothesis re-hear committed audio, and whether their
        text says so (False: it did not agree, and time alone decided).

        Committed words still inside the window are matched by text against the head of the
        hypothesis (the longest run that agrees), which is robust to the jitter of aligned word
        times; time alone decides when the text does not agree on at least two words.
        """
        inside = [w for w in self._tail if w.end > window_start + 0.05]
        if not inside:
            return len(words) - len(self._without_repeated_tail(words)), True
        estimate = sum(1 for w in words if (w.start + w.end) / 2 < self.committed_end)
        target = [normalized(w.text) for w in inside]
        heard = [normalized(w.text) for w in words]
        best, best_length = estimate, 0
        for i in range(1, min(len(words), len(target) + 3) + 1):
            length = _common_suffix(target, heard[:i])
            closer = abs(i - estimate) < abs(best - estimate)
            if length > best_length or (length == best_length and length > 0 and closer):
                best, best_length = i, length
        if best_length < min(2, len(target)):
            return estimate, False
        return best, True

    def places(self, words: list[Word], window_start: float) -> bool:
        """Does this hypothesis re-hear, by text, the committed words inside its window, and
        do its next words agree with the tentative words or continue them?

        A decode that fails this lost its place: tiny.en, from a cut at "for you." before
        "Ask what you can do for your country.", heard "for your country." with "for" over
        the whole sentence.
        """
        count, by_text = self._rehearing(words, window_start)
        if not by_text:
            return False
        return not self.pending or self._found_in_pending(words[count:]) is not None

    def _found_in_pending(self, heard: list[Word]) -> int | None:
        """Where the first words of `heard` are among the tentative words, by text."""
        head = [normalized(w.text) for w in heard[:UNHEARD_MATCH_WORDS]]
        if not head or (len(head) == 1 and len(heard) > 1):
            return None
        tentative = [normalized(p.word.text) for p in self.pending]
        for start in range(len(tentative) - len(head) + 1):
            if tentative[start : start + len(head)] == head:
                return start
        return None

    def _with_unheard_pending(self, heard: list[Word]) -> tuple[list[Word], int]:
        """`heard` after the leading tentative words it left out, and how many those are.

        Where its first words are found among the tentative ones, those before them are kept,
        and the found ones keep their tentative times (heard with more left context: a cut
        window aligned JFK's "for" over "ask what you can do"). Otherwise the tentative words
        that end before its first word starts are kept; all of them when it heard nothing.
        """
        if not heard:
            return [p.word for p in self.pending], len(self.pending)
        found = self._found_in_pending(heard)
        if found is not None:
            return self._with_pending_through(found, heard), found
        kept = []
        for pending in self.pending:
            if pending.word.end > heard[0].start + UNHEARD_MARGIN_S:
                break
            kept.append(pending.word)
        return kept + heard, len(kept)

    def _with_pending_through(self, found: int, heard: list[Word]) -> list[Word]:
        """The tentative words up to and including the first words of `heard`, found at
        `found` among them (in their tentative times), then the rest of `heard`."""
        count = min(UNHEARD_MATCH_WORDS, len(heard))
        return [p.word for p in self.pending[: found + count]] + heard[count:]

    def _without_repeated_tail(self, words: list[Word]) -> list[Word]:
        """After a cut at the committed end, the model may still repeat the last few words."""
        if not words or not self._tail or words[0].start > self.committed_end + 1.0:
            return list(words)
        tail = [normalized(w.text) for w in self._tail[-5:]]
        heard = [normalized(w.text) for w in words[:5]]
        shortest = 1 if words[0].start < self.committed_end else 2
        for n in range(min(len(tail), len(heard)), shortest - 1, -1):
            if tail[-n:] == heard[:n]:
                return list(words[n:])
        return list(words)

    def _with_agreed_case(self, earlier: PendingWord, word: Word, window_start: float) -> Word:
        """The agreed word; when the two hypotheses disagree on its initial case, the one
        heard with more left context decides, else the sentence it continues does.

        A window that starts at a cut reads its first words as a new sentence ("Ask what you"
        after "for you,"); a word both forms of which exist is no proper noun.
        """
        old, new = earlier.word.text.lstrip(), word.text.lstrip()
        if not old or not new or old[0] == new[0] or old[0].casefold() != new[0].casefold():
            return word
        if earlier.window_start < window_start:
            return _with_initial(word, old[0])
        after_sentence = not self._tail or ends_sentence(self._tail[-1].text)
        return _with_initial(word, new[0].upper() if after_sentence else new[0].lower())

    def _without_repeats(self, words: list[Word]) -> list[Word]:
        """Drop what repeats words just before it: a word or phrase said again back to back
        ("books not not primarily", "1469-1470. 1469-1470."), or an echo (`ECHO_WORD_S`)."""
        before = [normalized(w.text) for w in self._tail]
        kept: list[Word] = []
        i = 0
        while i < len(words):
            context = before + [normalized(w.text) for w in kept]
            ahead = [normalized(w.text) for w in words[i : i + len(context)]]
            repeat = _back_to_back(context, ahead)
            # A repeat has a word before it: the last kept one, else the last committed one.
            if repeat and _said_again((kept or self._tail)[-1], words[i : i + repeat]):
                repeat = 0
            repeat = repeat or _echo(context, ahead, words[i:])
            if repeat:
                i += repeat
                continue
            kept.append(words[i])
            i += 1
        return kept

    def _first_seen(self, word: Word, position: int, now: float) -> float:
        if position < len(self.pending) and self.pending[position].word.text == word.text:
            return self.pending[position].first_seen_s
        return now

    def _commit(self, word: Word, first_seen_s: float, now: float) -> CommittedWord:
        committed = CommittedWord(
            text=word.text,
            start=word.start,
            end=max(word.end, word.start),
            probability=word.probability,
            first_seen_s=min(first_seen_s, now),
            emitted_s=now,
        )
        self._tail = self._tail[-(TAIL_WORDS - 1) :] + [committed]
        return committed


def _back_to_back(context: list[str], ahead: list[str]) -> int:
    """How many words at the head of `ahead` repeat the end of `context` (0: none)."""
    if not ahead or not ahead[0]:
        return 0
    for n in range(min(len(context), len(ahead)), 0, -1):
        if ahead[:n] == context[-n:]:
            return n
    return 0


def _unsure_of_no_length(word: Word) -> bool:
    """Is `word` an unsure one the aligner found no audio for (see `MIN_WORD_S`)?"""
    return word.end - word.start < MIN_WORD_S and word.probability < ECHO_FRAGMENT_BELOW


def _number_heard_again(committed: Word, word: Word) -> bool:
    """Is `word` the committed number heard again: a number of as many digits, ending in the
    same two, that starts before the committed one ends? A year aligned to end early is
    re-heard by the next window with another head: "1468", then ", 1868," from 0.07 s
    before its end; "1462", then ". 1662" (base, the long file in real time, 3 of 8 runs)."""
    digits = "".join(c for c in word.text if c.isdigit())
    before = "".join(c for c in committed.text if c.isdigit())
    return (
        word.start < committed.end
        and len(digits) == len(before) >= 2
        and digits[-2:] == before[-2:]
        and not any(c.isalpha() for c in word.text)
    )


def _said_again(previous: Word, repeat: list[Word]) -> bool:
    """Is `repeat`, which repeats the words up to `previous`, said again (`SAID_AGAIN_PAUSE_S`)?"""
    return (
        ends_sentence(previous.text)
        and repeat[0].start - previous.end >= SAID_AGAIN_PAUSE_S
        and all(
            w.end - w.start >= ECHO_WORD_S and w.probability >= ECHO_FRAGMENT_BELOW for w in repeat
        )
    )


def _echo(context: list[str], ahead: list[str], words: list[Word]) -> int:
    """How many words at the head of `ahead` are an echo of `context` (0: none)."""
    longest = 0
    for n in range(ECHO_WORDS, len(ahead) + 1):
        phrase = ahead[:n]
        if not any(context[j : j + n] == phrase for j in range(len(context) - n + 1)):
            break
        longest = n
    if longest and words[longest - 1].end - words[0].start < ECHO_WORD_S * longest:
        return longest
    return 0


def _with_initial(word: Word, initial: str) -> Word:
    start = len(word.text) - len(word.text.lstrip())
    text = word.text[:start] + initial + word.text[start + 1 :]
    return Word(text, word.start, word.end, word.probability)


def _common_suffix(a: list[str], b: list[str]) -> int:
    length = 0
    while length < len(a) and length < len(b) and a[-1 - length] == b[-1 - length]:
        length += 1
    return length
