"""Rule `theory`: the two-layer linear network experiment (overtrained/theory.py)."""

from overtrained.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # noqa: F821 (injected by Snakemake)

from overtrained import theory
from overtrained.entry import log_to

log_to(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
smk = snakemake  # noqa: F821
theory.write_all(smk.params.theory, smk.output)
