"""Models: the architecture table, the registry and preparation of checkpoints, tiny test models, the component map, the shared-prefix forward, and the memory arithmetic of each model."""
