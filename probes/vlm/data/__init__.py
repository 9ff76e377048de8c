"""VLM data: real-format loaders and the offline synthetic image world."""
