"""LocalAgreement-2: what gets committed, when, and what never changes."""

from dataclasses import replace

from bot.messages import Word
from bot.streaming.agreement import FirstSight, LocalAgreement, normalized


def words(text: str, start: float = 0.0, step: float = 0.5) -> list[Word]:
    return [
        Word(" " + w, start + i * step, start + i * step + step * 0.8)
        for i, w in enumerate(text.split())
    ]


def texts(committed) -> str:
    return "".join(w.text for w in committed).strip()


def test_first_hypothesis_commits_nothing():
    agreement = LocalAgreement()
    assert agreement.insert(words("the quick brown"), 0.0, now=1.0) == []
    assert [p.word.text.strip() for p in agreement.pending] == ["the", "quick", "brown"]


def test_commits_longest_common_prefix_of_two_hypotheses():
    agreement = LocalAgreement()
    agreement.insert(words("the quick brown"), 0.0, now=1.0)
    committed = agreement.insert(words("the quick brawn fox"), 0.0, now=2.0)
    assert texts(committed) == "the quick"
    assert [p.word.text.strip() for p in agreement.pending] == ["brawn", "fox"]
    assert all(w.emitted_s == 2.0 for w in committed)


def test_case_and_punctuation_do_not_block_agreement_and_newest_form_is_committed():
    agreement = LocalAgreement()
    agreement.insert(words("hello world"), 0.0, now=1.0)
    committed = agreement.insert(words("Hello, world."), 0.0, now=2.0)
    assert texts(committed) == "Hello, world."
    assert normalized(" Hello,") == normalized("hello")


def test_first_seen_is_when_the_final_form_first_appeared():
    agreement = LocalAgreement()
    agreement.insert(words("the quick"), 0.0, now=1.0)
    agreement.insert(words("the Quick brown"), 0.0, now=2.0)  # commits "the", "Quick"
    committed = agreement.insert(words("the Quick brown fox"), 0.0, now=3.0)
    assert texts(committed) == "brown"
    assert committed[0].first_seen_s == 2.0
    agreement2 = LocalAgreement()
    agreement2.insert(words("the quick"), 0.0, now=1.0)
    first = agreement2.insert(words("The quick"), 0.0, now=2.0)
    assert [w.first_seen_s for w in first] == [2.0, 1.0]  # "The" changed form at 2.0


def test_sure_words_with_speech_after_them_commit_the_first_time_they_are_heard():
    sight = FirstSight(above=0.9, until=1.5)  # speech follows the words that end by 1.5 s
    agreement = LocalAgreement()
    heard = words("the quick brown fox jumps")  # they end at 0.4, 0.9, 1.4, 1.9, 2.4 s
    heard[2] = replace(heard[2], probability=0.8)
    committed = agreement.insert(heard, 0.0, now=2.5, first_sight=sight)
    # "brown" is not sure enough, and a word commits only after every word before it
    assert texts(committed) == "the quick"
    assert [w.first_seen_s for w in committed] == [2.5, 2.5]
    assert [p.word.text.strip() for p in agreement.pending] == ["brown", "fox", "jumps"]
    # the tentative words agree; "over" is new and sure, but no speech follows it yet
    later = FirstSight(above=0.9, until=2.5)
    committed = agreement.insert(
        words("the quick brown fox jumps over"), 0.0, 3.0, first_sight=later
    )
    assert texts(committed) == "brown fox jumps"
    assert [p.word.text.strip() for p in agreement.pending] == ["over"]


def test_no_word_commits_on_first_sight_while_the_hypothesis_revises_a_tentative_one():
    sight = FirstSight(above=0.9, until=10.0)
    agreement = LocalAgreement()
    agreement.insert(words("the quick brown"), 0.0, now=1.5)
    committed = agreement.insert(words("the quick brawn fox"), 0.0, now=2.0, first_sight=sight)
    assert texts(committed) == "the quick"  # agreement alone: "brawn" revised "brown"
    committed = agreement.insert(
        words("the quick brawn fox jumps"), 0.0, now=2.5, first_sight=sight
    )
    assert texts(committed) == "brawn fox jumps"  # all agreed, then "jumps" on first sight


