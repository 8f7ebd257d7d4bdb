"""Rule `analysis`: the LR chosen per checkpoint and the overtraining verdicts, from
results/tables/metrics.parquet (two Parquet tables; the verdicts also go to the log)."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

import pandas as pd

from overtrained.analysis import analysis
from overtrained.core import provenance
from overtrained.core.entry import log_to

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
metrics = pd.read_parquet(smk.input.metrics)
best = analysis.best_lr(metrics)
verdicts = analysis.overtraining(metrics, best)
metadata = {
    "config_hash": smk.params.config_hash,
    "metrics_sha256": provenance.sha256_file(smk.input.metrics),
    "code_version": provenance.code_version(),
    "versions": provenance.package_versions(),
    "created": provenance.now(),
}
analysis.write(
    best,
    smk.output.best_lr,
    analysis.BEST_LR_SCHEMA,
    {**metadata, "rule": analysis.SELECTION_RULE},
)
analysis.write(
    verdicts,
    smk.output.overtraining,
    analysis.OVERTRAINING_SCHEMA,
    {**metadata, "rule": analysis.VERDICT_RULE, "tolerance": analysis.TOLERANCE},
)
print(f"{len(best)} LR choices -> {smk.output.best_lr}")
print(f"{len(verdicts)} verdicts -> {smk.output.overtraining}")
print(analysis.summary(verdicts))
