"""The pipeline: each stage a library function with a typed config, typed outputs and a typed
run-log section; :func:`run_pipeline` runs a spec's stages in order, resumably.

Stages and the modules that hold them:

========== ============================== =========================================
kind        module                         function
========== ============================== =========================================
prompts     judge_rl.pipeline.task         :func:`~judge_rl.pipeline.task.make_prompts`
generate    judge_rl.pipeline.generate     :func:`~judge_rl.pipeline.generate.generate`
label       judge_rl.pipeline.label        :func:`~judge_rl.pipeline.label.label`
audit       judge_rl.pipeline.audit        :func:`~judge_rl.pipeline.audit.audit`
train_rm    judge_rl.pipeline.train_rm     :func:`~judge_rl.pipeline.train_rm.train_rm`
ppo         judge_rl.pipeline.ppo          :func:`~judge_rl.pipeline.ppo.run_ppo`
tournament  judge_rl.pipeline.tournament   :func:`~judge_rl.pipeline.tournament.tournament`
report      judge_rl.pipeline.report       :func:`~judge_rl.pipeline.report.claims`
========== ============================== =========================================

Nothing here parses arguments, prints or exits: ``judge_rl.commands.run`` does that.
"""

from __future__ import annotations

from typing import Any

__all__ = ["read_pipeline", "run_pipeline", "validate"]


def __getattr__(name: str) -> Any:  # lazy: `judge-rl --help` imports no stage
    if name in ("run_pipeline", "validate"):
        from judge_rl.pipeline import runner

        return getattr(runner, name)
    if name == "read_pipeline":
        from judge_rl.pipeline.spec import read_pipeline

        return read_pipeline
    raise AttributeError(f"module 'judge_rl.pipeline' has no attribute {name!r}")