def test_an_all_but_unheard_word_inside_the_last_committed_word_is_a_fragment_of_it():
    agreement = LocalAgreement()
    said = [Word(" spiky", 4.02, 4.56), Word(" projections", 4.56, 5.04)]
    agreement.insert(said, 4.0, now=5.5)
    agreement.insert(said, 4.0, now=6.0)  # committed
    tail = Word(" actions", 4.985, 5.445, probability=0.018)  # the window starts at 4.985
    after = [tail, Word(" and", 5.385, 6.185, 0.344), Word(" by", 6.185, 6.425, 0.86)]
    agreement.insert(after, 4.985, now=7.0)
    assert texts(agreement.insert(after, 4.985, now=7.5)) == "and by"
    # a word that only its aligned start puts inside the committed one, heard surely, stays
    agreement = LocalAgreement()
    agreement.insert(said, 4.0, now=5.5)
    agreement.insert(said, 4.0, now=6.0)
    sure = [replace(tail, probability=0.6), *after[1:]]
    agreement.insert(sure, 4.985, now=7.0)
    assert texts(agreement.insert(sure, 4.985, now=7.5)) == "actions and by"


def test_rehearing_committed_words_inside_the_window_does_not_duplicate_them():
    agreement = LocalAgreement()
    agreement.insert(words("one two three four"), 0.0, now=1.0)
    agreement.insert(words("one two three four five"), 0.0, now=2.0)  # commits one..four
    # The buffer still holds the committed audio; word times jitter between passes.
    rehear = [
        Word(w.text, w.start + 0.15, w.end + 0.15) for w in words("one two three four five six")
    ]
    committed = agreement.insert(rehear, 0.0, now=3.0)
    assert texts(committed) == "five"
    later = agreement.insert(words("one two three four five six seven"), 0.0, now=4.0)
    assert texts(later) == "six"


def test_repeated_last_words_after_a_cut_are_dropped():
    agreement = LocalAgreement()
    agreement.insert(words("it was the best"), 0.0, now=1.0)
    agreement.insert(words("it was the best of"), 0.0, now=2.0)  # commits "it was the best"
    # Buffer cut at 1.9 s: the next window starts there but the model repeats "the best".
    heard = words("the best of times", start=1.85, step=0.4)
    committed = agreement.insert(heard, 1.9, now=3.0)
    assert texts(committed) == "of"
    assert [p.word.text.strip() for p in agreement.pending] == ["times"]


def test_commit_pending_commits_words_up_to_a_time_and_drops_words_after_speech():
    agreement = LocalAgreement()
    agreement.insert(words("see you soon bye"), 0.0, now=1.0)
    committed = agreement.commit_pending(now=2.0, until=1.0, before_start=1.2)
    assert texts(committed) == "see you"
    assert [p.word.text.strip() for p in agreement.pending] == ["soon"]
    rest = agreement.commit_pending(now=2.5)
    assert texts(rest) == "soon"
    assert agreement.pending == []


def test_committed_words_are_never_revised():
    agreement = LocalAgreement()
    history = []
    hypotheses = ["a b c", "a b d", "a b d e", "a x d e f", "a b d e f g"]
    for now, text in enumerate(hypotheses, start=1):
        history += agreement.insert(words(text), 0.0, now=float(now))
    # "x" flickered once in a tentative position; "f" was in two hypotheses in a row.
    assert texts(history).split() == ["a", "b", "d", "e", "f"]
    assert [w.emitted_s for w in history] == sorted(w.emitted_s for w in history)


