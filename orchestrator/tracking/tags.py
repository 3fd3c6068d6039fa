"""The names of the tags medn puts on MLflow experiments and runs (one place for each)."""

from __future__ import annotations

from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_RUN_NOTE

TAG_ROLE = "medn.role"
TAG_VARIANT = "medn.variant"
TAG_STUDY = "medn.study"
TAG_DATASET = "medn.dataset"
TAG_TASK = "medn.task"
TAG_FOLD = "medn.fold"
TAG_DATASET_DIGEST = "medn.dataset_digest"
TAG_CONFIG_DIGEST = "medn.config_digest"
TAG_PROFILE = "medn.profile"
TAG_INCOMPLETE = "medn.incomplete"
TAG_ERROR = "medn.error"
TAG_ATTEMPT = "medn.attempt"
TAG_DEVICE = "medn.device"
TAG_PRUNED = "medn.pruned"
TAG_DEVIATIONS = "medn.deviations"
TAG_MISSING_CLIPS = "medn.missing_clips"
TAG_SEED = "medn.seed"
TAG_DUPLICATE_OF = "medn.duplicate_of"
TAG_DESCRIPTION = MLFLOW_RUN_NOTE
ROLE_PARENT = "parent"
ROLE_FOLD = "fold"

# MLflow 3 opens an experiment on its GenAI overview unless it is marked as classic ML.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

# Tags a child inherits from its parent, so that every run carries them (a partial dataset's
# missing-clips count included: a partial result is never mistaken for a complete one; the
# non-paper switches too: a fold run alone says whether it is the paper's setting).
INHERITED_TAGS = (TAG_VARIANT, TAG_STUDY, TAG_DATASET, TAG_TASK, TAG_DATASET_DIGEST,
                  TAG_CONFIG_DIGEST, TAG_PROFILE, TAG_DEVIATIONS, TAG_MISSING_CLIPS, TAG_SEED,
                  MLFLOW_GIT_COMMIT)
