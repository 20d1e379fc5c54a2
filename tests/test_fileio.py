"""fileio: the one cache root (platformdirs, $PIANONOTES_CACHE first) that every cache folder is built on."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from pianonotes.fileio import cache_dir

PACKAGE = Path(__file__).resolve().parents[1] / "pianonotes"
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG layout is Linux's")


def _every_cache_folder() -> dict[str, Path]:
    """Each place that keeps something in the cache, and the cache root it assumes."""
    from pianonotes.datasets.msmd import default_root
    from pianonotes.datasets.synth.acoustics import room_bank_path
    from pianonotes.datasets.synth.pianos import pianos_dir
    from pianonotes.live.journal import takes_dir

    return {"takes": takes_dir().parent, "pianos": pianos_dir().parent, "rooms": room_bank_path().parent,
            "msmd": default_root().parent}


def test_pianonotes_cache_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PIANONOTES_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PIANONOTES_CACHE", "~/tilde")
    assert cache_dir() == tmp_path / "tilde"


@linux
def test_xdg_cache_home_is_respected(monkeypatch, tmp_path):
    monkeypatch.delenv("PIANONOTES_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "pianonotes"
    monkeypatch.setenv("PIANONOTES_CACHE", "")  # set but empty: as if unset
    assert cache_dir() == tmp_path / "xdg" / "pianonotes"


@linux
def test_linux_default_is_the_old_folder(monkeypatch, tmp_path):
    """~/.cache/pianonotes, where caches were kept before platformdirs: existing takes and pianos stay found."""
    monkeypatch.delenv("PIANONOTES_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "pianonotes"


def test_the_root_comes_from_platformdirs(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.delenv("PIANONOTES_CACHE", raising=False)
    calls = []

    def user_cache_dir(appname, appauthor=None, *args, **kwargs):
        calls.append((appname, appauthor))
        return str(tmp_path / "platform")

    monkeypatch.setattr(platformdirs, "user_cache_dir", user_cache_dir)
    assert cache_dir() == tmp_path / "platform"
    assert calls == [("pianonotes", False)]
    assert set(_every_cache_folder().values()) == {tmp_path / "platform"}


@pytest.mark.parametrize("env", ["PIANONOTES_CACHE", "XDG_CACHE_HOME", None])
def test_every_cache_folder_is_under_the_one_root(monkeypatch, tmp_path, env):
    monkeypatch.delenv("PIANONOTES_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if env is not None:
        monkeypatch.setenv(env, str(tmp_path / env))
    if env != "PIANONOTES_CACHE" and not sys.platform.startswith("linux"):
        pytest.skip("HOME and XDG_CACHE_HOME move the cache on Linux only")
    folders = _every_cache_folder()
    assert set(folders.values()) == {cache_dir()}, folders
    assert cache_dir().is_relative_to(tmp_path)


def test_no_module_finds_a_cache_folder_of_its_own():
    """Only fileio reads $PIANONOTES_CACHE / $XDG_CACHE_HOME or asks platformdirs; nothing spells ~/.cache."""
    own = re.compile(r"""["'](PIANONOTES_CACHE|XDG_CACHE_HOME|\.cache)["']|user_cache_dir|platformdirs|Path\.home\(\)""")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "fileio.py" and path.parent == PACKAGE:
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if own.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{i}: {line.strip()}")
    # a dataset's own feature cache (root/.cache) is the dataset's, not the user's
    found = [f for f in found if not f.startswith("datasets/recordings.py:")]
    assert found == []
