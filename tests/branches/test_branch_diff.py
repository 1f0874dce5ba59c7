"""The pure branch diff (branches.diff): word segments, turn alignment, totals. No database."""

from __future__ import annotations

import pytest

from branches.diff import EXACT_WORDS, TurnText, align, diff_branches, tokens, totals, word_diff


@pytest.fixture(autouse=True)
def _model_endpoint():
    """Overrides tests/conftest.py's autouse fixture: pure functions need no model server."""


def _join(segments) -> str:
    return "".join(text for _, text in segments)


@pytest.mark.parametrize("text", ["", "one", "  leading and trailing  ", "a\n\nb\tc", "déjà vu, naïve café!"])
def test_tokens_give_back_the_text_exactly(text):
    assert "".join(tokens(text)) == text


def test_word_diff_marks_only_the_changed_words():
    a, b = word_diff("Take the train to Lyon on Monday.", "Take the bus to Lyon on Tuesday.")
    assert _join(a) == "Take the train to Lyon on Monday." and _join(b) == "Take the bus to Lyon on Tuesday."
    assert [t.strip() for op, t in a if op == "delete"] == ["train", "Monday."]
    assert [t.strip() for op, t in b if op == "insert"] == ["bus", "Tuesday."]
    assert not [s for s in a if s[0] == "insert"] and not [s for s in b if s[0] == "delete"]


def test_word_diff_of_equal_texts_is_one_equal_segment():
    a, b = word_diff("same words here", "same words here")
    assert a == b == [("equal", "same words here")]


def test_word_diff_ignores_only_spacing_between_words():
    """Words are compared without their trailing white space, so a reflowed line is equal."""
    a, b = word_diff("one two\nthree", "one two three")
    assert {op for op, _ in a} == {op for op, _ in b} == {"equal"}


def test_word_diff_of_long_texts_stays_exact_where_it_matters():
    """Over EXACT_WORDS words difflib's autojunk applies; the differing word is still found."""
    words = [f"w{i % 50}" for i in range(EXACT_WORDS + 500)]
    changed = list(words)
    changed[1234] = "CHANGED"
    a, b = word_diff(" ".join(words), " ".join(changed))
    assert _join(a) == " ".join(words) and _join(b) == " ".join(changed)
    assert "CHANGED" in "".join(t for op, t in b if op == "insert")


def test_align_pairs_equal_inputs_and_keeps_an_inserted_turn_alone():
    a = ["plan a trip", "where to stay", "what to eat"]
    b = ["plan a trip", "how to get there", "where to stay", "what to eat"]
    assert align(a, b) == [(0, 0), (None, 1), (1, 2), (2, 3)]


def test_align_pairs_a_replaced_block_in_order_and_leaves_the_rest_one_sided():
    assert align(["x", "a1", "a2", "z"], ["x", "b1", "z"]) == [(0, 0), (1, 1), (2, None), (3, 2)]
    assert align([], ["only"]) == [(None, 0)]
    assert align(["only"], []) == [(0, None)]


def _turn(i, text_in, text_out, **kw) -> TurnText:
    return TurnText(run_id=i, depth=i, input=text_in, answer=text_out, **kw)


def test_diff_branches_rows_kinds_and_totals():
    a = [_turn(1, "hello", "hi there", prompt_tokens=10, completion_tokens=2, latency=0.5, cost=0.001),
         _turn(2, "tell me more", "more about cats", prompt_tokens=20, completion_tokens=4, latency=1.0, cost=None)]
    b = [_turn(3, "hello", "hi there", prompt_tokens=10, completion_tokens=2, latency=0.25, cost=0.002),
         _turn(4, "tell me more", "more about dogs", prompt_tokens=21, completion_tokens=5, latency=1.5, cost=0.003),
         _turn(5, "thanks", "welcome", prompt_tokens=30, completion_tokens=1, latency=0.1, cost=0.0)]
    rows, ta, tb = diff_branches(a, b)
    assert [r.kind for r in rows] == ["same", "changed", "only_b"]
    assert [t.strip() for op, t in rows[1].a_answer if op == "delete"] == ["cats"]
    assert [t.strip() for op, t in rows[1].b_answer if op == "insert"] == ["dogs"]
    assert rows[2].a is None and rows[2].b_input == [("insert", "thanks")]
    assert (ta.turns, ta.prompt_tokens, ta.completion_tokens, ta.tokens) == (2, 30, 6, 36)
    assert ta.latency == pytest.approx(1.5) and ta.cost == pytest.approx(0.001) and ta.cost_complete is False
    assert (tb.turns, tb.tokens) == (3, 69) and tb.cost == pytest.approx(0.005) and tb.cost_complete is True


def test_totals_without_any_price_have_no_cost():
    assert totals([_turn(1, "a", "b")]).cost is None
    assert totals([]).turns == 0
