"""Constructive Circuit Amplification (arXiv 2512.16914) as a cached, reproducible workflow."""

__version__ = "0.1.0"
