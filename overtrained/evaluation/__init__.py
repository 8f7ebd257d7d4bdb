"""Evaluation stages: lm-eval suites, loss probes, Gaussian sensitivity, judge."""
