"""Rule `task_data`: train/test JSONL of one miniature fine-tuning task."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from pathlib import Path

from overtrained.core import provenance
from overtrained.core.entry import log_to
from overtrained.data import corpus, task_data

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
task = smk.params.task
spec = corpus.CorpusSpec.from_dict(smk.params.corpus)
meta = task_data.write_task(
    Path(smk.output.train).parent, task["kind"], spec, task["n_train"], task["n_test"], task["seed"]
)
provenance.write_json(smk.output.meta, {**meta, "code": smk.params.code})
