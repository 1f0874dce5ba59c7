"""Compaction over a merge turn: a branch holding a merge turn is compacted like any other; the
summariser is sent the carried messages (they are the merge turn's own), the summary replaces them
for the turns below the compacted run, and a branch below the merge turn itself still gets them
verbatim. The summariser calls the scripted model server over real HTTP."""

from __future__ import annotations

import pytest

from engine.compaction import compaction_consider, compaction_execute
from engine.context import SUMMARY_HEADER
from memory.models import CompactionStatus
from merges import services
from tests.memory.conftest import built_for, contents, estimate_counter
from tests.support.factories import AgentFactory, SessionFactory, add_chain, new_input

pytestmark = pytest.mark.django_db

SUMMARY = "SUMMARY: branch B chose the coast road."


def test_a_branch_with_a_merge_turn_is_compacted_over_the_carried_messages(user, llm_server,
                                                                          django_capture_on_commit_callbacks):
    agent = AgentFactory(owner=user, context_window=600, reserved_output_tokens=100, compaction={
        "threshold": 0.5, "target": 0.3,
        "strategies": [{"type": "summarize", "keep_recent_turns": 2, "max_tokens": 64,
                        "prompt": f"[[reply:{SUMMARY}]] Summarise."}]})
    session = SessionFactory(owner=user)
    main = add_chain(session, None, 3, agent=agent, words=10)
    side = add_chain(session, main[0], 4, agent=agent, words=10, prefix="side")
    plan = services.merge_plan(session=session, target=main[-1], source=side[-1], mode="turns",
                               run_ids=[side[1].pk, side[2].pk])
    merge = services.merge_create(session=session, plan=plan)
    carried = [m["content"] for m in plan.messages]
    assert [c.split(" filler")[0] for c in carried] == ["side 1 question", "side 1 answer", "side 2 question",
                                                        "side 2 answer"]
    after = add_chain(session, merge, 6, agent=agent, words=10, prefix="after")

    with django_capture_on_commit_callbacks(execute=False):
        pending = compaction_consider(run=after[-1], counter=estimate_counter())
    assert pending is not None, "the branch is over the threshold"
    done = compaction_execute(compaction_id=pending.pk)
    assert done.status == CompactionStatus.READY and done.summary == SUMMARY
    sent = "\n".join(r["body"]["messages"][-1]["content"] for r in llm_server.requests)  # in pieces, maybe
    assert all(c in sent for c in carried), "the summariser is sent the carried messages"
    assert set(merge.messages.values_list("pk", flat=True)) <= set(done.replaced_message_ids)

    below = built_for(new_input(session, after[-1], agent=agent))
    assert below.messages[1] == {"role": "system", "content": SUMMARY_HEADER + SUMMARY}
    assert not any(c in contents(below) for c in carried), "the summary stands for the carried messages"
    assert [c.split(" filler")[0] for c in contents(below)[2:]] == [
        "after 4 question", "after 4 answer", "after 5 question", "after 5 answer", "new input"]

    at_merge = built_for(new_input(session, merge, agent=agent))  # above the compacted run: no summary
    assert not any(c.startswith(SUMMARY_HEADER) for c in contents(at_merge))
    assert contents(at_merge)[-5:-1] == carried and contents(at_merge)[-1] == "new input"
