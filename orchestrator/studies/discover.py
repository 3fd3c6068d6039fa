"""Finding study specs: the project's shipped ``studies/`` folder and ``./studies`` of the
current directory (a user adds a study by dropping a YAML file there)."""

from __future__ import annotations

import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from orchestrator.studies.spec import StudySpec, StudySpecError, load_spec

# The shipped specs live once, in the repository's studies/ folder; a wheel installs them as
# data files under <prefix>/share/medn/studies (pyproject: [tool.setuptools.data-files]).
_REPO_STUDIES = Path(__file__).resolve().parents[2] / "studies"
_INSTALLED_STUDIES = Path("share") / "medn" / "studies"


def builtin_studies_dir() -> Path | None:
    """The folder of the studies shipped with medn (source checkout or installed wheel)."""
    candidates = [_REPO_STUDIES, Path(sysconfig.get_path("data")) / _INSTALLED_STUDIES,
                  Path(sys.prefix) / _INSTALLED_STUDIES]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.yaml")):
            return folder
    return None


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
    if local.is_dir() and (builtin is None or local.resolve() != builtin.resolve()):
        dirs.append(("local", local))
    return dirs


def discover_studies(cwd: Path | None = None,
                     check_model: bool = False) -> dict[str, StudyEntry]:
    """Every study spec found, by name; a local file replaces a shipped one of the same name.

    Invalid files are returned with their error instead of raising, so one bad file does not
    hide the others. ``check_model`` also builds-checks each variant's model (imports torch).
    """
    entries: dict[str, StudyEntry] = {}
    for origin, folder in study_dirs(cwd):
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            try:
                entry = StudyEntry(path.stem, path, origin, spec=load_spec(path, check_model))
            except StudySpecError as err:
                entry = StudyEntry(path.stem, path, origin, error=str(err))
            entries[path.stem] = entry
    return dict(sorted(entries.items()))


def find_study(name: str, cwd: Path | None = None, check_model: bool = True) -> StudySpec:
    """The spec named ``name``; an error lists the known studies or says why it is invalid.

    ``check_model`` also checks that every variant's model can be built (imports torch)."""
    entries = discover_studies(cwd)
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(entries) or "none"
        folders = ", ".join(str(p) for _, p in study_dirs(cwd)) or "no studies folder"
        raise StudySpecError(f"no study named {name!r} (known: {known}; searched {folders})")
    if entry.spec is None:
        raise StudySpecError(entry.error or f"{entry.path}: invalid study spec")
    return load_spec(entry.path, check_model=True) if check_model else entry.spec
