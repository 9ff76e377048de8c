"""The file names of a run directory, in one place for the writers (trainers, launchers, trackers) and the
readers (``probes.analysis``, ``probes status``). No imports: analysis may use it without the trainer.

The schema of each file is in docs/CONTRACTS.md ("Run directory").
"""

CONFIG = "config.json"
MANIFEST = "manifest.json"
ENV = "env.json"
METRICS = "metrics.jsonl"
MATRIX = "per_position.safetensors"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint"
CHECKPOINT_OLD = "checkpoint.old"
STATE = "state.json"  # inside a checkpoint folder
LOCK_FILE = ".writer.lock"
TRACKING = "tracking"  # trackers' files (--report-to)
WORKER_LOG = "worker.log"  # the tail of a launcher worker's output
