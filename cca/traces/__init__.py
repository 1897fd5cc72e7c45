"""Stage 1a: generation backends (vLLM, Hugging Face) and the greedy and opposite-correctness traces."""
