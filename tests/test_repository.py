"""The repository is the product: no file over 5 MB, no training state outside the allowlist."""

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 5 * 2**20
# Pickled training states that may be tracked, and why. Runs in progress are never committed:
# a run is planned to finish within a session, and one cut off keeps at most its weights.
ALLOWED_STATES = {
    "campaign/trunk/state.pt": "the long x2 trunk's resumable state (4 MB), replaced only when the trunk moves on",
}


def tracked() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_tracked_file_is_over_5_mb():
    big = [(p, (ROOT / p).stat().st_size) for p in tracked() if (ROOT / p).is_file()]
    big = [f"{p} ({n / 2**20:.1f} MB)" for p, n in big if n > MAX_BYTES]
    assert not big, f"tracked files over 5 MB: {big}"


def test_no_training_state_outside_the_allowlist():
    states = [p for p in tracked() if p.endswith((".pt", ".pth", ".ckpt"))]
    stray = sorted(set(states) - set(ALLOWED_STATES))
    assert not stray, f"training states tracked outside the allowlist (tests/test_repository.py): {stray}"


DATA = {"SHARED", "GOLDEN", "BENCH"}  # conftest's paths into ../shared


def _names(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _marked_shared(fn: ast.FunctionDef) -> bool:
    return any("shared" in _names(d) and "mark" in _names(d) for d in fn.decorator_list)


def unmarked_data_readers(source: str) -> list[str]:
    """Test functions in ``source`` that reach the shared data (by name, through the module's
    constants, helpers and fixtures) without the ``shared`` marker."""
    tree = ast.parse(source)
    reads = set(DATA)
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    for _ in range(3):  # constants made from constants, helpers calling helpers
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and _names(node.value) & reads:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                reads |= {t.id for t in targets if isinstance(t, ast.Name)}
        for name, fn in defs.items():
            uses = _names(fn) | {a.arg for a in fn.args.args}
            if not name.startswith("test_") and uses & reads:
                reads.add(name)
    return [
        name
        for name, fn in defs.items()
        if name.startswith("test_")
        and ((_names(fn) | {a.arg for a in fn.args.args}) & reads)
        and not _marked_shared(fn)
    ]


def test_tests_that_read_the_shared_data_say_so():
    """Without ../shared the tests marked ``shared`` are skipped (conftest); one that reads it
    unmarked would fail there instead, so every reader must carry the marker."""
    missing = {
        p.name: found
        for p in sorted((ROOT / "tests").glob("test_*.py"))
        if (found := unmarked_data_readers(p.read_text()))
    }
    assert not missing, f"tests reading ../shared without @pytest.mark.shared: {missing}"


def test_the_marker_check_sees_a_reader_through_a_helper():
    source = (
        "from .conftest import BENCH\nSET = BENCH / 'x'\ndef helper():\n    return SET\n"
        "def test_a():\n    helper()\n@pytest.mark.shared\ndef test_b():\n    helper()\ndef test_c():\n    pass\n"
    )
    assert unmarked_data_readers(source) == ["test_a"]
