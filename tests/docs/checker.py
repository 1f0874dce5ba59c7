"""The docs check: every command, route, name and link in the Markdown docs names something that exists.

``check_file(path, text, project) -> list[Problem]`` reads one Markdown file (CommonMark's fenced
code blocks, inline code spans and inline links; GitHub's heading anchors) and reports, with the
line it stands on:

* **shell blocks** (fences marked ``console``, ``bash``, ``sh`` or ``shell``; in ``console`` only the
  lines after a ``$ `` prompt are commands) and **inline spans** that start like a command
  (``make ...``, ``python manage.py ...``, ``python -m bench ...``):
  - ``make X``: ``make -n X`` succeeds; ``BENCH_ARGS=...`` names benchmark modules;
  - ``python manage.py X --opt``: ``X`` is a management command (as ``manage.py help X`` finds it)
    and ``--opt`` one of its options;
  - ``python -m bench a b``: ``bench/bench_a.py`` exists; ``python -m M``: module ``M`` is importable;
    ``python path.py``: the file exists; ``python -c CODE``: the code compiles;
  - ``curl .../api/...``: the method and path are an operation of ``config.api``'s OpenAPI schema;
* inline ``METHOD /api/path`` spans: an operation of the schema;
* ``python`` blocks: the code compiles and what it imports from an app package exists;
* inline repository paths (``engine/execute.py``, ``bench/bench_<name>.py``): tracked or ignored by git;
* inline dotted names under an app package (``engine.context.build_context``, ``audit.AuditLog``,
  ``engine.execute_run``): an importable module and attribute, a model (and field), a model permission, or a
  Celery task name;
* ``ARBOR_*`` and ``DJANGO_*`` variables: read somewhere in the code, the Makefile or config files;
* relative links and images: the file exists, and a ``#anchor`` into Markdown names a heading.

What exists is asked of a :class:`Project`, so a test can point the same check at a synthetic page.
"""

from __future__ import annotations

import ast
import fnmatch
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SHELL_FENCES = {"console", "bash", "sh", "shell"}
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
VARIABLE = re.compile(r"\b(?:ARBOR|DJANGO)_[A-Z0-9_]*[A-Z0-9]\b")
DOTTED = re.compile(r"^([a-z_][a-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(.*\))?$")
REPO_PATH = re.compile(r"^[\w.-]+(?:/[\w.<>*-]+)+/?$")
ROUTE_SPAN = re.compile(r"^(GET|POST|PUT|PATCH|DELETE)\s+(/api/\S+)$")
FILE_SUFFIXES = {"json", "jsonl", "py", "md", "txt", "zip", "csv", "log", "gguf", "toml", "html", "sqlite3", "svg",
                 "png"}
COMMAND_SPAN = re.compile(r"^(?:make\s|(?:\S*/)?python3?\s|(?:\./)?manage\.py\s)")


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class Project:
    """What the docs may name. Subclass or pass callables in tests; :mod:`tests.docs.project` builds the real one.

    ``make_target(name) -> bool``, ``manage_options(name) -> set[str] | None`` (``None``: no such
    command), ``bench_modules``: names ``x`` of ``bench/bench_x.py``, ``module_exists(name) -> bool``,
    ``routes``: ``{(METHOD, "/api/path/{param}")}``, ``repo_path_ok(path) -> bool``,
    ``dotted_ok(name) -> bool``, ``variables``: every variable the code reads, ``root``: the repository.
    """

    def __init__(self, *, root, make_target, manage_options, bench_modules, module_exists, routes,
                 repo_path_ok, dotted_ok, variables, packages):
        self.root = Path(root)
        self.make_target = make_target
        self.manage_options = manage_options
        self.bench_modules = set(bench_modules)
        self.module_exists = module_exists
        self.routes = {(method, _route_pattern(path)) for method, path in routes}
        self.repo_path_ok = repo_path_ok
        self.dotted_ok = dotted_ok
        self.variables = set(variables)
        self.packages = set(packages)

    def route_ok(self, method: str, path: str) -> bool:
        path = path.split("?", 1)[0].split("#", 1)[0]
        return any(m == method and pattern.fullmatch(path) for m, pattern in self.routes)


def _route_pattern(template: str) -> re.Pattern:
    """An OpenAPI path template as a regex; a doc's own placeholders (``{id}``, ``$S``) match any segment."""
    parts = re.split(r"\{[^}]+\}", template)
    return re.compile("[^/]+".join(re.escape(p) for p in parts))


