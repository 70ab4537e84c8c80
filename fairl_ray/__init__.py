"""fairl-ray: recover the hidden reward of an RLHF-aligned LLM with (failure-aware) inverse RL.

Layout (the pipeline, in order):

* ``worlds/``        where prompts, the base policy and the ground-truth reward R* come from
* ``stages/``        one module per pipeline stage (RLHF, generation, pairs, features, IRL, evaluation, re-RLHF)
* ``irl/``           the IRL engine: losses, failure sets, schedules, batched trainer, reward artifact
* ``metrics/``       classification, STARC and correlation metrics (FA-IRL §5, Appendix C)
* ``orchestration/`` Ray execution, content-addressed stage cache, MLflow tracking
* ``config.py``      typed configuration loaded from YAML with ``key=value`` overrides
* ``cli.py``         the ``fairl`` command
"""

__version__ = "0.1.0"
