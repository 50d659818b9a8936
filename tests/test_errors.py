"""One error family: every domain error is a SeemoreError, every remedy has a hint, and the
command line reports those in one line while a bug keeps its traceback."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

from seemore_sr import cli
from seemore_sr.errors import SeemoreError

PKG = Path(__file__).resolve().parents[1] / "src" / "seemore_sr"
MODULES = sorted(
    ".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
    for p in PKG.rglob("*.py")
    if p.name != "__main__.py"
)


def test_every_domain_error_is_a_seemore_error():
    found = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as e:  # an optional extra missing here
            pytest.skip(f"{name}: {e}")
        for cls_name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == name:
                if cls_name.startswith("_") or issubclass(cls, Warning):
                    continue  # private control flow, and warnings (PrecisionFallback)
                found.append(cls)
    assert len(found) >= 10
    stray = [c.__qualname__ for c in found if not issubclass(c, SeemoreError)]
    assert not stray, f"errors outside the family: {stray}"


def test_every_remedy_has_a_hint():
    text = "\n".join(p.read_text() for p in PKG.rglob("*.py"))
    remedies = set(re.findall(r'remedy="([a-z_]+)"', text)) | set(re.findall(r'Refused\([^()]*, "([a-z_]+)"\)', text))
    assert {"max_pixels", "fmt", "video_codec", "outscale", "tile"} <= remedies  # the scan finds them
    assert not remedies - set(cli._HINTS), f"remedies without a hint: {remedies - set(cli._HINTS)}"


def test_the_cli_words_our_errors_and_leaves_bugs_their_traceback(monkeypatch, capsys):
    from seemore_sr.errors import UsageError

    def usage(args):
        raise UsageError("two things that do not go together")

    def bug(args):
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "cmd_plot", usage)
    parser = cli.build_parser

    def patched():
        p = parser()
        for action in p._subparsers._group_actions:
            action.choices["plot"].set_defaults(func=current[0])
        return p

    current = [usage]
    monkeypatch.setattr(cli, "build_parser", patched)
    assert cli.main(["plot", "somewhere"]) == 2
    assert "seemore plot: error: two things that do not go together" in capsys.readouterr().err
    current[0] = bug
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["plot", "somewhere"])