def _doc_path(path: str) -> str:
    return re.sub(r"\{[^}]*\}|\$\{?\w+\}?|…|\.\.\.", "x", path)


# --- reading Markdown ------------------------------------------------------------------------------

@dataclass
class Block:
    lang: str
    start: int  # line number of the first line inside the fence
    lines: list[str]


def split_markdown(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """Fenced blocks, and the (line number, text) of every line outside them."""
    blocks, prose, current, fence = [], [], None, ""
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if current is None and match:
            fence, current = match.group(1), Block(match.group(2).lower(), number + 1, [])
        elif current is not None and line.strip().startswith(fence) and not line.strip()[len(fence):].strip():
            blocks.append(current)
            current = None
        elif current is not None:
            current.lines.append(line)
        else:
            prose.append((number, line))
    return blocks, prose


def shell_commands(block: Block) -> Iterator[tuple[int, str]]:
    """(line number, command text) of a shell block: continuations joined, comments and output left out."""
    pending, first = "", 0
    for offset, raw in enumerate(block.lines):
        line = raw.rstrip()
        if not pending:
            if block.lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = block.start + offset
        line = re.sub(r"\s+#\s.*$", "", line) if "'" not in line and '"' not in line else line
        if pending:
            line = line.lstrip()
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        yield first, pending + line
        pending = ""


def simple_commands(command: str) -> list[list[str]]:
    """The words of each simple command in a line (``;``, ``&&``, ``|``, ``$( )`` separate them),
    leading ``VAR=value`` assignments kept as words."""
    lexer = shlex.shlex(command.replace("$(", " ( "), posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # an unbalanced quote: read the words plainly
        tokens = command.split()
    commands, words = [], []
    for token in tokens:
        if token and set(token) <= set(";&|()"):
            if words:
                commands.append(words)
            words = []
        else:
            words.append(token)
    if words:
        commands.append(words)
    return commands


# --- checking commands -----------------------------------------------------------------------------

def check_command(words: list[str], project: Project) -> list[str]:
    """Problems with one simple command (its words), as messages."""
    while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
        words = words[1:]
    if not words:
        return []
    program = words[0].rsplit("/", 1)[-1]
    if program == "make":
        return _check_make(words[1:], project)
    if re.fullmatch(r"python3?(\.\d+)?", program):
        return _check_python(words[1:], project)
    if program == "manage.py":
        return _check_manage(words[1:], project)
    if program == "curl":
        return _check_curl(words[1:], project)
    return []


def _check_make(args: list[str], project: Project) -> list[str]:
    problems = []
    for arg in args:
        if arg.startswith("-"):
            continue
        if "=" in arg:
            name, value = arg.split("=", 1)
            if name == "BENCH_ARGS":
                problems += _check_bench(value.split(), project)
            continue
        if not project.make_target(arg):
            problems.append(f"`make {arg}`: no such target (make -n {arg} fails)")
    return problems


def _check_bench(names: list[str], project: Project) -> list[str]:
    return [f"benchmark `{name}`: no bench/bench_{name}.py" for name in names
            if re.fullmatch(r"\w+", name) and name not in project.bench_modules]


def _check_python(args: list[str], project: Project) -> list[str]:
    if not args:
        return []
    if args[0] == "-c":
        try:
            compile(args[1] if len(args) > 1 else "", "<docs>", "exec")
        except SyntaxError as exc:
            return [f"`python -c`: {exc.msg}"]
        return []
    if args[0] == "-m" and len(args) > 1:
        if args[1] == "bench":
            return _check_bench(args[2:], project)
        return [] if project.module_exists(args[1]) else [f"`python -m {args[1]}`: no such module"]
    if args[0].rsplit("/", 1)[-1] == "manage.py":
        return _check_manage(args[1:], project)
    if args[0].endswith(".py") and not (project.root / args[0]).is_file():
        return [f"`python {args[0]}`: no such file"]
    return []


def _check_manage(args: list[str], project: Project) -> list[str]:
    if not args or args[0].startswith("-"):
        return []
    name = args[0]
    if name == "help":  # manage.py help X: X must exist
        return _check_manage(args[1:2], project)
    options = project.manage_options(name)
    if options is None:
        return [f"`manage.py {name}`: no such command (manage.py help {name} fails)"]
    problems = []
    for arg in args[1:]:
        option = arg.strip("[]").split("=", 1)[0]
        if option.startswith("-") and option not in ("-", "--") and option not in options:
            problems.append(f"`manage.py {name}`: no option {option}")
    return problems


def _check_curl(args: list[str], project: Project) -> list[str]:
    method, urls, data = None, [], False
    for i, arg in enumerate(args):
        if arg in ("-X", "--request") and i + 1 < len(args):
            method = args[i + 1]
        elif arg.startswith("-X") and len(arg) > 2:
            method = arg[2:]
        elif arg in ("-d", "--data", "--data-raw", "--json", "-F", "--form"):
            data = True
        elif "/api/" in arg and not arg.startswith("-"):
            urls.append(arg[arg.index("/api/"):])
    method = (method or ("POST" if data else "GET")).upper()
    return [f"`curl`: no API operation {method} {url}" for url in urls
            if not project.route_ok(method, _doc_path(url))]


# --- checking prose --------------------------------------------------------------------------------

def check_span(span: str, project: Project) -> list[str]:
    """Problems with one inline code span."""
    span = span.strip()
    route = ROUTE_SPAN.match(span)
    if route:
        method, path = route.groups()
        return [] if project.route_ok(method, _doc_path(path)) else [f"no API operation {method} {path}"]
    if COMMAND_SPAN.match(span):
        return [problem for words in simple_commands(span) for problem in check_command(words, project)]
    first = span.split("/", 1)[0].split(".", 1)[0]
    if REPO_PATH.match(span) and first in project.packages | _top_level(project):
        return [] if project.repo_path_ok(span) else [f"no file or folder `{span}` in the repository"]
    dotted = DOTTED.match(span)
    if dotted and span.rsplit(".", 1)[-1] in FILE_SUFFIXES:  # a file name: conversations.json
        return []
    if dotted and first in project.packages and not project.dotted_ok(dotted.group(1)):
        return [f"`{dotted.group(1)}`: no such module, attribute, model, permission or task"]
    return []


def _top_level(project: Project) -> set[str]:
    return {p.name for p in project.root.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"var"}


def check_link(target: str, source: Path, project: Project) -> list[str]:
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return []
    path_part, _, anchor = target.partition("#")
    path = (source.parent / path_part).resolve() if path_part else source.resolve()
    if not path.exists():
        return [f"link `{target}`: no such file"]
    if anchor and path.suffix == ".md" and anchor not in heading_anchors(path.read_text(encoding="utf-8")):
        return [f"link `{target}`: no heading #{anchor} in {path.name}"]
    return []


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown text (lower case, punctuation dropped, spaces → -)."""
    blocks, prose = split_markdown(text)
    anchors = set()
    for _, line in prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).replace("`", "").lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def check_file(path: Path, text: str, project: Project) -> list[Problem]:
    """Every problem of one Markdown file."""
    shown = str(path.relative_to(project.root)) if path.is_relative_to(project.root) else str(path)
    problems = []
    blocks, prose = split_markdown(text)
    for block in blocks:
        if block.lang in SHELL_FENCES:
            for number, command in shell_commands(block):
                for words in simple_commands(command):
                    problems += [Problem(shown, number, m) for m in check_command(words, project)]
        if block.lang == "python":
            problems += [Problem(shown, block.start, m) for m in check_python_imports("\n".join(block.lines), project)]
        for offset, line in enumerate(block.lines):
            problems += _check_variables(line, shown, block.start + offset, project)
    for number, line in prose:
        for match in INLINE_CODE.finditer(line):
            problems += [Problem(shown, number, m) for m in check_span(match.group(2), project)]
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            problems += [Problem(shown, number, m) for m in check_link(match.group(1), path, project)]
        problems += _check_variables(line, shown, number, project)
    return problems


def check_python_imports(code: str, project: Project) -> list[str]:
    """A Python example compiles, and each name it imports from an app package exists."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [f"Python example: {exc.msg} (line {exc.lineno})"]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return [f"Python example imports `{name}`: no such module or attribute" for name in names
            if name.split(".", 1)[0] in project.packages and not project.dotted_ok(name)]


def _check_variables(line: str, shown: str, number: int, project: Project) -> list[Problem]:
    return [Problem(shown, number, f"variable {name}: read nowhere in the code")
            for name in dict.fromkeys(VARIABLE.findall(line)) if name not in project.variables]


def glob_match(pattern: str, names: set[str]) -> bool:
    """Whether a path with ``<placeholders>`` (or ``*``) matches one of ``names``."""
    pattern = re.sub(r"<[^>]*>", "*", pattern.rstrip("/"))
    return any(fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + "/*") for name in names)
