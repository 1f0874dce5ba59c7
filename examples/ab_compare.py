#!/usr/bin/env python3
"""A blind A/B comparison on Arbor, driven from a script through the JSON API, then the results table.

Two agents (each a model on a connection) answer the same prompts side by side; you (or a rule)
vote on every prompt without knowing which column is which; the labels are revealed after the
votes, and the script prints win rates (Wilson 95 % intervals) and Bradley–Terry ratings over the
comparisons of this run (they share a tag).

    export ARBOR_URL=http://127.0.0.1:8000
    export ARBOR_TOKEN=$(.venv/bin/python manage.py create_api_token alice)
    python examples/ab_compare.py --model-a SmolLM2-135M-Instruct --connection-a 1 \\
        --model-b gpt-4o-mini --connection-b 2 \\
        --prompt "Explain TCP slow start in two sentences." --prompt "What is a B-tree for?"

``--agent-a ID --agent-b ID`` use agents that exist instead of creating two. ``--vote`` decides
each vote: ``ask`` (default: shows both answers, you type a, b, t or x), ``shorter``, ``longer``,
``a``, ``b`` or ``tie``. Only httpx is needed (``pip install httpx``).

API calls: ``POST /api/agents``; ``POST /api/sessions`` and ``/api/sessions/{id}/runs`` (the
branch point, unless ``--run``); ``GET /api/runs/{id}``; ``POST /api/comparisons``;
``GET /api/comparisons/{id}``; ``POST /api/comparisons/{id}/turns/0/vote``;
``GET /api/comparisons/results?tag=…``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import httpx

FINISHED = {"succeeded", "failed", "cancelled"}
DEFAULT_PROMPTS = ["Explain what a hash table is in two sentences.",
                   "Give three tips for writing a clear commit message."]


class Arbor:
    """The JSON API with a Bearer token; any error answer stops the script with its ``detail``."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        self.http = httpx.Client(base_url=f"{base_url.rstrip('/')}/api", timeout=timeout,
                                 headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:300]
            raise SystemExit(f"{method} /api{path} answered {response.status_code}: {detail}")
        return response.json()


def agents(api: Arbor, args) -> list[tuple[int, str]]:
    """``(id, label)`` of the two agents: given (``--agent-a/-b``), or created on their connections."""
    found = []
    for side in ("a", "b"):
        given, label = getattr(args, f"agent_{side}"), getattr(args, f"label_{side}")
        if given is not None:
            found.append((given, label or f"agent {given}"))
            continue
        model, connection = getattr(args, f"model_{side}"), getattr(args, f"connection_{side}")
        if not model or connection is None:
            raise SystemExit(f"give --agent-{side}, or --model-{side} and --connection-{side}")
        name = f"ab {model} @ {connection} {uuid.uuid4().hex[:6]}"
        created = api.call("POST", "/agents", json={"name": name, "model": model, "connection_id": connection})
        found.append((created["id"], label or f"{model} @ {connection}"))
    return found


