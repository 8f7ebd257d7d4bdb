"""Rule `aggregate`: every JSON result into results/tables/metrics.parquet."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from overtrained.analysis import aggregate
from overtrained.core import provenance
from overtrained.core.entry import log_to

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
rows = aggregate.collect(
    evaluations=list(smk.input.evaluations),
    trainings=list(smk.input.trainings),
    sensitivity=list(smk.input.sensitivity),
    checkpoints=list(smk.input.checkpoints),
    corpora=list(smk.input.corpora),
)
aggregate.write_parquet(
    rows,
    smk.output.metrics,
    metadata={
        "config_hash": smk.params.config_hash,
        "code_version": provenance.code_version(),
        "versions": provenance.package_versions(),
        "created": provenance.now(),
    },
)
print(f"{len(rows)} rows -> {smk.output.metrics}")
