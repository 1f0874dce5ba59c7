"""The reads of the conversations app, by what they read:

- :mod:`.ownership`: the one place that decides which sessions and runs a user may see
  (``get_session_for``, ``get_run_for``, ``get_branch_run_for``, ``get_run_to_act_on``);
- :mod:`.paths`: one branch as the chat shows it (windows of the path, siblings, totals, branch points);
- :mod:`.trees`: a session's whole tree (skeleton and the tree view's plan);
- :mod:`.pages`: page assembly (run previews, the sessions list's counts and search);
- :mod:`.runs`: runs as a whole (finished runs, what a run's stream reads from it).

The ownership lookups and :data:`RUN_SOURCE` are re-exported here: every app looks a user's
sessions and runs up through ``conversations.selectors``.
"""

from .ownership import get_branch_run_for, get_run_for, get_run_to_act_on, get_session_for, undo_cutoff
from .runs import RUN_SOURCE, runs_finished_before

__all__ = ["RUN_SOURCE", "get_branch_run_for", "get_run_for", "get_run_to_act_on", "get_session_for",
           "runs_finished_before", "undo_cutoff"]
