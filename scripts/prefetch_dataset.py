"""Rule `prefetch_dataset`: fill the shared Hugging Face cache with one dataset task's splits."""

from overtrained.core import provenance
from overtrained.core.entry import log_to
from overtrained.data import dataset_task

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
provenance.write_json(smk.output[0], dataset_task.prefetch(smk.params.dataset))
