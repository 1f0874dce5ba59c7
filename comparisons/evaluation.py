"""Statistics for evaluations a team can trust: a judge against people, position bias, style
control, repeats and "votes needed". Pure functions over plain data; the reads that feed them are
in :mod:`comparisons.selectors` and :mod:`comparisons.judging`.

* **Agreement** of two raters (a judge and a person) over the same pairs: the share of equal
  verdicts, and **Cohen's κ** (J. Cohen, 1960, Educ. Psychol. Meas. 20:37–46) with the large-sample
  variance of J. L. Fleiss, J. Cohen & B. S. Everitt (1969, Psychol. Bull. 72:323–327), the
  interval statsmodels' ``cohens_kappa`` reports. The plain verdict names the band of J. R. Landis
  & G. G. Koch (1977, Biometrics 33:159–174).
* **Position bias**: the first column's share of decisive outcomes, with Wilson's interval
  (:func:`comparisons.stats.wilson_interval`); biased when the interval leaves out ½.
* **Style control**: lmarena's Bradley–Terry with covariates ("Does style matter?", lmarena blog,
  2024-08-28): a logistic regression of "the first of the pair won" on ±1 per model and on the
  standardised differences of the two answers' length and markdown density, fitted with scipy;
  intervals from a bootstrap over games (percentiles).
* **Repeats**: per-variant spread, pass^k (S. Yao et al., 2024, "τ-bench", arXiv:2406.12045: the
  chance that all k samples pass, C(c, k)/C(n, k) per prompt) and means whose interval is
  clustered by prompt (the cluster-robust variance of an intercept-only regression, as
  statsmodels' ``cov_type="cluster"`` computes it).
* **Votes needed**: decisive votes at which the current win rate would differ from ½ at 95 %
  (a one-sample z-test; the sample size at 50 % power, or the power asked for).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import comb, expit
from scipy.stats import norm
from scipy.stats import t as student_t

from .stats import CONFIDENCE, ELO_BASE, ELO_SCALE, wilson_interval

VERDICTS = ("a", "b", "tie", "both_bad")  # in column terms: "a" = the first column is better
VERDICT_NAMES = {"a": "A", "b": "B", "tie": "tie", "both_bad": "both bad"}
LANDIS_KOCH = ((0.0, "poor"), (0.2, "slight"), (0.4, "fair"), (0.6, "moderate"), (0.8, "substantial"),
               (1.0, "almost perfect"))
MAX_VOTES_NEEDED = 10_000
BOOTSTRAP_ROUNDS = 200
ONE_STEP_ABOVE = 2000  # games; above it a style-controlled resample takes one Newton step


def _z(confidence: float = CONFIDENCE) -> float:
    return float(norm.ppf(0.5 + confidence / 2))


# --- agreement ---------------------------------------------------------------------------------------

def confusion_table(pairs: Sequence[tuple[str, str]], categories: Sequence[str] = VERDICTS) -> list[list[int]]:
    """Counts of (judge verdict, human verdict): row = judge, column = person, in ``categories``
    order. Raises ValueError for a verdict not in ``categories``."""
    index = {c: i for i, c in enumerate(categories)}
    table = [[0] * len(categories) for _ in categories]
    for judge, human in pairs:
        if judge not in index or human not in index:
            raise ValueError(f"unknown verdict in {(judge, human)!r}")
        table[index[judge]][index[human]] += 1
    return table


@dataclass(frozen=True)
class Kappa:
    """Cohen's κ of a square table with its standard error and ``confidence`` interval
    (κ ± z·se); ``agreement`` is the observed share of the diagonal, ``n`` the number of pairs."""

    kappa: float | None
    se: float | None
    low: float | None
    high: float | None
    agreement: float | None
    expected: float | None
    n: int

    def as_dict(self) -> dict:
        return asdict(self)


def cohen_kappa(table: Sequence[Sequence[int]], confidence: float = CONFIDENCE) -> Kappa:
    """Cohen's κ = (p_o − p_e)/(1 − p_e) of a k×k table of counts (rows: rater 1, columns: rater 2),
    with the Fleiss–Cohen–Everitt (1969) large-sample variance
    ``[Σ_i p_ii(1 − (p_i. + p_.i)(1 − κ))² + (1 − κ)² Σ_{i≠j} p_ij(p_.i + p_j.)² − (κ − p_e(1 − κ))²]
    / ((1 − p_e)² n)``. κ is None for no pairs, and κ is 1 with se 0 when both raters always
    used the same one category (p_e = 1)."""
    counts = np.asarray(table, dtype=float)
    n = int(counts.sum())
    if n == 0:
        return Kappa(None, None, None, None, None, None, 0)
    p = counts / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    observed = float(np.trace(p))
    expected = float(rows @ cols)
    if expected >= 1.0:
        return Kappa(1.0, 0.0, 1.0, 1.0, observed, expected, n)
    kappa = (observed - expected) / (1 - expected)
    diag = np.diag(p) * (1 - (rows + cols) * (1 - kappa)) ** 2
    off = p * (cols[:, None] + rows[None, :]) ** 2
    np.fill_diagonal(off, 0.0)
    var = ((diag.sum() + (1 - kappa) ** 2 * off.sum() - (kappa - expected * (1 - kappa)) ** 2)
           / ((1 - expected) ** 2 * n))
    se = math.sqrt(max(float(var), 0.0))
    z = _z(confidence)
    return Kappa(kappa, se, kappa - z * se, kappa + z * se, observed, expected, n)


def landis_koch(kappa: float) -> str:
    """The Landis & Koch (1977) band of κ: poor (< 0), slight, fair, moderate, substantial,
    almost perfect (0.81–1)."""
    if kappa < 0:
        return "poor"
    for upper, name in LANDIS_KOCH[1:]:
        if kappa <= upper:
            return name
    return "almost perfect"


def agreement_sentence(kappa: Kappa) -> str:
    """The plain verdict, e.g. "The judge agrees with your votes 81 % of the time, κ 0.62
    (95 % interval 0.41 to 0.83): substantial." """
    if kappa.n == 0 or kappa.kappa is None:
        return "No pair has both a vote and a judge's verdict yet."
    return (f"The judge agrees with your votes {round(100 * kappa.agreement)} % of the time over {kappa.n} "
            f"pair{'s' if kappa.n != 1 else ''}, κ {kappa.kappa:.2f} (95 % interval {kappa.low:.2f} to "
            f"{kappa.high:.2f}): {landis_koch(kappa.kappa)}.")