def wait_run(api: Arbor, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = api.call("GET", f"/runs/{run_id}")
        if run["status"] in FINISHED:
            return run
        time.sleep(0.5)
    raise SystemExit(f"run {run_id} did not finish in {timeout:.0f} s")


def branch_point(api: Arbor, args) -> tuple[str | None, str]:
    """``(session_id, run_id)`` every comparison branches from: ``--run``, or a new session's first turn."""
    if args.run:
        return args.session, args.run
    session = api.call("POST", "/sessions", json={"title": f"A/B {args.tag}"})
    accepted = api.call("POST", f"/sessions/{session['id']}/runs", json={"input": args.setup})
    run = wait_run(api, accepted["run_id"], args.timeout)
    if run["status"] != "succeeded":
        raise SystemExit(f"the setup turn {run['status']}: {run['error']}")
    return session["id"], run["run_id"]


def wait_answers(api: Arbor, comparison_id: str, timeout: float) -> dict:
    """The comparison's state once every column has answered its (only) prompt."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = api.call("GET", f"/comparisons/{comparison_id}")
        if state["turns"][0]["complete"]:
            return state
        time.sleep(0.5)
    raise SystemExit(f"comparison {comparison_id}: the answers did not arrive in {timeout:.0f} s")


def choose(strategy: str, prompt: str, cells: list[dict]) -> str:
    """The vote for two columns: a_better, b_better, tie or both_bad."""
    answers = [(cell["answer"] or "") if cell["status"] == "succeeded" else None for cell in cells]
    if all(answer is None for answer in answers):
        return "both_bad"
    if strategy in ("a", "b"):
        return f"{strategy}_better"
    if strategy == "tie":
        return "tie"
    if strategy in ("shorter", "longer"):
        a, b = (len(answer) if answer is not None else None for answer in answers)
        if a == b:
            return "tie"
        if a is None or b is None:
            return "a_better" if b is None else "b_better"
        return "a_better" if (a < b) == (strategy == "shorter") else "b_better"
    print(f"\nPrompt: {prompt}")
    for cell, answer in zip(cells, answers, strict=True):
        print(f"\n--- {cell['letter']} ---\n{answer if answer is not None else '(failed: ' + str(cell['error']) + ')'}")
    keys = {"a": "a_better", "b": "b_better", "t": "tie", "x": "both_bad"}
    while (key := input("\nBetter? a, b, t (tie) or x (both bad): ").strip().lower()) not in keys:
        pass
    return keys[key]


def compare(api: Arbor, args, pair: list[tuple[int, str]], where: tuple[str | None, str], prompt: str) -> dict:
    """One blind comparison of the two agents on ``prompt``, voted; returns its revealed state."""
    session_id, run_id = where
    body = {"branch_point_run_id": run_id, "session_id": session_id, "prompt": prompt, "blind": True,
            "tags": [args.tag], "variants": [{"label": label, "agent_id": agent_id} for agent_id, label in pair]}
    comparison = api.call("POST", "/comparisons", json=body)
    state = wait_answers(api, comparison["id"], args.timeout)
    choice = choose(args.vote, prompt, state["turns"][0]["cells"])
    state = api.call("POST", f"/comparisons/{comparison['id']}/turns/0/vote", json={"choice": choice})
    left, right = (column["variant"]["label"] for column in state["columns"])
    print(f"{prompt[:50]!r}: {choice} (A was {left}, B was {right})")
    return state


def print_results(api: Arbor, tag: str) -> None:
    results = api.call("GET", "/comparisons/results", params={"tag": tag})
    print(f"\nResults over {results['comparisons']} comparisons, {results['votes']} votes (tag {tag}):\n")
    header = f"{'label':<24} {'model':<24} {'votes':>5} {'wins':>4} {'losses':>6} {'ties':>4} {'bad':>3} " \
             f"{'win rate [95% CI]':>21} {'rating':>7}"
    print(header)
    print("-" * len(header))
    for c in results["configurations"]:
        rate = (f"{c['win_rate']:.0%} [{c['ci_low']:.0%}, {c['ci_high']:.0%}]" if c["win_rate"] is not None
                else "–")
        print(f"{c['label'][:24]:<24} {c['model'][:24]:<24} {c['votes']:>5} {c['wins']:>4} {c['losses']:>6} "
              f"{c['ties']:>4} {c['both_bad']:>3} {rate:>21} {c['rating']:>7.0f}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("ARBOR_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("ARBOR_TOKEN"), help="default: $ARBOR_TOKEN")
    for side in ("a", "b"):
        parser.add_argument(f"--agent-{side}", type=int, help="an existing agent's id")
        parser.add_argument(f"--model-{side}", help="the model of the agent to create")
        parser.add_argument(f"--connection-{side}", type=int, help="the connection (id) of the agent to create")
        parser.add_argument(f"--label-{side}", help="the variant's label (shown after the vote)")
    parser.add_argument("--prompt", action="append", help="repeat for several prompts (one comparison each)")
    parser.add_argument("--vote", default="ask", choices=["ask", "shorter", "longer", "a", "b", "tie"])
    parser.add_argument("--session", help="with --run: the session the branch point is in")
    parser.add_argument("--run", help="compare from this run instead of a new session's first turn")
    parser.add_argument("--setup", default="You are being evaluated. Answer the next question well.",
                        help="the input of the new session's first turn (the branch point)")
    parser.add_argument("--tag", default=f"ab-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for answers")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give --token or set ARBOR_TOKEN (manage.py create_api_token <user>)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    api = Arbor(args.url, args.token)
    pair = agents(api, args)
    where = branch_point(api, args)
    for prompt in args.prompt or DEFAULT_PROMPTS:
        compare(api, args, pair, where, prompt)
    print_results(api, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
