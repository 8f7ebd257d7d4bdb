"""Rule `theory`: the two-layer linear network experiment (overtrained/analysis/theory.py)."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from overtrained.analysis import theory
from overtrained.core.entry import log_to

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
theory.write_all(smk.params.theory, smk.output)
