"""The small Pythia-VL vs Mamba-VL study on the offline synthetic world (``probes vlm study``).

Library side only: the world, the blind prior, training and evaluation of every backbone × order × seed,
each a resumable stage recorded in ``study.json``. The report (bootstrap CIs, the gap table, the gains
figure, the study README) is drawn by ``probes.analysis.vlm_study`` from the files written here; the CLI
(``cli/vlm_study.py``) calls it, so the library never imports ``probes.analysis``.

Modules: :mod:`.config` (options and their checks), :mod:`.layout` (directories, resume/overwrite rules),
:mod:`.prior` (the text-only reference), :mod:`.stages` (the plan), :mod:`.driver` (running it).
"""

from .config import StudyConfig
from .driver import OpenStudy, open_study, run_study

__all__ = ["OpenStudy", "StudyConfig", "open_study", "run_study"]
