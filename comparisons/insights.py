"""Reads for evaluations: a judging's state (progress, both orders per pair, flips, position bias,
tokens and cost), the judge against people (per comparison, over the results' comparisons and per
tag), ratings by source (people, judge, both), raw and style-controlled ratings, and votes needed
per pair. The figures are :mod:`comparisons.evaluation`'s; this module only loads the rows.

Pairs are read in column terms: for a prompt and two columns x < y (as shown), "a" means column x
is better, "b" column y, then "tie" and "both_bad" — a person's vote and a judge's combined
verdict alike, so they can be compared one to one.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max
from django.db.models.fields.json import KeyTextTransform

from connections.models import DEFAULT_NAME as DEFAULT_CONNECTION_NAME
from connections.selectors import object_id
from conversations.models import Message, Role
from core.errors import NotFound

from . import evaluation as ev
from . import judges, stats
from .models import (
    COLUMN_LETTERS,
    Comparison,
    Judgement,
    JudgeVerdict,
    Judging,
    VariantRun,
    Vote,
    VoteChoice,
    VoteRank,
)

log = logging.getLogger(__name__)

EVALUATION_CACHE_SECONDS = 24 * 3600  # a key changes with the rows anyway; this only bounds stale entries

PairKey = tuple[object, int, int, int]  # (comparison id, turn, column x, column y), x < y


def get_judging_for(user, comparison: Comparison, judging_id) -> Judging:
    """The judging ``judging_id`` of ``comparison`` (already ``user``'s); NotFound otherwise."""
    judging = Judging.objects.filter(pk=object_id(judging_id, "judging"), comparison=comparison,
                                     comparison__owner=user).first()
    if judging is None:
        raise NotFound("No such judging.")
    return judging


# --- one judging ----------------------------------------------------------------------------------------

def _pairs_of(judgements) -> dict[tuple[int, int, int], dict]:
    """(turn, x, y) → {"forward": Judgement (x shown first), "backward": Judgement (y first)}."""
    pairs: dict[tuple[int, int, int], dict] = {}
    for j in judgements:
        x, y = sorted((j.first, j.second))
        pairs.setdefault((j.turn, x, y), {})["forward" if j.first == x else "backward"] = j
    return pairs


def pair_verdict(pair: dict) -> tuple[str, bool]:
    """The combined verdict of a pair's two judge calls (see :func:`comparisons.judges.combine`)."""
    f, b = pair.get("forward"), pair.get("backward")
    if f is None or b is None:
        return "", False
    return judges.combine(judges.in_columns(f.verdict, f.first, f.second),
                          judges.in_columns(b.verdict, b.first, b.second))


def verdict_text(verdict: str, x: int, y: int) -> str:
    """A pair's verdict in words with column letters: "A better", "tie", "both bad" ("" if none)."""
    return {"a": f"{COLUMN_LETTERS[x]} better", "b": f"{COLUMN_LETTERS[y]} better", "tie": "tie",
            "both_bad": "both bad"}.get(verdict, "")


def judging_state(judging: Judging) -> dict:
    """A judging as its page and the API show it: ``total`` and ``done`` judge calls, ``pairs``
    (per prompt and pair of columns: ``turn``, ``x``, ``y``, ``forward``/``backward`` Judgement,
    ``verdict`` in column terms, ``flipped``), ``flips``, ``position_bias`` (first position's share
    of decisive single-order verdicts, :func:`comparisons.evaluation.position_bias`),
    ``prompt_tokens``, ``completion_tokens``, ``cost`` (USD of the priced calls; None if none is)
    and ``complete``. Two queries."""
    judgements = list(Judgement.objects.filter(judging=judging).select_related("run"))
    pairs = []
    for (turn, x, y), pair in sorted(_pairs_of([j for j in judgements if j.sample == 0]).items()):
        verdict, flipped = pair_verdict(pair)
        pairs.append({"turn": turn, "x": x, "y": y, "forward": pair.get("forward"), "backward": pair.get("backward"),
                      "verdict": verdict, "flipped": flipped, "columns": f"{COLUMN_LETTERS[x]} · {COLUMN_LETTERS[y]}",
                      "verdict_text": verdict_text(verdict, x, y)})
    done = [j for j in judgements if j.recorded_at is not None]
    first = sum(1 for j in done if j.verdict == JudgeVerdict.FIRST and j.sample == 0)
    second = sum(1 for j in done if j.verdict == JudgeVerdict.SECOND and j.sample == 0)
    costs = [j.cost for j in done if j.cost is not None]
    return {
        "judging": judging, "total": len(judgements), "done": len(done), "complete": len(done) == len(judgements),
        "pairs": pairs, "flips": sum(1 for p in pairs if p["flipped"]),
        "unreadable": sum(1 for j in done if not j.verdict),
        "position_bias": ev.position_bias(first, second),
        "prompt_tokens": sum(j.prompt_tokens or 0 for j in done),
        "completion_tokens": sum(j.completion_tokens or 0 for j in done),
        "cost": sum(costs) if costs else None,
    }


# --- people's verdicts per pair --------------------------------------------------------------------------

def _orders(comparison_ids) -> dict:
    """comparison id → {variant position: column index}."""
    return {pk: {position: index for index, position in enumerate(order)}
            for pk, order in Comparison.objects.filter(pk__in=comparison_ids).values_list("pk", "column_order")}


def human_pairs(comparison_ids, orders: dict | None = None) -> dict[PairKey, str]:
    """Every voted pair of columns of ``comparison_ids`` (a queryset of ids) in column terms;
    ``orders``: :func:`_orders` of them when already read."""
    orders = orders if orders is not None else _orders(comparison_ids)
    ranks: dict[int, dict] = {}
    meta: dict[int, tuple] = {}
    for vote_id, comparison_id, turn, choice, position, rank in VoteRank.objects.filter(
            vote__comparison__in=comparison_ids).values_list(
            "vote_id", "vote__comparison_id", "vote__turn", "vote__choice", "variant__position", "rank"):
        ranks.setdefault(vote_id, {})[orders[comparison_id][position]] = rank
        meta[vote_id] = (comparison_id, turn, choice)
    out: dict[PairKey, str] = {}
    for vote_id, by_column in ranks.items():
        comparison_id, turn, choice = meta[vote_id]
        for x, y in combinations(sorted(by_column), 2):
            if choice == VoteChoice.BOTH_BAD:
                verdict = "both_bad"
            else:
                verdict = "a" if by_column[x] < by_column[y] else "b" if by_column[y] < by_column[x] else "tie"
            out[(comparison_id, turn, x, y)] = verdict
    return out


def judge_pairs(comparison_ids) -> dict[PairKey, dict]:
    """The combined verdicts of the newest judging of each comparison in ``comparison_ids``:
    pair → {"verdict", "flipped", "first_wins", "second_wins"} (pairs with both calls read)."""
    newest = (Judging.objects.filter(comparison__in=comparison_ids).values("comparison_id")
              .annotate(last=Max("pk")).values_list("last", flat=True))
    rows = Judgement.objects.filter(judging__in=list(newest), sample=0).select_related("judging").only(
        "turn", "first", "second", "verdict", "recorded_at", "judging__comparison_id")
    by_comparison: dict = defaultdict(list)
    for j in rows:
        by_comparison[j.judging.comparison_id].append(j)
    out: dict[PairKey, dict] = {}
    for comparison_id, judgements in by_comparison.items():
        for (turn, x, y), pair in _pairs_of(judgements).items():
            verdict, flipped = pair_verdict(pair)
            if verdict:
                singles = [pair["forward"].verdict, pair["backward"].verdict]
                out[(comparison_id, turn, x, y)] = {
                    "verdict": verdict, "flipped": flipped, "first_wins": singles.count(JudgeVerdict.FIRST),
                    "second_wins": singles.count(JudgeVerdict.SECOND)}
    return out


def comparison_agreement(comparison: Comparison) -> dict:
    """The newest judging of ``comparison`` against its votes (:func:`comparisons.evaluation.agreement`)."""
    ids = Comparison.objects.filter(pk=comparison.pk).values("pk")
    human, judged = human_pairs(ids), judge_pairs(ids)
    return ev.agreement([(judged[k]["verdict"], human[k]) for k in human if k in judged])


# --- over the results' comparisons -------------------------------------------------------------------------

@dataclass
class Loaded:
    """Rows of the results' comparisons: the configuration (or group) and run of each cell, the
    answers, people's and the judge's pair verdicts, tags per comparison, and names."""

    keys: dict          # (comparison id, turn, column) → group key
    runs: dict          # (comparison id, turn, column) → run id
    answers: dict       # run id → answer text
    human: dict
    judge: dict
    tags: dict          # comparison id → [tag names]
    names: dict         # group key → label


def _load(comparisons, by: str) -> Loaded:
    ids = comparisons.values("pk")
    orders = _orders(ids)
    keys, runs, names = {}, {}, {}
    rows = VariantRun.objects.filter(variant__comparison__in=ids).annotate(
        model=KeyTextTransform("model", "variant__config"),
        connection=KeyTextTransform("connection", "variant__config"))
    for comparison_id, turn, position, key, label, model, connection, run_id in rows.values_list(
            "variant__comparison_id", "turn", "variant__position", "variant__config_key", "variant__label",
            "model", "connection", "run_id"):
        group = key if by != "model" else (
            f"{connection or DEFAULT_CONNECTION_NAME} · {model or settings.ARBOR_MODEL}")
        cell = (comparison_id, turn, orders[comparison_id][position])
        keys[cell], runs[cell] = group, run_id
        names.setdefault(group, group if by == "model" else label)
    answers = dict(Message.objects.filter(run__in=list(runs.values()), position=1, role=Role.ASSISTANT)
                   .values_list("run_id", "content"))
    tags: dict = defaultdict(list)
    for comparison_id, name in Comparison.tags.through.objects.filter(comparison__in=ids).values_list(
            "comparison_id", "tag__name"):
        tags[comparison_id].append(name)
    return Loaded(keys, runs, answers, human_pairs(ids, orders), judge_pairs(ids), tags, names)


def _outcomes(data: Loaded, verdicts: dict) -> list[tuple[str, str, str, PairKey]]:
    """(key x, key y, verdict, pair) of pairs of two different configurations."""
    out = []
    for pair, verdict in verdicts.items():
        comparison_id, turn, x, y = pair
        kx, ky = data.keys.get((comparison_id, turn, x)), data.keys.get((comparison_id, turn, y))
        if kx and ky and kx != ky:
            out.append((kx, ky, verdict if isinstance(verdict, str) else verdict["verdict"], pair))
    return out


def _ratings(keys: list[str], outcomes) -> dict[str, stats.ConfigResult]:
    """People's or the judge's pair verdicts as :func:`comparisons.stats.aggregate` reads votes."""
    votes = [{"ranks": [(kx, 2 if v == "b" else 1), (ky, 2 if v == "a" else 1)], "both_bad": v == "both_bad"}
             for kx, ky, v, _ in outcomes]
    configs = {k: {"label": k, "model": ""} for k in keys}
    return {r.key: r for r in stats.aggregate(votes, configs)}


def _style_games(data: Loaded, outcomes) -> list[ev.StyleGame]:
    games = []
    for kx, ky, verdict, (comparison_id, turn, x, y) in outcomes:
        if verdict not in ("a", "b"):
            continue
        ax = data.answers.get(data.runs[(comparison_id, turn, x)], "")
        ay = data.answers.get(data.runs[(comparison_id, turn, y)], "")
        games.append(ev.StyleGame(kx, ky, verdict == "a", ev.style_features(ax, ay)))
    return games


def _votes_needed(outcomes, names: dict) -> list[dict]:
    tally: dict = defaultdict(lambda: [0, 0])
    for kx, ky, verdict, _ in outcomes:
        if verdict in ("a", "b"):
            a, b = sorted((kx, ky))
            won_by_a = (verdict == "a") == (kx == a)
            tally[(a, b)][0 if won_by_a else 1] += 1
    rows = []
    for (a, b), (wins, losses) in sorted(tally.items(), key=lambda item: -sum(item[1])):
        leader, trailer, w, losses_ = (a, b, wins, losses) if wins >= losses else (b, a, losses, wins)
        rows.append({"leader": names.get(leader, leader), "trailer": names.get(trailer, trailer),
                     "wins": w, "losses": losses_, **ev.votes_needed(w, losses_)})
    return rows


def _agreement_by_tag(data: Loaded) -> list[dict]:
    by_tag: dict = defaultdict(list)
    for pair, verdict in data.human.items():
        if pair in data.judge:
            for tag in data.tags.get(pair[0], []):
                by_tag[tag].append((data.judge[pair]["verdict"], verdict))
    return [{"tag": tag, **ev.agreement(pairs)} for tag, pairs in sorted(by_tag.items())]


def evaluation(comparisons, *, by: str = "configuration", rounds: int = ev.BOOTSTRAP_ROUNDS) -> dict:
    """Everything the results page shows beyond the people's ratings, over ``comparisons`` (the
    results' filtered queryset):

    - ``agreement`` (judge against people over every pair with both) and ``by_tag``;
    - ``sources``: per key ``label``, ``people``/``judge``/``both`` ratings (Elo) and game counts;
    - ``style``: raw and style-controlled ratings with bootstrap intervals, people's decisive games
      (the judge's when people have none), ``style_source`` says which;
    - ``votes_needed`` per pair of configurations (people's votes);
    - ``position_bias``: people's (first column of two) and the judge's (first position shown).
    """
    data = _load(comparisons, by)
    human, judge = _outcomes(data, data.human), _outcomes(data, data.judge)
    keys = sorted(data.names)
    by_source = {"people": _ratings(keys, human), "judge": _ratings(keys, judge), "both": _ratings(keys, human + judge)}
    sources = [{"key": k, "label": data.names[k],
                **{f"{s}_rating": by_source[s][k].rating if by_source[s][k].games else None for s in by_source},
                **{f"{s}_games": by_source[s][k].games for s in by_source}} for k in keys]
    sources.sort(key=lambda row: -(row["both_rating"] or 0))
    people_games = _style_games(data, human)
    games = people_games or _style_games(data, judge)
    style = ev.ratings_side_by_side(keys, games, rounds=rounds) if games else []
    for row in style:
        row["label"] = data.names[row["key"]]
    first = sum(1 for p, v in data.human.items() if v == "a" and _two_columns(data, p))
    second = sum(1 for p, v in data.human.items() if v == "b" and _two_columns(data, p))
    judged = list(data.judge.values())
    return {
        "agreement": ev.agreement([(data.judge[p]["verdict"], v) for p, v in data.human.items() if p in data.judge]),
        "by_tag": _agreement_by_tag(data), "sources": sources,
        "counts": {"people": len(human), "judge": len(judge)},
        "style": style, "style_source": "people" if people_games else ("judge" if games else None),
        "style_games": len(games), "votes_needed": _votes_needed(human, data.names),
        "position_bias": {"people": ev.position_bias(first, second),
                          "judge": ev.position_bias(sum(j["first_wins"] for j in judged),
                                                    sum(j["second_wins"] for j in judged)),
                          "judge_flips": sum(1 for j in judged if j["flipped"]), "judge_pairs": len(judged)},
    }


def _evaluation_cache_key(comparisons, by: str, rounds: int) -> str:
    """The cache key of :func:`evaluation` over ``comparisons``: the comparisons' ids, ``by``,
    ``rounds`` and what the block is computed from (votes, judgements, judgings, tags: count and
    newest of each), so a new or changed vote or judgement makes a new key (four queries)."""
    ids = comparisons.values("pk")
    votes = Vote.objects.filter(comparison__in=ids).aggregate(n=Count("pk"), last=Max("pk"))
    judged = Judgement.objects.filter(judging__comparison__in=ids).aggregate(
        n=Count("recorded_at"), last=Max("recorded_at"), judging=Max("judging_id"))
    tags = Comparison.tags.through.objects.filter(comparison__in=ids).aggregate(n=Count("pk"), last=Max("pk"))
    listed = sorted(str(pk) for pk in comparisons.values_list("pk", flat=True))
    text = repr((by, rounds, listed, votes, judged, tags))
    return "comparisons:evaluation:" + hashlib.sha256(text.encode()).hexdigest()


def cached_evaluation(comparisons, *, by: str = "configuration", rounds: int = ev.BOOTSTRAP_ROUNDS) -> dict:
    """:func:`evaluation`, kept in Django's cache (``settings.CACHES["default"]``) under a key of
    the comparisons and their vote and judgement counts (:func:`_evaluation_cache_key`): a reload
    with nothing new reads it back instead of running the bootstraps again. Entries expire after
    :data:`EVALUATION_CACHE_SECONDS`; a cache that fails is skipped (the block is computed)."""
    key = _evaluation_cache_key(comparisons, by, rounds)
    try:
        found = cache.get(key)
    except Exception:  # the cache is an optimisation: the page works without it
        log.warning("evaluation cache unreadable", exc_info=True)
        found = None
    if found is not None:
        return found
    result = evaluation(comparisons, by=by, rounds=rounds)
    try:
        cache.set(key, result, EVALUATION_CACHE_SECONDS)
    except Exception:  # as above
        log.warning("evaluation cache unwritable", exc_info=True)
    return result


EVALUATION_FIELDS = ["people_rating", "people_games", "judge_rating", "judge_games", "both_rating", "both_games",
                     "raw", "raw_low", "raw_high", "controlled", "controlled_low", "controlled_high"]


def evaluation_columns(result: dict) -> dict:
    """key → {field: value} of :data:`EVALUATION_FIELDS` from :func:`evaluation` (for the exports)."""
    out: dict = defaultdict(lambda: dict.fromkeys(EVALUATION_FIELDS))
    for row in result.get("sources", []):
        out[row["key"]].update({k: row[k] for k in EVALUATION_FIELDS[:6]})
    for row in result.get("style", []):
        out[row["key"]].update({k: row[k] for k in EVALUATION_FIELDS[6:]})
    return out


def evaluation_json(result: dict) -> dict:
    """The evaluation block of the JSON exports: agreement, per tag, counts, votes needed,
    position bias (the per-configuration figures go into each configuration's object)."""
    return {"agreement": result["agreement"], "by_tag": result["by_tag"], "counts": result["counts"],
            "style_source": result["style_source"], "style_games": result["style_games"],
            "votes_needed": result["votes_needed"], "position_bias": result["position_bias"]}


def _two_columns(data: Loaded, pair: PairKey) -> bool:
    return (pair[0], pair[1], 2) not in data.keys
