"""Reads for suites and repeats: a suite's runs with each challenger against the baseline, the trend
of a suite over its runs (one series per challenger, Fisher's exact test between the first and last
run), and the repeats of a comparison with pass^k. The pair verdicts come from
:mod:`comparisons.insights` (people first, else the judge's combined verdict); the figures from
:mod:`comparisons.evaluation` and :mod:`comparisons.stats`.
"""

from __future__ import annotations

from collections import defaultdict

from scipy.stats import fisher_exact

from conversations.models import Message, Role

from . import evaluation as ev
from . import stats
from .insights import human_pairs, judge_pairs
from .models import COLUMN_LETTERS, Comparison, RepeatSample, SuiteRun, VariantRun


def _by_position(comparison_ids) -> dict:
    """Per suite case comparison: pair verdicts as (baseline position 0) vs (position p): list of
    "win"/"loss"/"tie"/"both_bad" for position p against the baseline, people's vote first, else
    the judge's combined verdict. Returns {comparison id: {p: [outcomes]}}."""
    orders = dict(Comparison.objects.filter(pk__in=comparison_ids).values_list("pk", "column_order"))
    human, judged = human_pairs(comparison_ids), judge_pairs(comparison_ids)
    out: dict = defaultdict(lambda: defaultdict(list))
    for pair in set(human) | set(judged):
        verdict = human.get(pair) or judged[pair]["verdict"]
        comparison_id, _, x, y = pair
        px, py = orders[comparison_id][x], orders[comparison_id][y]
        if 0 not in (px, py):
            continue
        other, other_is_x = (py, False) if px == 0 else (px, True)
        if verdict in ("a", "b"):
            won = (verdict == "a") == other_is_x
            out[comparison_id][other].append("win" if won else "loss")
        else:
            out[comparison_id][other].append(verdict)
    return out


def suite_runs(suite) -> list[dict]:
    """The suite's runs, oldest first: ``run``, ``agents``, ``cases``, and per challenger (every
    agent after the baseline) ``wins``/``losses``/``ties`` against the baseline over every voted or
    judged pair, ``win_rate`` with its Wilson 95 % interval and ``rating`` (the Elo difference to
    the baseline, Bradley–Terry of the two); ``judged``/``voted`` pair counts."""
    runs = list(SuiteRun.objects.filter(suite=suite).order_by("created_at"))
    comparisons = defaultdict(list)
    for pk, run_id in Comparison.objects.filter(suite_run__in=runs).values_list("pk", "suite_run_id"):
        comparisons[run_id].append(pk)
    outcomes = _by_position(Comparison.objects.filter(suite_run__in=runs).values("pk"))
    rows = []
    for run in runs:
        challengers = []
        for p, agent in enumerate(run.agents[1:], start=1):
            flat = [o for pk in comparisons[run.pk] for o in outcomes.get(pk, {}).get(p, [])]
            wins, losses = flat.count("win"), flat.count("loss")
            interval = stats.wilson_interval(wins, wins + losses)
            theta = stats.bradley_terry(["c", "b"], [("c", "b")] * wins + [("b", "c")] * losses)
            challengers.append({"agent": agent, "wins": wins, "losses": losses, "ties": len(flat) - wins - losses,
                                "win_rate": wins / (wins + losses) if wins + losses else None,
                                "ci_low": interval[0] if interval else None,
                                "ci_high": interval[1] if interval else None,
                                "rating": stats.ELO_SCALE * (theta["c"] - theta["b"])})
        rows.append({"run": run, "agents": run.agents, "cases": len(comparisons[run.pk]), "challengers": challengers})
    return rows


# Series colours of the trend chart: 3:1 contrast or more against the white page (WCAG 1.4.11).
TREND_COLOURS = ("#15803d", "#1d4ed8", "#b45309", "#7e22ce", "#be123c", "#0e7490")


