"""The real :class:`tests.docs.checker.Project`: what this repository's Makefile, management commands,
benchmarks, API schema, files, modules, models, Celery tasks and settings provide.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import subprocess
from pathlib import Path

from django.apps import apps
from django.core.management import get_commands, load_command_class

from config.api import api
from config.celery import app as celery_app
from tests.docs.checker import VARIABLE, Project, glob_match

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "var", "staticfiles", "node_modules", "docs", "__pycache__", "vendor", "artifacts"}


@functools.cache
def make_target_exists(target: str) -> bool:
    """``make -n TARGET`` succeeds in the repository (``-n``: nothing is run, only printed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    result = subprocess.run(["make", "-n", target], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, timeout=60, check=False)
    return result.returncode == 0


def manage_options(name: str) -> set[str] | None:
    """The option strings of management command ``name``, or None when ``manage.py help NAME`` would fail."""
    app = get_commands().get(name)
    if app is None:
        return None
    command = app if not isinstance(app, str) else load_command_class(app, name)
    parser = command.create_parser("manage.py", name)
    return {option for action in parser._actions for option in action.option_strings}


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def api_routes() -> set[tuple[str, str]]:
    """``{(METHOD, path template)}`` of every operation in ``config.api``'s OpenAPI schema."""
    schema = api.get_openapi_schema()
    return {(method.upper(), path) for path, operations in schema["paths"].items() for method in operations}


def repo_path_ok(path: str) -> bool:
    """The path (``<placeholders>`` match anything) exists, or git ignores it (generated: ``tests/artifacts/``)."""
    if "<" in path or "*" in path:
        top = path.split("/", 1)[0]
        names = {str(p.relative_to(ROOT)) for p in (ROOT / top).rglob("*")} if (ROOT / top).is_dir() else set()
        return glob_match(path, names)
    if (ROOT / path).exists():
        return True
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    return ignored.returncode == 0


@functools.cache
def celery_task_names() -> frozenset[str]:
    """The registered Celery task names: every installed app's ``tasks`` module imported, then the app's
    registry read (not ``import_default_modules``, whose Django fixup runs the system checks on the database)."""
    for config in apps.get_app_configs():
        if module_exists(f"{config.name}.tasks"):
            importlib.import_module(f"{config.name}.tasks")
    return frozenset(celery_app.tasks.keys())


def dotted_ok(name: str) -> bool:
    """A module, an attribute of a module (``engine.context.build_context``), a model or model field
    (``audit.AuditLog``, ``conversations.Message.content``), or a Celery task name."""
    if module_exists(name):
        return True
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        if module_exists(module):
            if _has_chain(importlib.import_module(module), parts[i:]):
                return True
            break
    return _model_ok(parts) or _permission_ok(parts) or name in celery_task_names()


def _has_chain(obj, names: list[str]) -> bool:
    for part in names:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _model_ok(parts: list[str]) -> bool:
    if len(parts) not in (2, 3):
        return False
    try:
        model = apps.get_model(parts[0], parts[1])
    except (LookupError, ValueError):
        return False
    return len(parts) == 2 or hasattr(model, parts[2])


def _permission_ok(parts: list[str]) -> bool:
    """``app_label.codename`` of a model permission (``connections.change_connection``), from the models'
    Meta (default permissions and ``permissions``), as ``migrate`` creates them."""
    if len(parts) != 2 or parts[0] not in {c.label for c in apps.get_app_configs()}:
        return False
    codenames = set()
    for model in apps.get_app_config(parts[0]).get_models():
        meta = model._meta
        codenames |= {f"{action}_{meta.model_name}" for action in meta.default_permissions}
        codenames |= {codename for codename, _ in meta.permissions}
    return parts[1] in codenames


def code_variables() -> set[str]:
    """Every ``ARBOR_*``/``DJANGO_*`` name in the code, the Makefile and the Procfiles (not in the docs)."""
    names: set[str] = set()
    for path in _code_files():
        names |= set(VARIABLE.findall(path.read_text(encoding="utf-8", errors="replace")))
    return names


def _code_files():
    for directory, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not (Path(directory) == ROOT / "tests" and d == "docs")]
        for file in files:
            if file.endswith((".py", ".toml", ".txt", ".conf", ".cfg", ".ini", ".html")) or file == "Makefile" \
                    or file.startswith("Procfile") or Path(directory).name in (".ci", "scripts"):
                yield Path(directory) / file


def packages() -> set[str]:
    return {p.parent.name for p in ROOT.glob("*/__init__.py")}


def real_project() -> Project:
    return Project(
        root=ROOT,
        make_target=make_target_exists,
        manage_options=manage_options,
        bench_modules={p.stem[len("bench_"):] for p in (ROOT / "bench").glob("bench_*.py")},
        module_exists=module_exists,
        routes=api_routes(),
        repo_path_ok=repo_path_ok,
        dotted_ok=dotted_ok,
        variables=code_variables(),
        packages=packages(),
    )


def doc_files() -> list[Path]:
    """The README and every Markdown page under ``docs/``."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