def test_a_word_or_phrase_said_again_back_to_back_is_kept_once():
    agreement = LocalAgreement()
    agreement.insert(words("books not not primarily"), 0.0, now=1.0)
    assert [p.word.text.strip() for p in agreement.pending] == ["books", "not", "primarily"]
    agreement.insert(words("in that city 1470 1470 1470"), 0.0, now=2.0)
    assert texts(p.word for p in agreement.pending) == "in that city 1470"


def test_a_phrase_said_again_as_a_new_sentence_after_a_pause_is_speech():
    """The long file says "...driven off the paper. The paper on which the printing...":
    base hears the second "The paper" 0.6 s after the first, sure (times and probabilities
    from a decode of it). A doubling of Whisper's keeps none of that: no pause, or no
    sentence end before it, or words aligned to no time."""

    def hypothesis(gap: float = 0.6, mark: str = ".", length: float = 0.18) -> list[Word]:
        return [
            Word(" off", 108.5, 108.88, 0.97),
            Word(" the", 108.88, 109.06, 0.97),
            Word(" paper" + mark, 109.06, 109.4, 1.0),
            Word(" The", 109.4 + gap, 109.4 + gap + length, 0.99),
            Word(" paper", 110.18, 110.56, 1.0),
            Word(" on", 110.56, 110.86, 0.95),
        ]

    def pending(heard: list[Word]) -> str:
        agreement = LocalAgreement()
        agreement.insert(heard, 108.5, now=111.0)
        return texts(p.word for p in agreement.pending)

    assert pending(hypothesis()) == "off the paper. The paper on"
    assert pending(hypothesis(gap=0.1)) == "off the paper. on"
    assert pending(hypothesis(mark="")) == "off the paper on"
    assert pending(hypothesis(length=0.01)) == "off the paper. on"


def test_a_number_heard_again_from_inside_its_committed_end_is_an_echo():
    """Real-time runs of the long file: "1468" committed (aligned to end early at 253.22),
    and the next windows heard ", 1868," from 253.16 and agreed on it. A number said next
    starts after it ("1469" then "-1470"), and a different one is kept."""

    def after(committed: str, end: float, heard: str, start: float) -> str:
        said = [Word(" year", 252.0, 252.6, 0.9), Word(committed, 252.6, end, 0.98)]
        agreement = LocalAgreement()
        agreement.insert(said, 252.0, now=253.5)
        agreement.insert(said, 252.0, now=254.0)
        assert agreement.committed_end == end
        next_words = [Word(heard, start, end + 0.7, 0.62), Word(" they", end + 1.4, end + 1.6)]
        agreement.insert(next_words, 252.9, now=254.5)
        return texts(p.word for p in agreement.pending)

    assert after(" 1468", 253.22, ", 1868,", 253.16) == "they"
    assert after(" 1468", 253.22, ", 1870,", 253.16) == ", 1870, they"
    assert after(" 1468", 253.22, ", 1868,", 253.3) == ", 1868, they"
    assert after(" 1469", 254.84, "-1470", 254.84) == "-1470 they"


def test_an_unsure_word_of_no_length_in_front_of_a_number_heard_again_goes_with_it():
    """A real-time run of the long file: "1462" committed (173.97-174.41), and the next
    windows, cut at its end, heard ". In" of no length there (0.14) and "1862," from 174.40."""

    def after(filler: Word) -> str:
        said = [Word(" year", 173.79, 173.97, 0.73), Word(" 1462", 173.97, 174.41, 0.98)]
        agreement = LocalAgreement()
        agreement.insert(said, 170.0, now=175.9)
        agreement.insert(said, 170.0, now=176.3)
        heard = [filler, Word(" 1862,", 174.40, 175.20, 0.66), Word(" imitates", 175.82, 176.58)]
        agreement.insert(heard, 174.41, now=176.8)
        return texts(p.word for p in agreement.pending)

    assert after(Word(". In", 174.40, 174.40, 0.14)) == "imitates"
    # A word with audio, or a sure one, is not text the aligner found nothing for.
    assert after(Word(". In", 174.40, 174.55, 0.14)) == ". In 1862, imitates"
    assert after(Word(". In", 174.40, 174.40, 0.9)) == ". In 1862, imitates"