def _series(rows: list[dict]) -> list[dict]:
    """One series per challenger (by agent id, in order of first appearance): ``agent``, ``colour``
    and ``runs``: ``[(index of the suite run, challenger row)]``."""
    series: dict = {}
    for index, row in enumerate(rows):
        for challenger in row["challengers"]:
            key = challenger["agent"].get("id") or challenger["agent"].get("name")
            entry = series.setdefault(key, {"agent": challenger["agent"], "runs": []})
            entry["runs"].append((index, challenger))
    for number, entry in enumerate(series.values()):
        entry["colour"] = TREND_COLOURS[number % len(TREND_COLOURS)]
    return list(series.values())


def _series_sentence(name: str, runs: list[tuple[int, dict]]) -> str:
    """Whether ``name``'s newest decisive run differs from its first (Fisher's exact test, 5 % level)."""
    decided = [c for _, c in runs if c["win_rate"] is not None]
    if not decided:
        return f"{name}: no decisive verdict yet."
    if len(decided) == 1:
        return f"{name}: one run with decisive verdicts so far ({decided[0]['win_rate']:.0%}); run the suite again."
    first, last = decided[0], decided[-1]
    _, p = fisher_exact([[first["wins"], first["losses"]], [last["wins"], last["losses"]]])
    return (f"Against the baseline, {name}'s win rate went from {first['win_rate']:.0%} to {last['win_rate']:.0%}: "
            + ("a significant change" if p < 0.05 else "not a significant change")
            + f" (Fisher's exact test, p = {p:.2f}).")