def agreement(pairs: Sequence[tuple[str, str]]) -> dict:
    """Judge against people over ``pairs`` of (judge verdict, human verdict) in :data:`VERDICTS`:
    ``{"n", "agreement", "kappa": Kappa.as_dict(), "table": confusion_table, "categories",
    "sentence"}``."""
    table = confusion_table(pairs)
    kappa = cohen_kappa(table)
    return {"n": kappa.n, "agreement": kappa.agreement, "kappa": kappa.as_dict(), "table": table,
            "categories": [VERDICT_NAMES[c] for c in VERDICTS], "sentence": agreement_sentence(kappa)}


# --- position bias ----------------------------------------------------------------------------------

def position_bias(first_wins: int, second_wins: int, confidence: float = CONFIDENCE) -> dict:
    """The first position's share of decisive outcomes with its Wilson interval:
    ``{"first_wins", "decisive", "rate", "low", "high", "biased"}`` (biased: the interval leaves
    out ½; rate and interval None with no decisive outcome)."""
    decisive = first_wins + second_wins
    interval = wilson_interval(first_wins, decisive, confidence)
    if interval is None:
        return {"first_wins": 0, "decisive": 0, "rate": None, "low": None, "high": None, "biased": False}
    low, high = interval
    return {"first_wins": first_wins, "decisive": decisive, "rate": first_wins / decisive, "low": low, "high": high,
            "biased": not low <= 0.5 <= high}


# --- votes needed -----------------------------------------------------------------------------------

