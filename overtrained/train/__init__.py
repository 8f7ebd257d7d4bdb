"""Training stages: pre-training and TRL fine-tuning."""
