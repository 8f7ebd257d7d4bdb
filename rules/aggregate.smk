# Every number into one long Parquet table, and one figure per measured effect.


rule aggregate:
    input:
        evaluations=W.evaluation_files(config),
        trainings=W.train_files(config),
        sensitivity=W.sensitivity_files(config),
        checkpoints=W.base_provenance_files(config),
        corpora=W.corpus_files(config),
    output:
        metrics=f"{W.RESULTS}/tables/metrics.parquet",
    log:
        "logs/aggregate.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        config_hash=W.config_hash(config),
        code=W.stage_code_hash("aggregate"),
    script:
        "../scripts/aggregate.py"


rule figures:
    input:
        metrics=rules.aggregate.output.metrics,
    output:
        figures=[f"{W.RESULTS}/figures/{name}.png" for name in W.FIGURES],
    log:
        "logs/figures.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        code=W.stage_code_hash("figures"),
    script:
        "../scripts/figures.py"
