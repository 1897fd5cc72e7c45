"""Stage 3: the targeted update (row deltas of the selected components), its w/o mask ablation, and the LoRA baseline."""
