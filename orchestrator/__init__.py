"""orchestrator: studies, Ray Tune execution, MLflow logging, reports and the ``medn`` CLI.

It drives the science in ``medn``; ``medn`` never imports this package.
"""
