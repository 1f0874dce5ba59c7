"""A/B comparisons: variants run from the same branch point, side by side, voted on (blind or not).

A **comparison** starts at a run of a session (the *branch point*). Each of its 2–4 **variants** is
an agent configuration (model, system prompt, parameters, memory settings, stored as a
:class:`memory.models.Agent` owned by the user) plus a label; each variant's runs form one branch
under the branch point, so every comparison stays in the session's tree and any variant's branch
can be continued, forked or compared again.

The input is either one new prompt (``mode="new_prompt"``) or the user turns of an existing branch
below the branch point, replayed in order (``mode="replay"``). ``prompts`` holds the inputs, copied
at the start, so turn *t* of every variant gets exactly ``prompts[t]``. ``VariantRun`` ties a
variant's turn to its run; its unique ``(variant, turn)`` constraint is what makes starting a turn
idempotent.

A **vote** is given per prompt (turn); ``VoteRank`` rows tie it to the run of each variant at that
turn with a rank (1 is best, equal ranks are a tie).
"""

from __future__ import annotations

import hashlib
import json
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

MIN_VARIANTS = 2
MAX_VARIANTS = 4
COLUMN_LETTERS = "ABCD"


class Mode(models.TextChoices):
    NEW_PROMPT = "new_prompt", "one new prompt"
    REPLAY = "replay", "replay a branch's user turns"


class Tag(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comparison_tags")
    name = models.CharField(max_length=50)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="comparison_tag_owner_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ComparisonQuerySet(models.QuerySet):
    def owned_by(self, user) -> ComparisonQuerySet:
        return self.filter(owner=user)


class Comparison(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comparisons")
    session = models.ForeignKey("conversations.Session", on_delete=models.CASCADE, related_name="comparisons")
    branch_point = models.ForeignKey(
        "conversations.Run", null=True, blank=True, on_delete=models.PROTECT, related_name="comparisons",
        help_text="Every variant's first run is a child of this run (empty: a suite case, whose first runs are "
                  "root runs of the suite run's session).",
    )
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.NEW_PROMPT)
    source_run = models.ForeignKey(
        "conversations.Run", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Replay: the leaf of the branch whose user turns below the branch point are replayed.",
    )
    prompts = models.JSONField(default=list, help_text="The input of each turn, in order (copied at the start).")
    blind = models.BooleanField(default=False)
    column_order = models.JSONField(
        default=list, help_text="Variant positions in the order of the columns shown (shuffled when blind).",
    )
    revealed_at = models.DateTimeField(
        null=True, blank=True, help_text="Blind: when the labels were revealed (every prompt has a vote).",
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="comparisons")
    samples = models.PositiveSmallIntegerField(
        default=1, help_text="Answers per variant and prompt: the voted one plus samples − 1 repeats (siblings).")
    suite_run = models.ForeignKey("SuiteRun", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="comparisons", help_text="The suite run this case belongs to.")
    suite_case = models.ForeignKey("SuiteCase", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = ComparisonQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["owner", "-created_at"], name="comparison_owner_created")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Comparison {self.pk}"

    @property
    def turn_count(self) -> int:
        return len(self.prompts)

    @property
    def labels_visible(self) -> bool:
        """Labels (and models) may be shown: not blind, or blind and revealed after the votes."""
        return not self.blind or self.revealed_at is not None


def config_fingerprint(config: dict) -> str:
    """SHA-256 of a configuration's canonical JSON: the identity results aggregate over."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Variant(models.Model):
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField(help_text="0-based order in which the variants were given.")
    label = models.CharField(max_length=100)
    agent = models.ForeignKey("memory.Agent", null=True, on_delete=models.SET_NULL, related_name="+")
    config = models.JSONField(
        default=dict,
        help_text="Snapshot: model, system_prompt, params, memory_id, memory_window_size (results must not "
                  "change if the agent is edited later).",
    )
    config_key = models.CharField(max_length=64, db_index=True, help_text="config_fingerprint(config).")
    stopped_reason = models.CharField(
        max_length=200, blank=True, help_text="Replay: why later turns were not started (a run did not succeed).",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["comparison", "position"], name="variant_comparison_position")]
        ordering = ["comparison_id", "position"]

    def __str__(self) -> str:
        return self.label

    @property
    def model_name(self) -> str:
        return self.config.get("model") or settings.ARBOR_MODEL


class VariantRun(models.Model):
    """Turn ``turn`` of a variant was answered by ``run``."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="variant_runs")
    turn = models.PositiveSmallIntegerField()
    run = models.OneToOneField("conversations.Run", on_delete=models.CASCADE, related_name="comparison_turn")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["variant", "turn"], name="variantrun_variant_turn")]
        ordering = ["variant_id", "turn"]

    def __str__(self) -> str:
        return f"Turn {self.turn + 1} of variant {self.variant_id}"