def votes_needed(wins: int, losses: int, *, confidence: float = CONFIDENCE, power: float = 0.5,
                 cap: int = MAX_VOTES_NEEDED) -> dict:
    """How many decisive votes would make a pair's win rate differ from ½ at ``confidence``,
    if the rate stayed what it is now (``wins``/(``wins`` + ``losses``)).

    The one-sample z-test of p = ½ at effect size h = (p − ½)/½ needs n = ((z_{1−α/2} + z_power)/h)²
    votes; at ``power`` ½ (z = 0) that is the n at which the current rate would just be
    significant. Returns ``{"decisive", "win_rate", "total", "more", "significant", "sentence"}``:
    ``total`` (None above ``cap`` or with no decisive vote), ``more`` = total − decisive (≥ 0)."""
    n = wins + losses
    rate = wins / n if n else None
    z = _z(confidence) + float(norm.ppf(power))
    if rate is None or rate == 0.5:
        total = None
    else:
        effect = abs(rate - 0.5) / 0.5
        total = math.ceil((z / effect) ** 2 - 1e-9)
        total = None if total > cap else total
    if total is None:
        sentence = (f"No difference detectable with fewer than {cap:,} votes at the current win rate."
                    if n else "No decisive vote yet.")
        return {"decisive": n, "win_rate": rate, "total": None, "more": None, "significant": False,
                "sentence": sentence}
    more = max(0, total - n)
    significant = n > 0 and abs(rate - 0.5) / math.sqrt(0.25 / n) >= _z(confidence)
    sentence = ("Already significant at 95 %." if significant else
                f"About {max(more, 1)} more decisive vote{'s' if more != 1 else ''} at this win rate "
                "would make the difference significant at 95 %.")
    return {"decisive": n, "win_rate": rate, "total": total, "more": 0 if significant else max(more, 1),
            "significant": significant, "sentence": sentence}


# --- style control ------------------------------------------------------------------------------------

