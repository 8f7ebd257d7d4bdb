# Evaluation of base and fine-tuned models (lm-eval suites and loss probes), and the
# Gaussian perturbation probe of base checkpoints.


rule prefetch_retention:
    """Download the retention text (evaluate.retention_text) into the shared cache."""
    input:
        W.retention_local_files(config),
    output:
        W.RETENTION_PREFETCH,
    log:
        "logs/prefetch/retention.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        dataset=config["evaluate"]["retention_text"],
    script:
        "../scripts/prefetch_dataset.py"


rule retention_stream:
    """The retention documents tokenised with a family's tokenizer (offline)."""
    input:
        prefetch=W.RETENTION_PREFETCH,
        tokenizer=tokenizer_file,
    output:
        stream=f"{W.PATHS['retention']}/heldout.npy",
        meta=f"{W.PATHS['retention']}/retention.json",
    log:
        "logs/retention_stream/{family}.log",
    conda:
        "../envs/train.yaml"
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=30,
    params:
        dataset=config["evaluate"]["retention_text"],
        documents=config["evaluate"]["retention_documents"],
        code=W.stage_code_hash("retention_stream"),
    script:
        "../scripts/retention_stream.py"


rule prefetch_suite:
    """Download the datasets of a suite's lm-eval tasks into the shared Hugging Face cache
    (needs internet: a local rule, so on a cluster it runs on the login node)."""
    output:
        W.suite_prefetch_file("{suite}"),
    log:
        "logs/prefetch/suite-{suite}.log",
    wildcard_constraints:
        suite=W.alternatives(W.suites_with_standard_tasks(config)),
    localrule: True
    conda:
        "../envs/eval.yaml"
    params:
        datasets=lambda w: overtrained.evaluation.lm_eval_index.datasets_of_suite(
            config, w.suite
        ),
    script:
        "../scripts/prefetch_suite.py"


rule evaluate:
    """One lm-eval suite on one model (base or fine-tuned): its metrics and samples."""
    input:
        unpack(model_files),
        tests=lambda w: list(mini_test_files(w).values()),
        prefetch=lambda w: (
            [W.suite_prefetch_file(w.suite)]
            if w.suite in W.suites_with_standard_tasks(config)
            else []
        ),
    output:
        W.PATHS["evaluation"],
    log:
        "logs/evaluate/{family}/{ckpt}/{model}/{suite}.log",
    benchmark:
        "logs/evaluate/{family}/{ckpt}/{model}/{suite}.benchmark.tsv"
    wildcard_constraints:
        suite="|".join(config["evaluate"]["suites"]) or "(?!)",
    conda:
        "../envs/eval.yaml"
    threads: EVAL_RESOURCES["threads"]
    resources:
        **eval_resources(),
    params:
        model_dir=model_dir,
        mini_test_files=mini_test_files,
        suite=lambda w: config["evaluate"]["suites"][w.suite],
        datasets=lambda w: overtrained.evaluation.lm_eval_index.datasets_of_suite(
            config, w.suite
        ),
        precision=config["evaluate"]["precision"],
        answer_patterns=lambda w: W.answer_patterns(config, w.suite),
        checkpoint=checkpoint_pin,
        code=W.stage_code_hash("evaluate"),
    script:
        "../scripts/evaluate.py"


rule probes:
    """Exact losses of one model: retention of pre-training text and each task's test loss."""
    input:
        unpack(model_files),
        heldout=heldout_stream,
        tests=lambda w: list(task_test_files(w).values()),
    output:
        W.path("evaluation", suite=W.PROBES),
    log:
        "logs/probes/{family}/{ckpt}/{model}.log",
    benchmark:
        "logs/probes/{family}/{ckpt}/{model}.benchmark.tsv"
    conda:
        "../envs/train.yaml"
    threads: EVAL_RESOURCES["threads"]
    resources:
        **eval_resources(),
    params:
        model_dir=model_dir,
        task_test_files=task_test_files,
        retention_tokens=config["evaluate"]["retention_tokens"],
        max_length=config["finetune"]["max_length"],
        checkpoint=checkpoint_pin,
        code=W.stage_code_hash("probes"),
    script:
        "../scripts/probes.py"


rule sensitivity:
    """Gaussian perturbation of one base checkpoint: loss increase per noise scale and seed."""
    input:
        record=base_record,
        heldout=heldout_stream,
    output:
        W.PATHS["sensitivity"],
    log:
        "logs/sensitivity/{family}/{ckpt}.log",
    benchmark:
        "logs/sensitivity/{family}/{ckpt}.benchmark.tsv"
    conda:
        "../envs/train.yaml"
    threads: EVAL_RESOURCES["threads"]
    resources:
        **eval_resources(),
    params:
        sensitivity=config["sensitivity"],
        retention_tokens=config["evaluate"]["retention_tokens"],
        checkpoint=checkpoint_pin,
        code=W.stage_code_hash("sensitivity"),
    script:
        "../scripts/sensitivity.py"


rule judge:
    """Off unless evaluate.judge.command is set: see overtrained/evaluation/judge.py."""
    input:
        unpack(model_files),
        test=lambda w: f"{W.task_dir(config, w.family, W.parse_ft_model(w.model)[0])}/test.jsonl",
    output:
        W.path("evaluation", suite=W.JUDGE),
    log:
        "logs/judge/{family}/{ckpt}/{model}.log",
    wildcard_constraints:
        model=r"ft/[^/]+/lr[^/]+/seed\d+",
    conda:
        "../envs/eval.yaml"
    threads: EVAL_RESOURCES["threads"]
    resources:
        **eval_resources(),
    params:
        model_dir=model_dir,
        task=lambda w: W.parse_ft_model(w.model)[0],
        # not `tasks`: judging another task must not re-run this model's judging
        judge={k: v for k, v in config["evaluate"]["judge"].items() if k != "tasks"},
        checkpoint=checkpoint_pin,
        code=W.stage_code_hash("judge"),
    script:
        "../scripts/judge.py"
