"""Study specs (``studies/*.yaml``): validation, discovery, variants, and the study options."""

from orchestrator.studies.discover import StudyEntry, discover_studies, find_study, study_entry
from orchestrator.studies.expand import (
    expand_variants,
    study_configs,
    sweep_curves,
    variant_config,
)
from orchestrator.studies.options import StudyOptions, StudyOptionsError
from orchestrator.studies.spec import (
    SearchSpec,
    StudySpec,
    StudySpecError,
    Variant,
    experiment_name,
    load_spec,
    parse_spec,
    trial_variant,
)

__all__ = [
    "SearchSpec",
    "StudyEntry",
    "StudyOptions",
    "StudyOptionsError",
    "StudySpec",
    "StudySpecError",
    "Variant",
    "discover_studies",
    "expand_variants",
    "experiment_name",
    "find_study",
    "load_spec",
    "parse_spec",
    "study_configs",
    "study_entry",
    "sweep_curves",
    "trial_variant",
    "variant_config",
]
