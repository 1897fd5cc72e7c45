"""Tasks: the few-shot prompt, answer extraction, and the per-seed train/val/test splits."""
