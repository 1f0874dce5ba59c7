"""The evaluation statistics against reference implementations on fixed data: κ (statsmodels,
scikit-learn), Wilson (scipy, statsmodels), Bradley–Terry with covariates (statsmodels Logit),
clustered intervals (statsmodels OLS, cluster-robust) and votes needed (statsmodels power)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score
from statsmodels.api import OLS, Logit
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint

from comparisons import evaluation as ev

JUDGE = list("aaaabbbtta" "bbaatqbaab" "tqqaabbbta")  # q: both bad
HUMAN = list("aaabbbbtaa" "bbaaqqbabb" "ttqaabbata")
CODE = {"q": "both_bad", "t": "tie", "a": "a", "b": "b"}
PAIRS = [(CODE[j], CODE[h]) for j, h in zip(JUDGE, HUMAN, strict=True)]


def test_confusion_table_counts_judge_rows_against_human_columns():
    table = ev.confusion_table([("a", "a"), ("a", "b"), ("both_bad", "tie"), ("a", "a")])
    assert table == [[2, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]]
    assert sum(map(sum, ev.confusion_table(PAIRS))) == 30
    with pytest.raises(ValueError):
        ev.confusion_table([("a", "maybe")])


def test_kappa_and_interval_match_statsmodels_and_sklearn():
    table = ev.confusion_table(PAIRS)
    mine = ev.cohen_kappa(table)
    ref = cohens_kappa(np.array(table), return_results=True)
    assert mine.kappa == pytest.approx(ref.kappa, abs=1e-12)
    assert mine.se == pytest.approx(ref.std_kappa, abs=1e-12)
    assert (mine.low, mine.high) == pytest.approx((ref.kappa_low, ref.kappa_upp), abs=1e-9)
    assert mine.kappa == pytest.approx(cohen_kappa_score([j for j, _ in PAIRS], [h for _, h in PAIRS]), abs=1e-12)
    assert mine.agreement == pytest.approx(sum(j == h for j, h in PAIRS) / 30)
    assert mine.low < mine.kappa < mine.high


@pytest.mark.parametrize("table", [
    [[20, 5], [10, 15]],                       # Cohen's classic 2×2
    [[9, 1, 0, 0], [2, 7, 1, 0], [0, 0, 3, 1], [0, 1, 0, 4]],
    [[0, 4], [6, 0]],                          # worse than chance: κ < 0
])
def test_kappa_matches_statsmodels_on_more_tables(table):
    mine = ev.cohen_kappa(table)
    ref = cohens_kappa(np.array(table), return_results=True)
    assert (mine.kappa, mine.se) == pytest.approx((ref.kappa, ref.std_kappa), abs=1e-12)


def test_kappa_edge_cases_and_the_plain_verdict():
    assert ev.cohen_kappa([[0, 0], [0, 0]]).kappa is None
    same = ev.cohen_kappa([[5, 0], [0, 0]])  # both raters always said the same one thing
    assert same.kappa == 1.0 and same.se == 0.0
    assert [ev.landis_koch(k) for k in (-0.1, 0.1, 0.3, 0.5, 0.62, 0.9)] == [
        "poor", "slight", "fair", "moderate", "substantial", "almost perfect"]
    result = ev.agreement(PAIRS)
    kappa = ev.cohen_kappa(ev.confusion_table(PAIRS)).kappa
    assert result["sentence"].startswith(f"The judge agrees with your votes {round(100 * result['agreement'])} % ")
    assert f"κ {kappa:.2f}" in result["sentence"] and result["sentence"].endswith(f"{ev.landis_koch(kappa)}.")
    assert ev.agreement([])["sentence"] == "No pair has both a vote and a judge's verdict yet."


@pytest.mark.parametrize(("first", "second"), [(18, 2), (10, 10), (7, 3), (0, 6)])
def test_position_bias_interval_is_wilson_from_scipy_and_statsmodels(first, second):
    bias = ev.position_bias(first, second)
    ci = binomtest(first, first + second).proportion_ci(method="wilson")
    assert (bias["low"], bias["high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert (bias["low"], bias["high"]) == pytest.approx(proportion_confint(first, first + second, method="wilson"),
                                                        abs=1e-9)
    assert bias["biased"] == (not bias["low"] <= 0.5 <= bias["high"])
    assert ev.position_bias(18, 2)["biased"] and not ev.position_bias(10, 10)["biased"]


@pytest.mark.parametrize(("wins", "losses"), [(6, 4), (7, 3), (12, 8), (30, 25), (3, 1)])
def test_votes_needed_matches_the_statsmodels_power_calculation(wins, losses):
    """NormalIndPower with ratio=0 is the one-sample z-test; at power ½ its n is the number of
    votes at which the current rate is just significant. At 80 % power as well."""
    rate = wins / (wins + losses)
    effect = abs(rate - 0.5) / 0.5
    for power in (0.5, 0.8):
        ref = NormalIndPower().solve_power(effect_size=effect, nobs1=None, alpha=0.05, power=power, ratio=0)
        mine = ev.votes_needed(wins, losses, power=power)
        assert mine["total"] == math.ceil(ref - 1e-6) or mine["total"] == math.ceil(ref)
        assert abs(mine["total"] - ref) < 1.0
    half = ev.votes_needed(wins, losses)
    if not half["significant"]:
        assert half["more"] == max(half["total"] - (wins + losses), 1)
        # at that many votes with the same rate, the z-test says significant
        n = half["total"]
        assert abs(rate - 0.5) / math.sqrt(0.25 / n) >= 1.959963984540054 - 1e-9


def test_votes_needed_says_when_nothing_is_detectable_or_already_significant():
    assert ev.votes_needed(5, 5)["sentence"] == (
        "No difference detectable with fewer than 10,000 votes at the current win rate.")
    assert ev.votes_needed(501, 499)["total"] is None  # needs ~2.4 million votes
    done = ev.votes_needed(40, 5)
    assert done["significant"] and done["more"] == 0 and binomtest(40, 45).pvalue < 0.05
    assert ev.votes_needed(0, 0)["sentence"] == "No decisive vote yet."


def style_games(seed: int = 7, n: int = 400) -> tuple[list[str], list[ev.StyleGame]]:
    """Games among three models where longer answers win more often, whatever the model."""
    rng = np.random.default_rng(seed)
    keys = ["m0", "m1", "m2"]
    strength = {"m0": 0.0, "m1": 0.4, "m2": -0.3}
    games = []
    for _ in range(n):
        a, b = rng.choice(3, 2, replace=False)
        length = rng.normal(0, 0.4)
        markdown = rng.normal(0, 0.3)
        logit = strength[keys[a]] - strength[keys[b]] + 2.0 * length + 0.5 * markdown
        games.append(ev.StyleGame(keys[a], keys[b], bool(rng.random() < 1 / (1 + math.exp(-logit))),
                                  (length, markdown)))
    return keys, games


def test_style_controlled_fit_matches_statsmodels_logit_on_the_same_design():
    keys, games = style_games()
    x, y = ev._design(keys, games, covariates=True)
    reference = Logit(y, x[:, 1:]).fit(disp=0, tol=1e-12)  # m0 as the reference (θ_m0 = 0)
    fit = ev.style_bradley_terry(keys, games, covariates=True, alpha=0.0)
    theta = fit["theta"]
    assert theta["m1"] - theta["m0"] == pytest.approx(reference.params[0], abs=1e-4)
    assert theta["m2"] - theta["m0"] == pytest.approx(reference.params[1], abs=1e-4)
    assert fit["coefficients"] == pytest.approx(list(reference.params[2:]), abs=1e-4)
    assert fit["coefficients"][0] > 0  # longer answers win: the length coefficient is found
    raw = ev.style_bradley_terry(keys, games, covariates=False, alpha=0.0)
    raw_ref = Logit(y, ev._design(keys, games, covariates=False)[0][:, 1:]).fit(disp=0, tol=1e-12)
    assert raw["theta"]["m1"] - raw["theta"]["m0"] == pytest.approx(raw_ref.params[0], abs=1e-4)


def test_style_features_and_markdown_density():
    assert ev.markdown_density("") == 0.0
    assert ev.markdown_density("# Title\n- one\n- **two**\nplain") == pytest.approx(4 / 4)
    length, markdown = ev.style_features("a" * 30, "b" * 10)
    assert length == pytest.approx(0.5) and markdown == 0.0


def test_bootstrap_intervals_contain_the_fit_and_are_reproducible():
    keys, games = style_games(n=200)
    rows = ev.ratings_side_by_side(keys, games, rounds=60, seed=3)
    again = ev.ratings_side_by_side(keys, games, rounds=60, seed=3)
    assert rows == again
    for row in rows:
        assert row["raw_low"] < row["raw"] < row["raw_high"]
        assert row["controlled_low"] < row["controlled"] < row["controlled_high"]
    assert rows[0]["key"] == "m1"


def test_clustered_interval_matches_statsmodels_cluster_robust_ols():
    rng = np.random.default_rng(11)
    prompts = np.repeat(np.arange(8), 3)  # 8 prompts × 3 samples
    values = rng.normal(0, 1, 8)[prompts] + rng.normal(0, 0.3, 24) + 5
    mine = ev.clustered_mean(values, prompts)
    ref = OLS(values, np.ones(24)).fit(cov_type="cluster", cov_kwds={"groups": prompts}, use_t=True)
    assert mine["mean"] == pytest.approx(ref.params[0])
    assert mine["se"] == pytest.approx(ref.bse[0], rel=1e-10)
    assert (mine["low"], mine["high"]) == pytest.approx(tuple(ref.conf_int()[0]), rel=1e-10)
    naive_se = values.std(ddof=1) / math.sqrt(24)
    assert mine["se"] > naive_se  # repeats of one prompt are not independent votes
    assert ev.clustered_mean([1.0, 2.0], [0, 0])["se"] is None


def test_pass_hat_k_and_spread():
    runs = [[True, True, True], [True, False, True], [False, False, False]]
    assert ev.pass_hat_k(runs, 1) == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert ev.pass_hat_k(runs, 3) == pytest.approx(1 / 3)
    assert ev.pass_hat_k(runs, 2) == pytest.approx((1 + 1 / 3) / 3)
    assert ev.pass_hat_k([[True]], 2) is None
    s = ev.spread([10, 12, 14])
    assert (s["mean"], s["sd"], s["min"], s["max"]) == (12, 2, 10, 14)


def test_one_step_bootstrap_matches_full_refits_on_many_games(monkeypatch):
    """Above ONE_STEP_ABOVE games a style-controlled resample takes one Newton step from the full
    fit; on 3,000 games its intervals are within 2 Elo points of refitting every resample."""
    keys, games = style_games(n=3000)
    one_step = ev.bootstrap_ratings(keys, games, covariates=True, rounds=60, seed=1)
    monkeypatch.setattr(ev, "ONE_STEP_ABOVE", 10**9)
    full = ev.bootstrap_ratings(keys, games, covariates=True, rounds=60, seed=1)
    for key in keys:
        assert one_step[key] == pytest.approx(full[key], abs=2.0)


def test_raw_bootstrap_on_counted_rows_matches_resampling_the_games():
    """Without covariates equal games are one row with a count; the intervals agree with a
    bootstrap that resamples the games one by one (a different random stream: within 15 points)."""
    keys, games = style_games(n=600)
    counted = ev.bootstrap_ratings(keys, games, covariates=False, rounds=300, seed=2)
    rng = np.random.default_rng(9)
    x, y = ev._design(keys, games, covariates=False)
    draws = []
    for _ in range(300):
        w = np.bincount(rng.integers(0, len(games), len(games)), minlength=len(games)).astype(float)
        beta = ev.fit_logistic(x, y, alpha=0.1, weights=w)
        draws.append(ev.ELO_SCALE * (beta - beta.mean()) + ev.ELO_BASE)
    low, high = np.percentile(np.array(draws), [2.5, 97.5], axis=0)
    for i, key in enumerate(keys):
        assert counted[key] == pytest.approx((low[i], high[i]), abs=15.0)
