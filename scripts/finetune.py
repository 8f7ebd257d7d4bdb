"""Rule `finetune`: TRL SFT of one checkpoint x task x learning rate x seed."""

from pathlib import Path

from overtrained import finetune
from overtrained.entry import log_to, params_dict

log_to(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
smk = snakemake  # noqa: F821
finetune.run(
    base_dir=Path(smk.input.base).parent,
    train_jsonl=smk.input.train,
    out_model_dir=smk.output.model,
    out_train_json=smk.output.record,
    ft=smk.params.finetune,
    lr=smk.params.lr,
    seed=int(smk.wildcards.seed),
    params=params_dict(smk.params),
    threads=smk.threads,
)
