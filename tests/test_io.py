"""``medn.io``: atomic writes (all or nothing under the real name) and safe path names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medn.io import atomic_write, slug


def test_atomic_write_creates_folders_and_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "record.json"
    assert atomic_write(path, lambda f: json.dump({"x": 1}, f), text=True) == path
    assert json.loads(path.read_text()) == {"x": 1}
    atomic_write(path, lambda f: f.write(b'{"x": 2}'))
    assert json.loads(path.read_text()) == {"x": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    path.write_text("old")

    def half(handle) -> None:
        handle.write("half a fi")
        raise RuntimeError("disk went away")

    with pytest.raises(RuntimeError, match="disk went away"):
        atomic_write(path, half, text=True)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_slug_is_one_safe_path_component() -> None:
    assert slug("ablation-components/synth-3class") == "ablation-components__synth-3class"
    assert slug("127.0.0.1:5000") == "127.0.0.1__5000"
    assert slug("///") == "default"
