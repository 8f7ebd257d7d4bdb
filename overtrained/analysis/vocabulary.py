"""The words of metrics.parquet that more than one reader needs (analysis, claims, figures):
one definition each. Import-light: the Snakefile reads the figures module."""

# The `suite` values that are not lm-eval suites: loss probes, training and pre-training
# records, the perturbation probe, corpus records and the judge.
NOT_LM_EVAL_SUITES = ("probes", "train", "pretrain", "sensitivity", "corpus", "judge")

# Which way is better, by metric name (an lm-eval filter suffix, as in exact_match[strict],
# is read by its base name): losses fall, accuracies rise.
LOWER_IS_BETTER = ("pretrain_loss", "id_loss")
ACCURACIES = ("acc", "acc_norm", "exact_match")  # higher is better
