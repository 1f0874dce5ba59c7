"""The code's size figures, as the layout test counts the app code (``tests/test_layout.py``: every
app package, its migrations left out; no tests, benchmarks or scripts):

* lines per package (every line of its modules, blank and comment lines included) and each one's share;
* the largest modules (over ``--module-limit`` lines marked);
* the longest functions (decorators and docstring included, as the 60-line rule counts them);
* ORM lines in entry modules (views, api, admin; the layout test's own check).

Usage: ``python scripts/code_figures.py [--top N] [--module-limit LINES]`` (``make figures``). Reads
files only: no database, no Django setup.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_layout import (  # noqa: E402  (the repository root is on the path only from here)
    APPS,
    ENTRY_MODULES,
    MAX_FUNCTION_LINES,
    _functions,
    _orm_lines,
    _sources,
    _tree,
)


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8, help="how many modules and functions to list")
    parser.add_argument("--module-limit", type=int, default=500, help="mark modules over this many lines")
    args = parser.parse_args(argv)
    sources = _sources()
    per_module = {module: _lines(path) for module, path in sources.items()}
    per_package = Counter()
    for module, count in per_module.items():
        per_package[module.split(".")[0]] += count
    total = sum(per_package.values())
    print(f"App code: {total} lines in {len(per_module)} modules of {len(APPS)} packages "
          "(migrations, tests, bench and scripts not counted)")
    for package, count in per_package.most_common():
        print(f"  {package:<14} {count:>6} lines  {count / total:6.1%}")
    print(f"\nLargest modules (over {args.module_limit} lines marked *):")
    for module, count in sorted(per_module.items(), key=lambda item: -item[1])[: args.top]:
        mark = "*" if count > args.module_limit else " "
        print(f" {mark} {count:>5}  {sources[module].relative_to(ROOT)}")
    functions = [(node.end_lineno - node.lineno + 1, f"{path.relative_to(ROOT)}:{node.lineno} {name}")
                 for path in sources.values() for name, node in _functions(_tree(path))]
    print(f"\nLongest functions (the rule: at most {MAX_FUNCTION_LINES} lines):")
    for length, where in sorted(functions, reverse=True)[: args.top]:
        print(f"   {length:>5}  {where}")
    entry = [module for module in sources if set(module.split(".")[1:]) & set(ENTRY_MODULES)]
    orm = [f"{sources[m].relative_to(ROOT)}:{line}" for m in entry for line in _orm_lines(_tree(sources[m]))]
    print(f"\nORM lines in the {len(entry)} entry modules: {len(orm)}")
    for where in orm:
        print(f"   {where}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
