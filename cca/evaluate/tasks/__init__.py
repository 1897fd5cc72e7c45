"""lm-eval task configs of the general-ability benchmarks (one YAML per task) and their Python pieces (utils)."""
