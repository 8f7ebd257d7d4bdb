# Fine-tuning tasks and TRL SFT of every checkpoint x task x learning rate x seed.


rule task_data:
    output:
        train=f"{W.RESULTS}/{{family}}/tasks/{{task}}/train.jsonl",
        test=f"{W.RESULTS}/{{family}}/tasks/{{task}}/test.jsonl",
        meta=f"{W.RESULTS}/{{family}}/tasks/{{task}}/task.json",
    log:
        "logs/task_data/{family}/{task}.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        task=lambda w: config["finetune"]["tasks"][w.task],
        corpus=lambda w: W.corpus_spec_fields(family_cfg(w)["corpus"]),
        code=W.stage_code_hash("tasks"),
    script:
        "../scripts/task_data.py"


rule finetune:
    input:
        base=rules.pretrain.output.model,
        base_record=rules.pretrain.output.record,
        train=rules.task_data.output.train,
    output:
        model=ft_weights(
            directory(
                f"{W.RESULTS}/{{family}}/{{ckpt}}/ft/{{task}}/lr{{lr}}/seed{{seed}}/model"
            )
        ),
        record=f"{W.RESULTS}/{{family}}/{{ckpt}}/ft/{{task}}/lr{{lr}}/seed{{seed}}/train.json",
    log:
        "logs/finetune/{family}/{ckpt}/{task}-lr{lr}-seed{seed}.log",
    benchmark:
        "logs/finetune/{family}/{ckpt}/{task}-lr{lr}-seed{seed}.benchmark.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=60,
    params:
        finetune=W.finetune_hyperparameters(config),
        lr=lambda w: W.lr_value(config, w.task, w.lr),
        code=W.stage_code_hash("finetune"),
    script:
        "../scripts/finetune.py"