def test_four_words_already_committed_squeezed_into_no_time_are_an_echo_and_are_dropped():
    agreement = LocalAgreement()
    agreement.insert(words("what your country can do"), 0.0, now=1.0)
    agreement.insert(words("what your country can do for"), 0.0, now=2.0)
    heard = words("what your country can do for you ask not", 0.0)
    echo = words("what your country can", 4.5, step=0.01)  # aligned to no audio
    assert texts(agreement.insert(heard + echo, 0.0, now=3.0)) == "for"
    assert texts(p.word for p in agreement.pending) == "you ask not"


def test_a_long_phrase_said_again_at_the_pace_of_speech_is_speech():
    agreement = LocalAgreement()
    said = "the forms of printed letters should be beautiful that the forms of printed letters"
    agreement.insert(words(said), 0.0, now=1.0)
    assert texts(agreement.insert(words(said + " should follow"), 0.0, now=2.0)) == said
    assert texts(p.word for p in agreement.pending) == "should follow"


def test_three_words_said_again_later_are_speech_not_an_echo():
    agreement = LocalAgreement()
    agreement.insert(words("can do for you ask what you can do for your"), 0.0, now=1.0)
    assert len(agreement.pending) == 11


def test_case_disagreement_is_settled_by_left_context_then_by_the_sentence():
    agreement = LocalAgreement()
    agreement.insert(words("for you, ask what"), 0.0, now=1.0)
    agreement.insert(words("for you, ask what you"), 0.0, now=2.0)  # commits up to "what"
    # A window that starts at a cut (1.95 s) reads "You" as a sentence start.
    later = [Word(" You", 2.0, 2.4), Word(" can", 2.5, 2.9)]
    assert texts(agreement.insert(later, 1.95, now=3.0)) == "you"
    same_start = LocalAgreement()
    same_start.insert(words("we met. then we"), 0.0, now=1.0)
    committed = same_start.insert(words("we met. Then we left"), 0.0, now=2.0)
    assert texts(committed) == "we met. Then we"
    assert texts(same_start.insert(words("we met. Then we Left Paris"), 0.0, 3.0)) == "left"


def test_the_last_decode_keeps_tentative_words_it_left_out():
    """The end of JFK decoded from a cut: "for your country." alone, its "for" aligned over
    "ask what you can do" (tentative from the decode before): no decode follows to fix it."""
    agreement = LocalAgreement()
    agreement.insert(words("ask what you can do for your country.", 8.0), 7.2, now=10.6)
    heard = [
        Word(" for", 8.05, 9.41),
        Word(" your", 9.41, 10.09),
        Word(" country.", 10.09, 10.45),
    ]
    kept = agreement.insert(heard, 7.2, now=11.0, last=True) + [p.word for p in agreement.pending]
    assert texts(kept) == "ask what you can do for your country."
    assert all(a.end <= b.start for a, b in zip(kept, kept[1:])), kept


def test_the_last_decode_keeps_tentative_words_before_its_first_word_when_texts_differ():
    agreement = LocalAgreement()
    agreement.insert(words("we choose to go", 1.0), 0.0, now=3.0)
    kept = agreement.insert(words("moon", 3.0), 2.8, now=4.0, last=True)
    assert texts(kept + [p.word for p in agreement.pending]) == "we choose to go moon"
    agreement = LocalAgreement()
    agreement.insert(words("we choose to go", 1.0), 0.0, now=3.0)
    kept = agreement.insert([], 2.8, now=4.0, last=True)
    assert texts(kept + [p.word for p in agreement.pending]) == "we choose to go"


def test_a_decode_that_is_not_the_last_replaces_the_tentative_words():
    agreement = LocalAgreement()
    agreement.insert(words("ask what you can do for your country.", 8.0), 7.2, now=10.6)
    agreement.insert(words("for your country.", 9.5), 7.2, now=11.0)
    assert texts([p.word for p in agreement.pending]) == "for your country."


