"""Evaluation: baselines, full-catalog ranking metrics, bootstrap intervals, reports."""
