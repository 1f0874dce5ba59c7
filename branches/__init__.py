"""The branch tools: named branches (labels), the branch diff, prune with undo, and read-only share
links. Actions in :mod:`branches.services`, reads in :mod:`branches.selectors`, the word diff in
:mod:`branches.diff`, pages in :mod:`branches.views` (namespace ``branches``), the JSON API in
:mod:`branches.api`, template tags in ``{% load branch_tags %}``.

The tables stay in the conversations app (``BranchLabel``, ``Prune``, ``BranchShare``: runs point
at their prune), so no migration moves them; this app sits above ``conversations`` and holds no
models.
"""