def test_a_decode_from_a_cut_keeps_the_tentative_words_it_skipped_at_its_head():
    """The buffer was cut at "justice." after "to letters of more generous design. It is
    discouraging" was heard; the window from the cut hears only "It is discouraging ...":
    the skipped words are kept, and agree with themselves."""
    agreement = LocalAgreement()
    agreement.insert(words("to letters of more generous design. It is discouraging", 6.1), 2.7, 12)
    # Its "It" aligned early, over "design.", as tiny.en's was.
    heard = [Word(" It", 8.2, 9.3), *words("is discouraging to note", 9.6)]
    committed = agreement.insert(heard, 5.9, now=13.0)
    assert texts(committed) == "to letters of more generous design. It is discouraging"
    assert texts([p.word for p in agreement.pending]) == "to note"
    kept = committed + [p.word for p in agreement.pending]
    assert all(a.end <= b.start for a, b in zip(kept, kept[1:])), kept
    # From the same window start, a decode that reads differently replaces them as always.
    agreement = LocalAgreement()
    agreement.insert(words("to letters of more generous design. It is discouraging", 6.1), 5.9, 12)
    agreement.insert(heard, 5.9, now=13.0)
    assert texts([p.word for p in agreement.pending]) == "It is discouraging to note"
    # From a cut, a decode whose first words are not among the tentative ones replaces them.
    agreement = LocalAgreement()
    agreement.insert(words("to letters of more generous design.", 6.1), 2.7, now=12.0)
    agreement.insert(words("it was the best", 9.1), 5.9, now=13.0)
    assert texts([p.word for p in agreement.pending]) == "it was the best"


def test_a_hypothesis_places_itself_only_if_it_rehears_the_committed_words_in_its_window():
    agreement = LocalAgreement()
    agreement.insert(words("can do for you.", 6.0), 0.0, now=8.0)
    agreement.insert(words("can do for you.", 6.0), 0.0, now=8.5)
    assert agreement.pending == []
    cut = 7.0  # the window starts at "for" (7.0-7.4), "you." (7.5-7.9) after it
    assert agreement.places(words("for you. Ask what", 7.0), cut)
    assert agreement.places(words("For you, ask what", 7.0), cut)
    lost = [Word(" for", 7.68, 9.08), Word(" your", 9.08, 10.08), Word(" country.", 10.08, 10.46)]
    assert not agreement.places(lost, cut)
    assert agreement.places(words("Ask what", 8.0), 8.0)  # nothing committed inside it


def test_an_unsure_word_right_after_the_last_committed_word_that_echoes_its_end_is_a_fragment():
    """A real-time run (rounds of 0.3 s) committed "transparent" aligned to end 0.4 s early;
    the next window heard its tail as "parent." (0.24) right after it, and "manufacture" was
    followed by "factor" (0.27) the same way."""
    said = [Word(" being", 195.184, 195.604, 0.997), Word(" transparent", 195.584, 196.144, 0.994)]
    after = [
        Word(" parent.", 196.169, 196.549, 0.241),
        Word(" The", 196.989, 197.389, 0.987),
        Word(" paper", 197.389, 197.789, 0.99),
    ]

    def committed_after_transparent(first: Word) -> str:
        agreement = LocalAgreement()
        agreement.insert(said, 194.0, now=196.7)
        agreement.insert(said, 194.0, now=197.1)  # committed
        heard = [first, *after[1:]]
        agreement.insert(heard, 196.15, now=198.0)
        return texts(agreement.insert(heard, 196.15, now=198.4))

    assert committed_after_transparent(after[0]) == "The paper"
    # the same word heard surely, or a word that does not echo the committed one, stays
    for first in (replace(after[0], probability=0.9), replace(after[0], text=" present.")):
        assert committed_after_transparent(first) == f"{first.text.strip()} The paper"
