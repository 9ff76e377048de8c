"""The training engine (``engine``, ``order``: shared by every trainer) and the probe trainer: training
loop, evaluation, run directories.

The package is callable: ``probes.train(cfg, run_dir, ...)`` is :func:`probes.train.loop.run` (the notebook
API's ``from probes import train``; a plain function of that name could not live beside this subpackage,
whose import would overwrite it).
"""

import sys as _sys
import types as _types
from typing import Any as _Any


class _TrainPackage(_types.ModuleType):
    def __call__(self, *args: _Any, **kwargs: _Any) -> _Any:
        from .loop import run

        return run(*args, **kwargs)


_sys.modules[__name__].__class__ = _TrainPackage
