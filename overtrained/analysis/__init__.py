"""From records to answers: the metrics table, LR tuning, claims, figures, theory."""