_MARKDOWN_LINE = re.compile(r"^\s*(#{1,6}\s|[-*+]\s|\d+[.)]\s|>\s|```|\|)")
_MARKDOWN_SPAN = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__|`[^`\n]+`")


def markdown_density(text: str) -> float:
    """Markdown elements per line: headers, list items, quotes, fences and table rows (per line)
    plus bold and inline-code spans; 0 for empty text."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return 0.0
    marks = sum(1 for line in lines if _MARKDOWN_LINE.match(line)) + len(_MARKDOWN_SPAN.findall(text))
    return marks / len(lines)


def style_features(answer_a: str, answer_b: str) -> tuple[float, float]:
    """lmarena's style covariates of a pair, before standardising: the normalised length
    difference (len_a − len_b)/(len_a + len_b) in characters, and the difference of
    :func:`markdown_density`."""
    la, lb = len(answer_a or ""), len(answer_b or "")
    length = (la - lb) / (la + lb) if la + lb else 0.0
    return length, markdown_density(answer_a) - markdown_density(answer_b)


@dataclass(frozen=True)
class StyleGame:
    """One decisive game with its style covariates: ``a`` and ``b`` are keys, ``a_won`` whether
    the first won, ``features`` the raw differences (see :func:`style_features`)."""

    a: str
    b: str
    a_won: bool
    features: tuple[float, ...] = ()


def _design(keys: list[str], games: Sequence[StyleGame], covariates: bool) -> tuple[np.ndarray, np.ndarray]:
    """The design matrix (±1 per model, then the standardised covariates) and the outcomes."""
    index = {k: i for i, k in enumerate(keys)}
    rows = np.arange(len(games))
    x = np.zeros((len(games), len(keys)))
    x[rows, [index[g.a] for g in games]] = 1.0
    x[rows, [index[g.b] for g in games]] -= 1.0
    y = np.array([1.0 if g.a_won else 0.0 for g in games])
    if covariates and games and games[0].features:
        f = np.array([g.features for g in games], dtype=float)
        sd = f.std(axis=0)
        f = (f - f.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        x = np.hstack([x, f])
    return x, y


def fit_logistic(x: np.ndarray, y: np.ndarray, *, alpha: float, weights: np.ndarray | None = None,
                 start: np.ndarray | None = None) -> np.ndarray:
    """Coefficients minimising ``Σ w·log(1 + e^{−s·xβ}) + alpha·Σβ²`` (s = ±1 from ``y``, w the
    row ``weights``, default 1), by scipy's trust-region Newton (``trust-exact``) with the exact
    gradient and Hessian, from ``start`` (default 0). No intercept (lmarena's design). With
    ``alpha`` 0 the strengths are identified up to a constant only; the differences are exact."""
    sign = 2 * y - 1
    w = np.ones(len(y)) if weights is None else weights
    ridge = 2 * alpha + 1e-9  # the tiny term keeps the Hessian invertible along the constant

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = sign * (x @ beta)
        value = float(w @ np.logaddexp(0.0, -margin)) + alpha * float(beta @ beta)
        return value, -(x.T @ (w * sign * expit(-margin))) + 2 * alpha * beta

    def hessian(beta: np.ndarray) -> np.ndarray:
        p = expit(x @ beta)
        return (x.T * (w * p * (1 - p))) @ x + ridge * np.identity(x.shape[1])

    result = minimize(objective, np.zeros(x.shape[1]) if start is None else start, jac=True, hess=hessian,
                      method="trust-exact", options={"gtol": 1e-8, "maxiter": 200})
    return result.x


def style_bradley_terry(keys: list[str], games: Sequence[StyleGame], *, covariates: bool = True,
                        alpha: float = 0.1) -> dict:
    """Bradley–Terry strengths with optional style covariates; ``alpha`` is a ridge penalty on every
    coefficient (as :data:`comparisons.stats.BT_ALPHA` on the strengths: a 1–0 record, or a
    covariate that separates wins from losses, stays finite). Returns ``{"theta": {key: θ}
    (centred), "rating": {key: Elo}, "coefficients": [per covariate, per standard deviation]}``."""
    if not keys or not games:
        return {"theta": dict.fromkeys(keys, 0.0), "rating": dict.fromkeys(keys, ELO_BASE), "coefficients": []}
    x, y = _design(keys, games, covariates)
    beta = fit_logistic(x, y, alpha=alpha)
    theta = beta[:len(keys)] - beta[:len(keys)].mean()
    return {"theta": {k: float(theta[i]) for i, k in enumerate(keys)},
            "rating": {k: ELO_BASE + ELO_SCALE * float(theta[i]) for i, k in enumerate(keys)},
            "coefficients": [float(c) for c in beta[len(keys):]]}


def _newton_step(x: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray, alpha: float) -> np.ndarray:
    """One Newton step of :func:`fit_logistic`'s objective from ``beta``."""
    sign = 2 * y - 1
    margin = sign * (x @ beta)
    grad = -(x.T @ (w * sign * expit(-margin))) + 2 * alpha * beta
    p = expit(x @ beta)
    hess = (x.T * (w * p * (1 - p))) @ x + (2 * alpha + 1e-9) * np.identity(x.shape[1])
    return beta - np.linalg.solve(hess, grad)


def bootstrap_ratings(keys: list[str], games: Sequence[StyleGame], *, covariates: bool,
                      rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0, confidence: float = CONFIDENCE,
                      alpha: float = 0.1) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each key's Elo rating over ``rounds`` resamples of the games (with
    replacement, ``numpy.random.default_rng(seed)``): key → (low, high).

    A resample is a vector of multinomial weights. Without covariates, equal games are one row
    with a count (8 configurations make at most 112 rows, whatever the number of votes) and each
    resample is fitted in full. With covariates and more than :data:`ONE_STEP_ABOVE` games, each
    resample takes one Newton step from the full data's fit (the one-step bootstrap: R. Davidson &
    J. G. MacKinnon, 1999, "Bootstrap testing in nonlinear models", Int. Econ. Rev. 40:487–508);
    tests check it against full refits."""
    if not games or not keys:
        return {}
    rng = np.random.default_rng(seed)
    x, y = _design(keys, games, covariates)
    n = len(games)
    base = np.ones(n)
    if x.shape[1] == len(keys):  # no covariates: one row per distinct game, with its count
        rows, counts = np.unique(np.hstack([x, y[:, None]]), axis=0, return_counts=True)
        x, y, base = rows[:, :-1], rows[:, -1], counts.astype(float)
    full = fit_logistic(x, y, alpha=alpha, weights=base)
    draws = np.empty((rounds, len(keys)))
    one_step = x.shape[1] > len(keys) and n > ONE_STEP_ABOVE
    for r in range(rounds):
        weights = rng.multinomial(n, base / n).astype(float)
        beta = (_newton_step(x, y, weights, full, alpha) if one_step
                else fit_logistic(x, y, alpha=alpha, weights=weights, start=full))
        theta = beta[:len(keys)] - beta[:len(keys)].mean()
        draws[r] = ELO_BASE + ELO_SCALE * theta
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail], axis=0)
    return {k: (float(low[i]), float(high[i])) for i, k in enumerate(keys)}


def ratings_side_by_side(keys: list[str], games: Sequence[StyleGame], *, rounds: int = BOOTSTRAP_ROUNDS,
                         seed: int = 0) -> list[dict]:
    """Raw and style-controlled ratings per key with bootstrap intervals, best controlled first:
    ``[{"key", "raw", "raw_low", "raw_high", "controlled", "controlled_low", "controlled_high"}]``."""
    raw = style_bradley_terry(keys, games, covariates=False)
    controlled = style_bradley_terry(keys, games, covariates=True)
    raw_ci = bootstrap_ratings(keys, games, covariates=False, rounds=rounds, seed=seed)
    controlled_ci = bootstrap_ratings(keys, games, covariates=True, rounds=rounds, seed=seed)
    rows = []
    for key in keys:
        rl, rh = raw_ci.get(key, (None, None))
        cl, ch = controlled_ci.get(key, (None, None))
        rows.append({"key": key, "raw": raw["rating"][key], "raw_low": rl, "raw_high": rh,
                     "controlled": controlled["rating"][key], "controlled_low": cl, "controlled_high": ch})
    return sorted(rows, key=lambda r: -r["controlled"])


# --- repeats ---------------------------------------------------------------------------------------------

def clustered_mean(values: Sequence[float], clusters: Sequence, confidence: float = CONFIDENCE) -> dict:
    """Mean of ``values`` with a cluster-robust interval (clusters: the prompt of each value): the
    CR1 variance of an intercept-only regression, ``G/(G−1)·(N−1)/(N−1)·Σ_g (Σ_{i∈g} e_i)² / N²``
    (statsmodels ``OLS(...).fit(cov_type="cluster")``), with a t quantile on G − 1 degrees of
    freedom. ``{"mean", "se", "low", "high", "n", "clusters"}``; se None for fewer than 2 clusters."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return {"mean": None, "se": None, "low": None, "high": None, "n": 0, "clusters": 0}
    mean = float(v.mean())
    groups: dict = {}
    for value, cluster in zip(v - mean, clusters, strict=True):
        groups[cluster] = groups.get(cluster, 0.0) + value
    g = len(groups)
    if g < 2:
        return {"mean": mean, "se": None, "low": None, "high": None, "n": n, "clusters": g}
    var = g / (g - 1) * sum(s * s for s in groups.values()) / n ** 2
    se = math.sqrt(var)
    q = float(student_t.ppf(0.5 + confidence / 2, g - 1))
    return {"mean": mean, "se": se, "low": mean - q * se, "high": mean + q * se, "n": n, "clusters": g}


def pass_hat_k(results_by_prompt: Sequence[Sequence[bool]], k: int) -> float | None:
    """pass^k: the mean over prompts of C(c, k)/C(n, k), c passing out of n samples (prompts with
    fewer than k samples are left out); None when no prompt has k samples."""
    terms = [float(comb(sum(map(bool, r)), k) / comb(len(r), k)) for r in results_by_prompt if len(r) >= k >= 1]
    return sum(terms) / len(terms) if terms else None


def spread(values: Sequence[float]) -> dict:
    """``{"n", "mean", "sd", "min", "max"}`` of ``values`` (sample standard deviation; None below 2)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return {"n": 0, "mean": None, "sd": None, "min": None, "max": None}
    return {"n": len(v), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max())}