class RepeatSample(models.Model):
    """Repeat ``sample`` (1 … samples − 1) of a variant's turn: a sibling of the voted run (same
    parent, same input), with the seed raised by ``sample`` where the configuration has one (else
    seed ``sample``), for the spread of a variant's answers. Repeats are not voted on."""

    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="repeats")
    turn = models.PositiveSmallIntegerField()
    sample = models.PositiveSmallIntegerField()
    run = models.OneToOneField("conversations.Run", on_delete=models.CASCADE, related_name="repeat_sample")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["variant", "turn", "sample"], name="repeat_variant_turn_sample")]
        ordering = ["variant_id", "turn", "sample"]

    def __str__(self) -> str:
        return f"Repeat {self.sample} of turn {self.turn + 1}"


class VoteChoice(models.TextChoices):
    A_BETTER = "a_better", "A is better"
    B_BETTER = "b_better", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both are bad"
    RANKING = "ranking", "Ranking"


class Vote(models.Model):
    """The owner's judgement of one prompt (turn). ``choice`` is in terms of the columns shown
    (A = the left column); ``ranks`` ties it to each variant's run with its rank."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="votes")
    turn = models.PositiveSmallIntegerField()
    choice = models.CharField(max_length=16, choices=VoteChoice.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["comparison", "turn"], name="vote_comparison_turn")]
        ordering = ["comparison_id", "turn"]

    def __str__(self) -> str:
        return f"{self.get_choice_display()} (turn {self.turn + 1})"


class VoteRank(models.Model):
    vote = models.ForeignKey(Vote, on_delete=models.CASCADE, related_name="ranks")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="ranks")
    run = models.ForeignKey("conversations.Run", on_delete=models.CASCADE, related_name="vote_ranks")
    rank = models.PositiveSmallIntegerField(help_text="1 is best; equal ranks are a tie.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["vote", "variant"], name="voterank_vote_variant")]
        ordering = ["vote_id", "rank"]

    def __str__(self) -> str:
        return f"Rank {self.rank} of variant {self.variant_id}"


# --- LLM judges ----------------------------------------------------------------------------------------

class Rubric(models.Model):
    """What a judge is asked to weigh, saved by a user (copied from a template or written anew).

    ``scale_max``: 0 for a verdict only, else the judge also scores each answer from 1 to
    ``scale_max``; ``pass_threshold``: a score at or above it passes (pass^k over repeats)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rubrics")
    name = models.CharField(max_length=100)
    text = models.TextField()
    scale_max = models.PositiveSmallIntegerField(default=0)
    pass_threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="rubric_owner_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Judging(models.Model):
    """An LLM judge's pass over a comparison: every pair of columns of every prompt, in both
    orders. The judge's runs are root runs of ``session`` (one session per judging, owned by the
    comparison's owner), so their contexts, tokens and errors are audited like any run. The rubric
    is a snapshot (editing the rubric later changes nothing here)."""

    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="judgings")
    agent = models.ForeignKey("memory.Agent", null=True, on_delete=models.SET_NULL, related_name="+")
    agent_name = models.CharField(max_length=100)
    model = models.CharField(max_length=200)
    rubric_name = models.CharField(max_length=100)
    rubric_text = models.TextField()
    scale_max = models.PositiveSmallIntegerField(default=0)
    pass_threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    session = models.ForeignKey("conversations.Session", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.rubric_name} by {self.agent_name}"


