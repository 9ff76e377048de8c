"""VLM evaluation: batched greedy decoding and benchmark metrics."""
