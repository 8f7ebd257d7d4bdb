# Evaluation of base and fine-tuned models (lm-eval suites and loss probes), and the
# Gaussian perturbation probe of base checkpoints.


rule evaluate:
    input:
        unpack(model_files),
        tests=lambda w: list(mini_test_files(w).values()),
    output:
        f"{W.RESULTS}/{{family}}/{{ckpt}}/{{model}}/eval/{{suite}}.json",
    log:
        "logs/evaluate/{family}/{ckpt}/{model}/{suite}.log",
    benchmark:
        "logs/evaluate/{family}/{ckpt}/{model}/{suite}.benchmark.tsv"
    wildcard_constraints:
        suite="|".join(config["evaluate"]["suites"]) or "(?!)",
    conda:
        "../envs/eval.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=60,
    params:
        model_dir=model_dir,
        mini_test_files=mini_test_files,
        suite=lambda w: config["evaluate"]["suites"][w.suite],
        code=W.stage_code_hash("evaluate"),
    script:
        "../scripts/evaluate.py"


rule probes:
    input:
        unpack(model_files),
        heldout=lambda w: f"{corpus_dir(w.family)}/heldout.npy",
        tests=lambda w: list(task_test_files(w).values()),
    output:
        f"{W.RESULTS}/{{family}}/{{ckpt}}/{{model}}/eval/{W.PROBES}.json",
    log:
        "logs/probes/{family}/{ckpt}/{model}.log",
    benchmark:
        "logs/probes/{family}/{ckpt}/{model}.benchmark.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=30,
    params:
        model_dir=model_dir,
        task_test_files=task_test_files,
        retention_tokens=config["evaluate"]["retention_tokens"],
        max_length=config["finetune"]["max_length"],
        code=W.stage_code_hash("probes"),
    script:
        "../scripts/probes.py"


rule sensitivity:
    input:
        model=rules.pretrain.output.model,
        heldout=lambda w: f"{corpus_dir(w.family)}/heldout.npy",
    output:
        f"{W.RESULTS}/{{family}}/{{ckpt}}/sensitivity.json",
    log:
        "logs/sensitivity/{family}/{ckpt}.log",
    benchmark:
        "logs/sensitivity/{family}/{ckpt}.benchmark.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=30,
    params:
        sensitivity=config["sensitivity"],
        retention_tokens=config["evaluate"]["retention_tokens"],
        code=W.stage_code_hash("sensitivity"),
    script:
        "../scripts/sensitivity.py"
