"""Rule `dataset_task`: train/test JSONL of one dataset task, rendered offline from the cache."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from pathlib import Path

from overtrained.core import jsonio, provenance
from overtrained.core.entry import log_to, params_dict
from overtrained.data import dataset_task

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
task = smk.params.task
train, test, meta = dataset_task.build(
    task["dataset"], task["n_train"], task["n_test"], task["seed"], offline=True
)
sha = {
    name: jsonio.write_jsonl(Path(smk.output[name]), rows)
    for name, rows in (("train", train), ("test", test))
}
provenance.write_json(
    smk.output.meta,
    {
        **meta,
        "kind": "dataset",
        "n_train": len(train),
        "n_test": len(test),
        "seed": task["seed"],
        "sha256": sha,
        "prefetch": jsonio.read_json(smk.input[0]),
        "params": params_dict(smk.params),
    },
)
