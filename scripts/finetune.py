"""Rule `finetune`: TRL SFT of one checkpoint x task x learning rate x seed.

Hyperparameters come from `params` (a change re-runs the job); execution settings such as
the GPU count and checkpoint interval come from the config (a change re-runs nothing).
"""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__, wait=True)  # (its own imports: 4-10 s)

from pathlib import Path

from overtrained import workflow
from overtrained.core import provenance
from overtrained.core.entry import log_to, params_dict
from overtrained.train import finetune

log_to(snakemake.log[0], append=True)  # (injected by Snakemake)
smk = snakemake
print(f"=== fine-tuning session started {provenance.now()} ===", flush=True)
settings = {**workflow.finetune_settings(smk.config), **smk.params.finetune}
spec = {
    "base_dir": str(Path(smk.input.base).parent),
    "train_jsonl": smk.input.train,
    "out_model_dir": smk.output.model,
    "out_train_json": smk.output.record,
    "ft": settings,
    "lr": smk.params.lr,
    "seed": int(smk.wildcards.seed),
    "params": params_dict(smk.params),
    "scratch_dir": workflow.scratch_dir(smk.config, smk.output.record),
    "threads": smk.threads,
    "loading": workflow.loading_options(smk.config, smk.wildcards.family),
}
finetune.launch(spec, processes=max(settings["gpus"], 1))
finetune.prune_empty_parents(spec["scratch_dir"], smk.config["finetune"]["scratch_dir"])
