"""Rule `theory`: the two-layer linear network experiment (overtrained/theory.py)."""

from overtrained import theory
from overtrained.entry import log_to

log_to(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
smk = snakemake  # noqa: F821
theory.write_all(smk.params.theory, smk.output)
