"""Data stages: the synthetic corpus, fine-tuning tasks, retention text."""
