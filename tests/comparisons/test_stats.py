"""Statistics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from comparisons import stats


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n", "expected"), [
    (8, 10, (0.4902, 0.9433)),   # worked by hand: centre 0.71674, half-width 0.22657
    (0, 5, (0.0, 0.4345)),       # z²/(n+z²) = 3.8415/8.8415
    (5, 5, (0.5655, 1.0)),
    (1, 2, (0.0945, 0.9055)),
])
def test_wilson_interval_matches_hand_computation(k, n, expected):
    low, high = stats.wilson_interval(k, n)
    assert low == pytest.approx(expected[0], abs=5e-5) and high == pytest.approx(expected[1], abs=5e-5)
    assert (low, high) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)


def test_wilson_interval_of_nothing_is_none():
    assert stats.wilson_interval(0, 0) is None


def test_games_from_a_ranking():
    """A ranking is read as pairwise games: 3 variants make 3 games; equal ranks tie; the same
    configuration twice in one vote is not a game."""
    games = stats.games_from_ranking([("x", 1), ("y", 2), ("z", 1)])
    assert games == [stats.Game("x", "y", "a"), stats.Game("x", "z", "tie"), stats.Game("y", "z", "b")]
    assert stats.games_from_ranking([("x", 1), ("x", 2)]) == []
    assert stats.games_from_ranking([("x", 1), ("y", 1)], both_bad=True) == [stats.Game("x", "y", "both_bad")]


def test_bradley_terry_two_items_is_the_log_odds():
    """With two items and (almost) no penalty the MLE gives θ_a − θ_b = ln(wins_a / wins_b)."""
    theta = stats.bradley_terry(["a", "b"], [("a", "b")] * 3 + [("b", "a")], alpha=1e-9)
    assert theta["a"] - theta["b"] == pytest.approx(math.log(3), abs=1e-4)
    assert theta["a"] + theta["b"] == pytest.approx(0, abs=1e-9)
    elo = stats.elo_from_theta(theta["a"]) - stats.elo_from_theta(theta["b"])
    assert elo == pytest.approx(400 * math.log10(3), abs=0.05)  # 190.85 points for 3:1 odds


def test_bradley_terry_satisfies_the_penalised_score_equations():
    """At the penalised MLE, for every item: wins − expected wins = 2α·θ (the gradient is zero)."""
    wins = [("a", "b")] * 4 + [("b", "a")] * 2 + [("b", "c")] * 3 + [("c", "b")] + [("a", "c")] * 2 + [("c", "a")]
    alpha = 0.1
    theta = stats.bradley_terry(["a", "b", "c"], wins, alpha=alpha)
    for item in "abc":
        observed = sum(1 for w, _ in wins if w == item)
        expected = sum(
            1 / (1 + math.exp(-(theta[item] - theta[other])))
            for w, loser in wins for other in [loser if w == item else w]
            if item in (w, loser)
        )
        assert observed - expected == pytest.approx(2 * alpha * theta[item], abs=1e-3)
    assert theta["a"] > theta["b"] > theta["c"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bradley_terry_agrees_with_choix(seed):
    """The count-matrix fit gives what ``choix.opt_pairwise`` (a game-by-game reference) gives."""
    import random

    import choix

    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(6)]
    games = [tuple(rng.sample(range(6), 2)) for _ in range(300)]
    ours = stats.bradley_terry(keys, [(keys[w], keys[loser]) for w, loser in games], alpha=0.1)
    reference = choix.opt_pairwise(6, games, alpha=0.1)
    reference = reference - reference.mean()
    assert [ours[k] for k in keys] == pytest.approx(list(reference), abs=1e-4)


def test_bradley_terry_one_win_is_finite_by_hand():
    """A 1–0 record with α = 0.1: θ = −θ_b = t solves 2/(1+e^{2t}) = 4αt (by bisection: t ≈ 0.8168)."""
    lo, hi = 0.0, 5.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 2 / (1 + math.exp(2 * mid)) > 0.4 * mid:
            lo = mid
        else:
            hi = mid
    theta = stats.bradley_terry(["a", "b"], [("a", "b")], alpha=0.1)
    assert theta["a"] == pytest.approx(lo, abs=1e-3) and theta["b"] == pytest.approx(-lo, abs=1e-3)


def test_aggregate_counts_games_and_rates():
    """Hand count: A beats B twice, B beats A once, one tie, one both-bad, and one 3-way ranking
    A > C > B (A beats C, A beats B, C beats B)."""
    votes = [
        {"ranks": [("A", 1), ("B", 2)]},
        {"ranks": [("A", 1), ("B", 2)]},
        {"ranks": [("B", 1), ("A", 2)]},
        {"ranks": [("A", 1), ("B", 1)]},
        {"ranks": [("A", 1), ("B", 1)], "both_bad": True},
        {"ranks": [("A", 1), ("C", 2), ("B", 3)]},
    ]
    configs = {k: {"label": f"label {k}", "model": f"m{k}"} for k in "ABC"}
    results = {r.key: r for r in stats.aggregate(votes, configs)}
    a, b, c = results["A"], results["B"], results["C"]
    assert (a.votes, a.games, a.wins, a.losses, a.ties, a.both_bad) == (6, 7, 4, 1, 1, 1)
    assert (b.votes, b.games, b.wins, b.losses, b.ties, b.both_bad) == (6, 7, 1, 4, 1, 1)
    assert (c.votes, c.games, c.wins, c.losses) == (1, 2, 1, 1)
    assert a.win_rate == pytest.approx(0.8) and (a.ci_low, a.ci_high) == pytest.approx(wilson_by_hand(4, 5))
    assert b.win_rate == pytest.approx(0.2) and c.win_rate == pytest.approx(0.5)
    ordered = stats.aggregate(votes, configs)
    assert [r.key for r in ordered] == ["A", "C", "B"]
    assert ordered[0].rating > 1500 > ordered[2].rating


def test_aggregate_without_decisive_votes():
    results = stats.aggregate([{"ranks": [("A", 1), ("B", 1)]}], {k: {"label": k, "model": k} for k in "AB"})
    assert all(r.win_rate is None and r.ci_low is None and r.rating == 1500 and r.ties == 1 for r in results)
