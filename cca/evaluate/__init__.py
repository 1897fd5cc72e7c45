"""Evaluation: GSM accuracy with paired bootstrap intervals, general abilities through lm-evaluation-harness, the results table and report."""
