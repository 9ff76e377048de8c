"""Task instructions shared by the synthetic world, training data and evaluation prompts.

The instruction is the task description; the prompt is the per-sample input (a referring expression, a
question). Captioning has no per-sample prompt: its instruction is the whole prompt.
"""

from __future__ import annotations

INSTRUCTIONS: dict[str, str] = {
    "caption": "Describe the image briefly.",
    "grounding": "Give the bounding box of the region this sentence describes.",
    "vqa": "Answer the question using a single word or number.",
}
