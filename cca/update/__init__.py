"""Stage 3: the targeted update (row deltas of the selected components), its w/o mask ablation, the controls (a
random mask, the body-only update) and the LoRA baseline."""
