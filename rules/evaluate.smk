# Evaluation of base and fine-tuned models (lm-eval suites and loss probes), and the
# Gaussian perturbation probe of base checkpoints.


def mini_test_files(wildcards):
    """Held-out split of the fine-tuning task behind each mini_<kind> lm-eval task."""
    suite = config["evaluate"]["suites"][wildcards.suite]
    by_kind = {t["kind"]: name for name, t in config["finetune"]["tasks"].items()}
    return {
        name: f"{W.RESULTS}/{wildcards.family}/tasks/{by_kind[name[5:]]}/test.jsonl"
        for name in suite["tasks"]
        if name.startswith("mini_")
    }


rule evaluate:
    input:
        unpack(model_files),
        tests=lambda w: list(mini_test_files(w).values()),
    output:
        f"{W.RESULTS}/{{family}}/{{ckpt}}/{{model}}/eval/{{suite}}.json",
    wildcard_constraints:
        suite="|".join(config["evaluate"]["suites"]) or "(?!)",
    params:
        model_dir=model_dir,
        suite=lambda w: config["evaluate"]["suites"][w.suite],
        code=W.stage_code_hash("evaluate"),
    log:
        "logs/evaluate/{family}/{ckpt}/{model}/{suite}.log",
    benchmark:
        "logs/evaluate/{family}/{ckpt}/{model}/{suite}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../envs/eval.yaml"
    script:
        "../scripts/evaluate.py"


rule probes:
    input:
        unpack(model_files),
        heldout=lambda w: f"{corpus_dir(w.family)}/heldout.npy",
        tests=lambda w: list(task_test_files(w).values()),
    output:
        f"{W.RESULTS}/{{family}}/{{ckpt}}/{{model}}/eval/{W.PROBES}.json",
    params:
        model_dir=model_dir,
        retention_tokens=config["evaluate"]["retention_tokens"],
        max_length=config["finetune"]["max_length"],
        code=W.stage_code_hash("probes"),
    log:
        "logs/probes/{family}/{ckpt}/{model}.log",
    benchmark:
        "logs/probes/{family}/{ckpt}/{model}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/probes.py"


rule sensitivity:
    input:
        model=rules.pretrain.output.model,
        heldout=lambda w: f"{corpus_dir(w.family)}/heldout.npy",
    output:
        f"{W.RESULTS}/{{family}}/{{ckpt}}/sensitivity.json",
    params:
        sensitivity=config["sensitivity"],
        retention_tokens=config["evaluate"]["retention_tokens"],
        code=W.stage_code_hash("sensitivity"),
    log:
        "logs/sensitivity/{family}/{ckpt}.log",
    benchmark:
        "logs/sensitivity/{family}/{ckpt}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/sensitivity.py"
