"""Sessions, runs, messages and steps.

Runs form the conversation tree (each run has a parent run); steps form each run's call tree.
A fork is a new session whose first runs hang under a run of another session: ancestors are never
copied, because a finished run is immutable, so they are shared by every session that descends from
them. Appending a turn writes a constant number of rows whatever the depth.

Reading a path uses *segments*: every run stores ``segment``, the id of the first run of the chain
it belongs to. A run continues its parent's segment when it is the parent's first child in that
segment (nothing at ``(parent's segment, depth)`` yet), else it starts a segment of its own, whose
head's parent lies in the parent's segment. So the runs of a segment are a chain, one per depth
(unique ``(segment, depth)``), and the path to a run is: its segment up to its depth, then the
head's parent's segment up to that parent's depth, and so on to a root. A linear conversation is
one segment; each branch taken (a sibling, an edit, a regenerate, a rewind) starts one more. The
read is one query (SQLite and PostgreSQL): a short recursive walk over segment heads (two primary
key lookups per segment) and one index range scan on ``(segment, depth)`` per segment, instead of
one lookup per run. Unlike a materialised path (an array of every ancestor on each run, or
PostgreSQL's ``ltree``), a segment costs one id per run (16 bytes) whatever the depth.
"""

from .branches import MAX_LABELS, BranchLabel, BranchLabelQuerySet, BranchShare, Prune
from .messages import Message, MessageQuerySet, PathMessage, PathRun, Role, Step, StepKind
from .runs import ACTIVE_STATUSES, FINISHED_STATUSES, Run, RunQuerySet, RunStatus, db_uuid, plan_segments
from .sessions import Q_session, Session, SessionQuerySet

__all__ = [
    "ACTIVE_STATUSES", "FINISHED_STATUSES", "MAX_LABELS", "BranchLabel", "BranchLabelQuerySet", "BranchShare",
    "Message", "MessageQuerySet", "PathMessage", "PathRun", "Prune", "Q_session", "Role", "Run", "RunQuerySet",
    "RunStatus", "Session", "SessionQuerySet", "Step", "StepKind", "db_uuid", "plan_segments",
]