class JudgeVerdict(models.TextChoices):
    FIRST = "first", "the first answer shown is better"
    SECOND = "second", "the second answer shown is better"
    TIE = "tie", "tie"
    BOTH_BAD = "both_bad", "both bad"


class Judgement(models.Model):
    """One judge call: prompt ``turn``, the answers of columns ``first`` then ``second`` (0-based
    column indices, as shown) — the voted answers, or with ``sample`` n their repeat n — answered by
    ``run``. Filled from the run once it has finished:
    ``verdict`` ("" until then or when the reply had no verdict line, see ``error``), the scores of
    the first and second answer, the rationale, tokens and cost (USD, None without a price)."""

    judging = models.ForeignKey(Judging, on_delete=models.CASCADE, related_name="judgements")
    turn = models.PositiveSmallIntegerField()
    sample = models.PositiveSmallIntegerField(
        default=0, help_text="0: the voted answers; n: repeat n of each column (scored for pass^k, never voted).")
    first = models.PositiveSmallIntegerField()
    second = models.PositiveSmallIntegerField()
    run = models.OneToOneField("conversations.Run", on_delete=models.CASCADE, related_name="judgement")
    verdict = models.CharField(max_length=16, choices=JudgeVerdict.choices, blank=True)
    score_first = models.FloatField(null=True, blank=True)
    score_second = models.FloatField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    error = models.CharField(max_length=300, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True)
    recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["judging", "turn", "sample", "first", "second"],
                                               name="judgement_judging_turn_sample_order")]
        ordering = ["judging_id", "turn", "sample", "first", "second"]

    def __str__(self) -> str:
        return f"Turn {self.turn + 1}: {COLUMN_LETTERS[self.first]} then {COLUMN_LETTERS[self.second]}"


# --- suites: conversations kept as regression cases -----------------------------------------------------

class Suite(models.Model):
    """A set of conversations kept to be replayed on new models: each case is the user turns of one
    branch (and, optionally, the answers it had, as references)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suites")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="suite_owner_name")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SuiteCase(models.Model):
    """One branch of a suite: ``prompts`` (its user turns, root first) and ``references`` (the
    answers the branch had, one per prompt; empty when not kept); ``source_run`` the branch's leaf."""

    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="cases")
    position = models.PositiveSmallIntegerField()
    title = models.CharField(max_length=200, blank=True)
    prompts = models.JSONField(default=list)
    references = models.JSONField(default=list)
    source_run = models.ForeignKey("conversations.Run", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["suite", "position"], name="suitecase_suite_position")]
        ordering = ["suite_id", "position"]

    def __str__(self) -> str:
        return self.title or f"Case {self.position + 1}"


class SuiteRun(models.Model):
    """A suite replayed on agents: one comparison per case (a replay of its prompts, the first agent
    as the baseline), in ``session``; pairs go to blind votes and, with ``judge`` set, to the judge
    once every answer is in (rubric snapshot as for :class:`Judging`)."""

    suite = models.ForeignKey(Suite, on_delete=models.CASCADE, related_name="runs")
    session = models.ForeignKey("conversations.Session", on_delete=models.CASCADE, related_name="+")
    agents = models.JSONField(default=list, help_text="[{id, name, model}] in column order, the baseline first.")
    blind = models.BooleanField(default=True)
    judge = models.ForeignKey("memory.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rubric_name = models.CharField(max_length=100, blank=True)
    rubric_text = models.TextField(blank=True)
    scale_max = models.PositiveSmallIntegerField(default=0)
    pass_threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.suite} run {self.created_at:%Y-%m-%d %H:%M}"
