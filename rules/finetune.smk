# Fine-tuning tasks and TRL SFT of every checkpoint x task x learning rate x seed.


rule prefetch_dataset:
    """Download a dataset task's splits into the shared Hugging Face cache (needs internet:
    a local rule, so on a cluster it runs on the login node)."""
    input:
        lambda w: W.dataset_local_files(config, w.task),
    output:
        f"{W.PATHS['dataset_task']}/prefetch.json",
    log:
        "logs/prefetch/{task}.log",
    wildcard_constraints:
        task=W.alternatives(W.dataset_task_names(config)),
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        dataset=lambda w: config["finetune"]["tasks"][w.task]["dataset"],
    script:
        "../scripts/prefetch_dataset.py"


rule dataset_task:
    """A dataset task's train/test JSONL, rendered offline from the cache."""
    input:
        rules.prefetch_dataset.output,
    output:
        train=f"{W.PATHS['dataset_task']}/train.jsonl",
        test=f"{W.PATHS['dataset_task']}/test.jsonl",
        meta=f"{W.PATHS['dataset_task']}/task.json",
    log:
        "logs/dataset_task/{task}.log",
    wildcard_constraints:
        task=W.alternatives(W.dataset_task_names(config)),
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=60,
    params:
        task=lambda w: config["finetune"]["tasks"][w.task],
        code=W.stage_code_hash("dataset_task"),
    script:
        "../scripts/dataset_task.py"


rule task_data:
    """A synthetic fine-tuning task of a pretrain family, in its corpus's language."""
    output:
        train=f"{W.PATHS['generated_task']}/train.jsonl",
        test=f"{W.PATHS['generated_task']}/test.jsonl",
        meta=f"{W.PATHS['generated_task']}/task.json",
    log:
        "logs/task_data/{family}/{task}.log",
    wildcard_constraints:
        task=W.alternatives(W.generated_task_names(config)),
        family=W.alternatives(W.family_names(config, "pretrain")),
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        task=lambda w: config["finetune"]["tasks"][w.task],
        corpus=lambda w: W.corpus_spec_fields(family_cfg(w)["corpus"]),
        code=W.stage_code_hash("task_data"),
    script:
        "../scripts/task_data.py"


# One fine-tuning run: a checkpoint x task x LR x seed.
FT_RUN = W.path("model", model="ft/{task}/lr{lr}/seed{seed}")


rule finetune:
    """TRL SFT of one checkpoint on one task at one LR and seed."""
    input:
        base=base_record,
        train=lambda w: f"{W.task_dir(config, w.family, w.task)}/train.jsonl",
    output:
        model=ft_weights(directory(f"{FT_RUN}/model")),
        record=f"{FT_RUN}/train.json",
    log:
        "logs/finetune/{family}/{ckpt}/{task}-lr{lr}-seed{seed}.log",
    benchmark:
        "logs/finetune/{family}/{ckpt}/{task}-lr{lr}-seed{seed}.benchmark.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["finetune"]["resources"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: config["finetune"]["resources"]["mem_mb"]
        * attempt,
        runtime=config["finetune"]["resources"]["runtime"],
        gpu=config["finetune"]["gpus"],
    params:
        finetune=W.finetune_hyperparameters(config),
        # CPU or GPU: with precision auto this is fp32 or bf16, which changes results.
        device="cuda" if config["finetune"]["gpus"] > 0 else "cpu",
        lr=lambda w: W.lr_value(config, w.task, w.lr),
        checkpoint=checkpoint_pin,
        code=W.stage_code_hash("finetune"),
    script:
        "../scripts/finetune.py"
