"""Finding study specs: the project's shipped ``studies/`` folder and ``./studies`` of the
current directory (a user adds a study by dropping a YAML file there).

Discovery only lists file names; a spec is read when its study is used (``load_entry``), and
whatever is wrong with one file (not UTF-8, a directory, a symlink loop, YAML aliases, too many
variants) stays with that entry: it never breaks a command that does not use it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from orchestrator.studies.spec import StudySpec, StudySpecError, load_spec

# The shipped specs live once, in the repository's studies/ folder; a wheel installs them as
# data files under <prefix>/share/medn/studies (pyproject: [tool.setuptools.data-files]).
_REPO_STUDIES = Path(__file__).resolve().parents[2] / "studies"
_INSTALLED_STUDIES = Path("share") / "medn" / "studies"
SUFFIXES = (".yaml", ".yml")


def builtin_studies_dir() -> Path | None:
    """The folder of the studies shipped with medn (source checkout or installed wheel)."""
    candidates = [_REPO_STUDIES, Path(sysconfig.get_path("data")) / _INSTALLED_STUDIES,
                  Path(sys.prefix) / _INSTALLED_STUDIES]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.yaml")):
            return folder
    return None


@dataclass(frozen=True)
class StudyFile:
    """One spec file found, not yet read."""

    name: str
    path: Path
    origin: str  # "builtin" or "local"


@dataclass(frozen=True)
class StudyEntry:
    """One discovered spec file: the spec, or the reason it is invalid."""

    name: str
    path: Path
    origin: str  # "builtin" or "local"
    spec: StudySpec | None = None
    error: str | None = None

    @property
    def valid(self) -> bool:
        """Whether the file is a usable spec."""
        return self.spec is not None


def study_dirs(cwd: Path | None = None) -> list[tuple[str, Path]]:
    """The folders searched, lowest precedence first: shipped, then ``./studies``."""
    dirs: list[tuple[str, Path]] = []
    builtin = builtin_studies_dir()
    if builtin is not None:
        dirs.append(("builtin", builtin))
    local = (cwd or Path.cwd()) / "studies"
    try:
        if local.is_dir() and (builtin is None or local.resolve() != builtin.resolve()):
            dirs.append(("local", local))
    except (OSError, RuntimeError):  # ./studies itself is a symlink loop: nothing local
        pass
    return dirs


def study_files(cwd: Path | None = None) -> dict[str, StudyFile]:
    """Every spec file by study name (a local file replaces a shipped one), without reading any.

    Only names are listed: an unreadable entry is still returned, and fails when loaded."""
    files: dict[str, StudyFile] = {}
    for origin, folder in study_dirs(cwd):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        for name in names:
            stem, suffix = os.path.splitext(name)
            if suffix in SUFFIXES and stem and stem.isprintable():
                files[stem] = StudyFile(stem, folder / name, origin)
    return dict(sorted(files.items()))


@lru_cache(maxsize=256)
def _load_cached(path: Path, mtime_ns: int, check_model: bool) -> StudySpec:
    del mtime_ns  # part of the cache key: an edited file is read again
    return load_spec(path, check_model)


def load_entry(file: StudyFile, check_model: bool = False) -> StudyEntry:
    """Read one spec file; any problem is returned as the entry's error, never raised."""
    try:
        try:
            mtime = file.path.stat().st_mtime_ns
        except OSError:
            mtime = 0
        spec = _load_cached(file.path, mtime, check_model)
        return StudyEntry(file.name, file.path, file.origin, spec=spec)
    except StudySpecError as err:
        return StudyEntry(file.name, file.path, file.origin, error=str(err))
    except (OSError, RecursionError, MemoryError, ValueError) as err:
        return StudyEntry(file.name, file.path, file.origin,
                          error=f"{file.path}: cannot be read ({type(err).__name__}: {err})")


def discover_studies(cwd: Path | None = None,
                     check_model: bool = False) -> dict[str, StudyEntry]:
    """Every study spec found, by name, each read (``load_entry``); invalid files are returned
    with their error, so one bad file does not hide the others. ``check_model`` also checks
    that each variant's model can be built (imports torch)."""
    return {name: load_entry(file, check_model) for name, file in study_files(cwd).items()}


def study_entry(name: str, cwd: Path | None = None,
                check_model: bool = False) -> StudyEntry | None:
    """The one spec file named ``name``, read (None if there is none): readers that need one
    study's spec read only its file, so a bad or huge spec elsewhere cannot slow or stop them."""
    file = study_files(cwd).get(name)
    return load_entry(file, check_model) if file is not None else None


def find_study(name: str, cwd: Path | None = None, check_model: bool = True) -> StudySpec:
    """The spec named ``name``; an error lists the known studies or says why it is invalid.

    ``check_model`` also checks that every variant's model can be built (imports torch)."""
    files = study_files(cwd)
    file = files.get(name)
    if file is None:
        known = ", ".join(files) or "none"
        folders = ", ".join(str(p) for _, p in study_dirs(cwd)) or "no studies folder"
        raise StudySpecError(f"no study named {name!r} (known: {known}; searched {folders})")
    entry = load_entry(file, check_model)
    if entry.spec is None:
        raise StudySpecError(entry.error or f"{file.path}: invalid study spec")
    return entry.spec
