"""medn: the science of the MEDN micro-expression recognition paper.

Data (annotation readers, preprocessing, the synthetic dataset), models, losses, the training of
one leave-one-subject-out fold and the metrics. This package imports neither Ray nor MLflow: the
``orchestrator`` package drives it.
"""

__version__ = "0.1.0"