def trend_series(rows: list[dict]) -> list[dict]:
    """The trend as data (the API's): per challenger agent ``agent``, ``points`` (``suite_run``, its
    index oldest first; ``win_rate``, ``ci_low``, ``ci_high`` Wilson 95 %, ``decisive``) and ``sentence``."""
    out = []
    for entry in _series(rows):
        points = [{"suite_run": index, "win_rate": c["win_rate"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                   "decisive": c["wins"] + c["losses"]} for index, c in entry["runs"] if c["win_rate"] is not None]
        name = entry["agent"].get("name") or "challenger"
        out.append({"agent": entry["agent"], "points": points, "sentence": _series_sentence(name, entry["runs"])})
    return out


def trend(rows: list[dict]) -> dict:
    """The trend chart of every challenger's win rate against the baseline per suite run (SVG units,
    made on the server): one ``series`` per challenger agent (``name``, ``colour``, ``path``,
    ``points`` with their Wilson 95 % interval, ``sentence``), the run labels on the x axis, and
    ``sentence``: per challenger, whether its newest run differs from its first (Fisher's exact test
    on their wins and losses, :func:`scipy.stats.fisher_exact`, 5 % level)."""
    left, top, width, height = 60, 20, 520, 200
    n = len(rows)
    series = _series(rows)
    columns = [{"x": round(left + width * (i + 0.5) / max(n, 1), 1), "label": row["run"].created_at.strftime(
        "%m-%d %H:%M")} for i, row in enumerate(rows)]
    out = []
    for number, entry in enumerate(series):
        shift = (number - (len(series) - 1) / 2) * 8  # side by side within a run, so intervals do not overlap
        points = []
        for index, c in entry["runs"]:
            if c["win_rate"] is None:
                continue
            points.append({"x": round(columns[index]["x"] + shift, 1),
                           "y": round(top + height * (1 - c["win_rate"]), 1),
                           "y1": round(top + height * (1 - c["ci_high"]), 1),
                           "y2": round(top + height * (1 - c["ci_low"]), 1), "pct": f"{c['win_rate']:.0%}",
                           "n": c["wins"] + c["losses"], "label": columns[index]["label"]})
        name = entry["agent"].get("name") or "challenger"
        out.append({"name": name, "colour": entry["colour"], "points": points,
                    "path": " ".join(f"{'M' if i == 0 else 'L'}{p['x']},{p['y']}" for i, p in enumerate(points)),
                    "sentence": _series_sentence(name, entry["runs"])})
    if not any(len(s["points"]) for s in out):
        sentence = "Run the suite again to see a trend."
    else:
        sentence = " ".join(s["sentence"] for s in out)
    ticks = [{"y": round(top + height * (1 - t / 4), 1), "label": f"{t * 25}%"} for t in range(5)]
    return {"series": out, "columns": columns, "sentence": sentence, "ticks": ticks, "left": left, "top": top,
            "width": width, "height": height, "right": left + width, "bottom": top + height,
            "half_y": top + height / 2, "total_width": left + width + 20, "total_height": top + height + 40,
            "label_y": top + height + 18}


# --- repeats ------------------------------------------------------------------------------------------------

def pass_at_k(comparison: Comparison, judging) -> dict[int, dict]:
    """pass^k per column (as shown) from ``judging``'s scores where its rubric has a pass threshold:
    an answer (the voted one or a repeat) passes when the mean of the scores it got (one per judge
    call it was in) reaches the threshold; per column ``{"k", "pass_k", "pass_1", "prompts"}`` with
    ``k`` the comparison's samples and ``prompts`` those with all k answers scored
    (:func:`comparisons.evaluation.pass_hat_k`); ``{}`` without a threshold. One query."""
    if judging is None or judging.pass_threshold is None:
        return {}
    got: dict = defaultdict(list)  # (column, turn, sample) → scores
    for j in judging.judgements.exclude(score_first=None).exclude(score_second=None):
        got[(j.first, j.turn, j.sample)].append(j.score_first)
        got[(j.second, j.turn, j.sample)].append(j.score_second)
    k = comparison.samples
    out = {}
    for column in range(len(comparison.column_order)):
        by_turn: dict = defaultdict(list)
        for (c, turn, _), scores in sorted(got.items()):
            if c == column:
                by_turn[turn].append(sum(scores) / len(scores) >= judging.pass_threshold)
        results = [passed for passed in by_turn.values() if len(passed) == k]
        out[column] = {"k": k, "pass_k": ev.pass_hat_k(results, k), "pass_1": ev.pass_hat_k(results, 1),
                       "prompts": len(results)}
    return out


def repeat_stats(comparison: Comparison) -> list[dict]:
    """Per column (as shown) the spread of its answers over every sample of every prompt (the voted
    answer and its repeats): ``letter``, ``label`` (None while blind), ``answers``, ``length``
    (:func:`comparisons.evaluation.spread` of characters), ``length_mean`` (its interval clustered
    by prompt, :func:`comparisons.evaluation.clustered_mean`), ``scores`` (the spread of the
    newest judging's scores of this column's voted answers; n 0 without a scale) and ``passes``
    (:func:`pass_at_k` of the newest judging; None without a pass threshold). Five queries."""
    column_of = {position: index for index, position in enumerate(comparison.column_order)}
    runs: dict = defaultdict(list)  # column → [(turn, run id)]
    for position, turn, run_id in VariantRun.objects.filter(variant__comparison=comparison).values_list(
            "variant__position", "turn", "run_id"):
        runs[column_of[position]].append((turn, run_id))
    for position, turn, run_id in RepeatSample.objects.filter(variant__comparison=comparison).values_list(
            "variant__position", "turn", "run_id"):
        runs[column_of[position]].append((turn, run_id))
    texts = dict(Message.objects.filter(run__in=[r for rows in runs.values() for _, r in rows], position=1,
                                        role=Role.ASSISTANT).values_list("run_id", "content"))
    scores: dict = defaultdict(list)
    newest = comparison.judgings.order_by("-pk").first()
    if newest is not None and newest.scale_max:
        for j in newest.judgements.filter(sample=0).exclude(score_first=None):
            scores[j.first].append(j.score_first)
            scores[j.second].append(j.score_second)
    variants = {v.position: v for v in comparison.variants.all()} if comparison.labels_visible else {}
    passes = pass_at_k(comparison, newest)
    out = []
    for index, position in enumerate(comparison.column_order):
        rows = [(turn, len(texts[r])) for turn, r in runs[index] if r in texts]
        out.append({"letter": COLUMN_LETTERS[index], "label": variants[position].label if variants else None,
                    "answers": len(rows), "length": ev.spread([n for _, n in rows]),
                    "length_mean": ev.clustered_mean([n for _, n in rows], [t for t, _ in rows]),
                    "scores": ev.spread(scores[index]), "passes": passes.get(index)})
    return out
