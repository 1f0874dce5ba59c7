"""Statistics over votes: pairwise outcomes, win rates with Wilson intervals, Bradley–Terry ratings.

Every vote ranks the variants of one prompt (1 is best, equal ranks tie). It is read as pairwise
games: for each pair of variants in the vote, the better-ranked one wins; equal ranks are a tie
("both bad" is a tie too, counted apart). A 4-variant ranking is 6 games.

* **Win rate** of a configuration = wins ÷ decisive games (wins + losses); ties and both-bad are
  reported but not in the rate. The 95 % interval is Wilson's score interval (E. B. Wilson, 1927,
  "Probable inference, the law of succession, and statistical inference", JASA 22:209–212), from
  ``scipy.stats.binomtest(...).proportion_ci(method="wilson")``.
* **Rating**: the Bradley–Terry model (R. A. Bradley & M. E. Terry, 1952, Biometrika 39:324–345),
  P(i beats j) = 1 / (1 + exp(-(θ_i − θ_j))), fitted on the decisive games by maximum likelihood
  with a small Gaussian penalty ``BT_ALPHA · Σθ²`` (so a 1–0 record gives a finite rating): the
  objective of ``choix.opt_pairwise``, minimised over win counts with scipy's Newton-CG.
  Shown on the Elo scale: ``1500 + 400 · θ / ln 10`` (a 400-point gap is 10:1 odds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit
from scipy.stats import binomtest

BT_ALPHA = 0.1
ELO_BASE = 1500.0
ELO_SCALE = 400.0 / math.log(10)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Game:
    """One pairwise outcome: ``a`` and ``b`` are configuration keys; ``result`` is "a", "b",
    "tie" or "both_bad"."""

    a: str
    b: str
    result: str


def games_from_ranking(ranks: list[tuple[str, int]], *, both_bad: bool = False) -> list[Game]:
    """Pairwise games of one vote. ``ranks``: (configuration key, rank) per variant, rank 1 best,
    equal ranks tie.

    Two variants with the same configuration in one vote are not a game (a configuration cannot
    beat itself) and are skipped.
    """
    games = []
    for (a, rank_a), (b, rank_b) in combinations(ranks, 2):
        if a == b:
            continue
        if both_bad:
            result = "both_bad"
        elif rank_a < rank_b:
            result = "a"
        elif rank_b < rank_a:
            result = "b"
        else:
            result = "tie"
        games.append(Game(a, b, result))
    return games


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval for ``successes`` out of ``trials`` (None when ``trials`` is 0)."""
    if trials <= 0:
        return None
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bradley_terry(keys: list[str], wins: Iterable[tuple[str, str]], *, alpha: float = BT_ALPHA) -> dict[str, float]:
    """Bradley–Terry strengths θ (natural-log odds scale, centred on 0) per key.

    ``wins``: (winner key, loser key) pairs. Minimises the objective of ``choix.opt_pairwise``,
    ``alpha·Σθ² + Σ_games log(1 + exp(−(θ_winner − θ_loser)))``, but over the matrix of win
    counts, so the cost does not grow with the number of votes (choix loops over every game in
    Python: 0.7 s for 5,000 games); scipy's Newton-CG (choix's default method too) minimises it with
    the exact gradient and Hessian. Tests check it against ``choix.opt_pairwise``. Keys with no decisive game get 0.
    Raises KeyError for a winner or loser not in ``keys``.
    """
    if not keys:
        return {}
    index = {key: i for i, key in enumerate(keys)}
    counts = np.zeros((len(keys), len(keys)))
    for winner, loser in wins:
        counts[index[winner], index[loser]] += 1
    if not counts.any():
        return {key: 0.0 for key in keys}
    winners, losers = np.nonzero(counts)
    weights = counts[winners, losers]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        margin = theta[winners] - theta[losers]
        value = alpha * float(theta @ theta) + float(weights @ np.logaddexp(0.0, -margin))
        slope = weights * expit(-margin)  # d/dmargin of log(1+e^-margin) is −expit(−margin)
        grad = 2 * alpha * theta
        np.subtract.at(grad, winners, slope)
        np.add.at(grad, losers, slope)
        return value, grad

    def hessian(theta: np.ndarray) -> np.ndarray:
        margin = theta[winners] - theta[losers]
        curvature = weights * expit(margin) * expit(-margin)
        hess = 2 * alpha * np.identity(len(keys))
        np.add.at(hess, (winners, winners), curvature)
        np.add.at(hess, (losers, losers), curvature)
        np.subtract.at(hess, (winners, losers), curvature)
        np.subtract.at(hess, (losers, winners), curvature)
        return hess

    result = minimize(objective, np.zeros(len(keys)), jac=True, hess=hessian, method="Newton-CG",
                      options={"xtol": 1e-10, "maxiter": 200})
    params = result.x - result.x.mean()
    return {key: float(params[index[key]]) for key in keys}


def elo_from_theta(theta: float) -> float:
    return ELO_BASE + ELO_SCALE * theta


@dataclass
class ConfigResult:
    key: str
    label: str
    model: str
    labels: list[str] = field(default_factory=list)
    connection: str = ""
    votes: int = 0
    games: int = 0
    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0
    win_rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    theta: float = 0.0
    rating: float = ELO_BASE

    @property
    def decisive(self) -> int:
        return self.wins + self.losses

    def as_dict(self) -> dict:
        data = asdict(self)
        data["decisive"] = self.decisive
        return data


def aggregate(votes: list[dict], configs: dict[str, dict], *, alpha: float = BT_ALPHA) -> list[ConfigResult]:
    """Results per configuration, best rating first.

    ``votes``: ``[{"ranks": [(config_key, rank), ...], "both_bad": bool}]``, one per vote.
    ``configs``: config_key → ``{"label", "model", "labels", "connection"}`` (how to name it).
    """
    results = {key: ConfigResult(key=key, label=info["label"], model=info["model"], labels=list(info.get("labels", [])),
                                 connection=info.get("connection", ""))
               for key, info in configs.items()}
    decisive: list[tuple[str, str]] = []
    for vote in votes:
        for key in {key for key, _ in vote["ranks"]}:
            results[key].votes += 1
        for game in games_from_ranking(vote["ranks"], both_bad=vote.get("both_bad", False)):
            ra, rb = results[game.a], results[game.b]
            ra.games += 1
            rb.games += 1
            if game.result == "a":
                ra.wins += 1
                rb.losses += 1
                decisive.append((game.a, game.b))
            elif game.result == "b":
                rb.wins += 1
                ra.losses += 1
                decisive.append((game.b, game.a))
            elif game.result == "tie":
                ra.ties += 1
                rb.ties += 1
            else:
                ra.both_bad += 1
                rb.both_bad += 1
    keys = list(results)
    thetas = bradley_terry(keys, decisive, alpha=alpha)
    for key, result in results.items():
        if result.decisive:
            result.win_rate = result.wins / result.decisive
            result.ci_low, result.ci_high = wilson_interval(result.wins, result.decisive)
        result.theta = thetas.get(key, 0.0)
        result.rating = elo_from_theta(result.theta)
    return sorted(results.values(), key=lambda r: (-r.rating, -(r.win_rate or 0), r.label))
