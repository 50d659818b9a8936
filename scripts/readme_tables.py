"""Rewrite the README's tables that are made from campaign/results, after a ship.

    python scripts/readme_tables.py           # say which tables are stale (exit 1 if any)
    python scripts/readme_tables.py --write   # replace them in README.md

The tables: the weights table (``scripts/results_table.py``) and the rim / ``--mirror``
table (``scripts/rim_table.py``). Each is found by its header row and replaced whole;
``tests/test_bundled.py`` checks that the README has their rows.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"


def _rows(script: str) -> list[str]:
    spec = importlib.util.spec_from_file_location(script, HERE / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rows()


def replace(text: str, table: list[str]) -> str:
    """``text`` with the table whose header row is ``table[0]`` replaced by ``table``."""
    lines = text.split("\n")
    if lines.count(table[0]) != 1:
        raise SystemExit(f"README.md: expected one table headed {table[0]!r}, found {lines.count(table[0])}")
    start = end = lines.index(table[0])
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + table + lines[end:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="replace the stale tables in README.md")
    args = ap.parse_args()
    old = new = README.read_text()
    for script in ("results_table", "rim_table"):
        updated = replace(new, _rows(script))
        if updated != new:
            print(f"README.md: {script}'s table {'rewritten' if args.write else 'is stale'}")
        new = updated
    if args.write and new != old:
        README.write_text(new)
    return 0 if args.write or new == old else 1


if __name__ == "__main__":
    sys.exit(main())
