"""Rewrite the documents' tables that are made from campaign/results, after a ship.

    python scripts/readme_tables.py           # say which tables are stale (exit 1 if any)
    python scripts/readme_tables.py --write   # replace them

The tables: the weights table in README.md (``scripts/results_table.py``) and the rim /
``--mirror`` table in docs/usage.md (``scripts/rim_table.py``). Each is found by its
header row and replaced whole; ``tests/test_bundled.py`` checks that the files have their rows.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
TABLES = {"results_table": README, "rim_table": HERE.parent / "docs" / "usage.md"}  # script -> the file it goes in


def _rows(script: str) -> list[str]:
    spec = importlib.util.spec_from_file_location(script, HERE / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rows()


def replace(text: str, table: list[str]) -> str:
    """``text`` with the table whose header row is ``table[0]`` replaced by ``table``."""
    lines = text.split("\n")
    if lines.count(table[0]) != 1:
        raise SystemExit(f"expected one table headed {table[0]!r}, found {lines.count(table[0])}")
    start = end = lines.index(table[0])
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + table + lines[end:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="replace the stale tables in README.md")
    args = ap.parse_args()
    stale = False
    for script, path in TABLES.items():
        old = path.read_text()
        new = replace(old, _rows(script))
        if new != old:
            stale = True
            print(f"{path.name}: {script}'s table {'rewritten' if args.write else 'is stale'}")
            if args.write:
                path.write_text(new)
    return 0 if args.write or not stale else 1


if __name__ == "__main__":
    sys.exit(main())
