"""Rule `prefetch_dataset`: fill the shared Hugging Face cache with one dataset task's splits."""

from overtrained import dataset_tasks, provenance
from overtrained.entry import log_to

log_to(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
smk = snakemake  # noqa: F821
provenance.write_json(smk.output[0], dataset_tasks.prefetch(smk.params.dataset))
