"""Rule `prefetch_suite`: fill the shared Hugging Face cache with a suite's lm-eval datasets."""

from overtrained.core import provenance
from overtrained.core.entry import log_to
from overtrained.evaluation import evaluate

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
provenance.write_json(smk.output[0], evaluate.prefetch(smk.params.datasets))
