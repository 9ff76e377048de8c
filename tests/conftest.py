"""Shared test settings: few threads (CI has 2 cores), offline hub, quiet transformers."""

import os
import sys
from pathlib import Path

# test helper modules (probes_cli, analysis_fixtures) import by name under --import-mode=importlib
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# under pytest-xdist each worker gets one thread, so two workers fill the two CI cores without oversubscription
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))
