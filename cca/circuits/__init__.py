"""Stage 2: DCM masks over attention heads and MLP neurons: gates, training, mask files, figures."""
