"""The docs name only what exists: make targets, management commands and their options, benchmarks,
API routes, files, modules, models, tasks, settings and links (see :mod:`tests.docs.checker`)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import textwrap

import pytest

from tests.docs.checker import LINK, Block, check_file, shell_commands, simple_commands, split_markdown
from tests.docs.project import ROOT, doc_files, real_project


@pytest.fixture(scope="module")
def project():
    return real_project()


def test_every_page_names_only_what_exists(project):
    problems = [p for path in doc_files() for p in check_file(path, path.read_text(encoding="utf-8"), project)]
    assert not problems, "stale docs:\n" + "\n".join(map(str, problems))


def test_the_check_reads_many_pages_and_commands(project):
    """The check is not vacuous: it sees the pages and the commands they show."""
    pages = doc_files()
    assert len(pages) >= 20
    commands = [c for page in pages for block in split_markdown(page.read_text(encoding="utf-8"))[0]
                if block.lang in {"console", "bash", "sh", "shell"} for c in shell_commands(block)]
    assert len(commands) >= 30


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


STALE = textwrap.dedent("""\
    # A page gone stale

    ```console
    $ make no-such-target
    $ make bench BENCH_ARGS="tree nosuchbench"
    output lines are not commands: make nothing-here
    ```

    ```sh
    .venv/bin/python manage.py no_such_command
    python manage.py import_runs x.jsonl --user alice --no-such-option
    python -m no_such_module_xyz --port 1
    python scripts/no_such_script.py
    TOKEN=$(.venv/bin/python manage.py nope_token alice)
    curl -s -XPOST localhost:8000/api/no-such-route -H "Authorization: Bearer $TOKEN" -d '{}'
    curl -s -XDELETE localhost:8000/api/sessions/$S/runs \\
        -H "Authorization: Bearer $TOKEN"
    ```

    ```python
    from memory.stores import InMemoryMemoryStore, NoSuchStore
    import conversations.no_such_module
    ```

    Run `make also-missing`, call `PATCH /api/runs/{run_id}`, read `engine/no_such_module.py` and
    `engine.execute.no_such_function`, the task `archive.no_such_task`,
    the permission `connections.fly_connection`, set `ARBOR_NO_SUCH_SETTING`,
    follow [a link](missing.md) and [an anchor](#no-such-heading).
    """)

FRESH = textwrap.dedent("""\
    # A page that is right

    ```console
    $ make test
    $ make bench BENCH_ARGS="tree ui"
    not a command: make nothing-here
    ```

    ```sh
    .venv/bin/python manage.py import_runs x.jsonl --user alice --new-ids
    python -m bench engine storage
    python -m connections.local_model --port 8001  # a comment: make nothing
    TOKEN=$(.venv/bin/python manage.py create_api_token alice)
    curl -s -XPOST localhost:8000/api/sessions/$S/runs -H "Authorization: Bearer $TOKEN" -d '{"input":"Hi"}'
    curl -N localhost:8000/api/runs/$R/events -H "Authorization: Bearer $TOKEN"
    ```

    ```python
    from memory.stores import InMemoryMemoryStore
    import engine.execute
    ```

    Run `make lint`, call `GET /api/runs/{run_id}`, read `engine/execute.py` and `bench/bench_<name>.py`
    and `engine.context.build_context`, `audit.AuditLog`, the task `archive.import_job`,
    the permission `connections.change_connection`, set `ARBOR_MODEL`, follow
    [this heading](#a-page-that-is-right).
    """)


def test_the_check_reports_each_stale_name(project, tmp_path):
    page = tmp_path / "stale.md"
    page.write_text(STALE, encoding="utf-8")
    messages = sorted(p.message for p in check_file(page, STALE, project))
    assert messages == sorted([
        "`make no-such-target`: no such target (make -n no-such-target fails)",
        "benchmark `nosuchbench`: no bench/bench_nosuchbench.py",
        "`manage.py no_such_command`: no such command (manage.py help no_such_command fails)",
        "`manage.py import_runs`: no option --no-such-option",
        "`python -m no_such_module_xyz`: no such module",
        "`python scripts/no_such_script.py`: no such file",
        "`manage.py nope_token`: no such command (manage.py help nope_token fails)",
        "`curl`: no API operation POST /api/no-such-route",
        "`curl`: no API operation DELETE /api/sessions/$S/runs",
        "`make also-missing`: no such target (make -n also-missing fails)",
        "no API operation PATCH /api/runs/{run_id}",
        "no file or folder `engine/no_such_module.py` in the repository",
        "`engine.execute.no_such_function`: no such module, attribute, model, permission or task",
        "`archive.no_such_task`: no such module, attribute, model, permission or task",
        "`connections.fly_connection`: no such module, attribute, model, permission or task",
        "variable ARBOR_NO_SUCH_SETTING: read nowhere in the code",
        "link `missing.md`: no such file",
        "Python example imports `memory.stores.NoSuchStore`: no such module or attribute",
        "Python example imports `conversations.no_such_module`: no such module or attribute",
        "link `#no-such-heading`: no heading #no-such-heading in stale.md",
    ])
    lines = {p.message: p.line for p in check_file(page, STALE, project)}
    assert lines["`curl`: no API operation DELETE /api/sessions/$S/runs"] == 16  # a continued command: its first line


def test_the_check_passes_a_right_page(project, tmp_path):
    page = tmp_path / "fresh.md"
    page.write_text(FRESH, encoding="utf-8")
    assert check_file(page, FRESH, project) == []


def test_shell_blocks_split_into_commands():
    block = Block("console", 1, ["$ make run \\", "    PORT=9000", "ready", "$ A=$(make -n lint) && make test | tee x"])
    commands = list(shell_commands(block))
    assert commands == [(1, "make run PORT=9000"), (4, "A=$(make -n lint) && make test | tee x")]
    assert simple_commands(commands[1][1]) == [["A="], ["make", "-n", "lint"], ["make", "test"], ["tee", "x"]]


def _api_docs_module():
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "scripts" / "api_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_matches_the_schema():
    """docs/api/openapi.json and reference.md are what scripts/api_docs.py generates from config.api now."""
    api_docs = _api_docs_module()
    for path, text in api_docs.render().items():
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        assert committed == text, f"{path.relative_to(ROOT)} is stale: run python scripts/api_docs.py"


def test_every_page_is_reachable_from_the_readme():
    """Following the links from README.md reaches every page under docs/ (no orphan page)."""
    seen, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or not page.is_file() or page.suffix != ".md":
            continue
        seen.add(page)
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = match.group(1).split("#", 1)[0]
            if target and "://" not in target:
                todo.append((page.parent / target).resolve())
    orphans = sorted(str(p.relative_to(ROOT)) for p in doc_files() if p.resolve() not in seen)
    assert not orphans, f"pages no link leads to: {orphans}"


def test_the_folder_map_lists_every_folder():
    """README's folder map has one row per top-level folder git tracks, and names no other."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Folder map", 1)[1].split("\n## ", 1)[0]
    mapped = {name for row in section.splitlines() if row.startswith("| `")
              for name in re.findall(r"`([\w.-]+)/`", row.split("|")[1])}
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    folders = {line.split("/", 1)[0] for line in tracked.splitlines() if "/" in line} - {".ci"}
    missing, extra = sorted(folders - mapped), sorted(mapped - folders)
    assert not missing and not extra, f"missing from the map: {missing}; no such folder: {extra}"
