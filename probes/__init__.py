"""probes: synthetic retrieval diagnostics for Transformer and state-space language models.

The top-level folders of the repository map under this namespace (README "Layout"):
``probes.synthetic`` (generators), ``probes.analysis`` (metrics, reports, figures), ``probes.cli`` (the CLI).

The notebook API (README "Python API") is re-exported here: the task generators and their configs,
``RunConfig`` and its parts, ``train`` (one run into a run directory), ``load_run`` / ``load_runs`` (read run
directories back; ``load_run(path).to_dataframe()`` gives tidy rows). Names resolve lazily through the module
``__getattr__`` (PEP 562), so ``import probes`` (and ``probes --help``) imports neither torch nor pandas;
the first use of ``probes.train`` or ``probes.GroundingTask`` imports what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> (module, attribute); attribute None means the module itself
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "GroundingTask": ("probes.synthetic.grounding", "GroundingTask"),
    "GroundingConfig": ("probes.synthetic.grounding", "GroundingConfig"),
    "MQARTask": ("probes.synthetic.mqar", "MQARTask"),
    "MQARConfig": ("probes.synthetic.mqar", "MQARConfig"),
    "CopyingTask": ("probes.synthetic.copying", "CopyingTask"),
    "CopyingConfig": ("probes.synthetic.copying", "CopyingConfig"),
    "InductionTask": ("probes.synthetic.induction", "InductionTask"),
    "InductionConfig": ("probes.synthetic.induction", "InductionConfig"),
    "build_task": ("probes.synthetic.registry", "build_task"),
    "RunConfig": ("probes.train.config", "RunConfig"),
    "ModelSpec": ("probes.train.config", "ModelSpec"),
    "TaskSpec": ("probes.train.config", "TaskSpec"),
    "TrainConfig": ("probes.train.config", "TrainConfig"),
    # the subpackage probes.train, callable as probes.train.loop.run (see probes/train/__init__.py)
    "train": ("probes.train", None),
    "load_run": ("probes.analysis.rundir", "load_run"),
    "load_runs": ("probes.analysis.rundir", "load_runs"),
    "Run": ("probes.analysis.rundir", "Run"),
}
__all__ = [
    "CopyingConfig", "CopyingTask", "GroundingConfig", "GroundingTask", "InductionConfig", "InductionTask",
    "MQARConfig", "MQARTask", "ModelSpec", "Run", "RunConfig", "TaskSpec", "TrainConfig", "build_task",
    "load_run", "load_runs", "train",
]  # fmt: skip

if TYPE_CHECKING:  # static tools see the real objects
    from probes.analysis.rundir import Run, load_run, load_runs
    from probes.synthetic.copying import CopyingConfig, CopyingTask
    from probes.synthetic.grounding import GroundingConfig, GroundingTask
    from probes.synthetic.induction import InductionConfig, InductionTask
    from probes.synthetic.mqar import MQARConfig, MQARTask
    from probes.synthetic.registry import build_task
    from probes.train.config import ModelSpec, RunConfig, TaskSpec, TrainConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    module_name, attr = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
