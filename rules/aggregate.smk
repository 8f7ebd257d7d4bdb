# Every number into one long Parquet table, and one figure per measured effect.


rule aggregate:
    """Every training, evaluation and sensitivity record into results/tables/metrics.parquet."""
    input:
        evaluations=W.evaluation_files(config),
        trainings=W.train_files(config),
        sensitivity=W.sensitivity_files(config),
        checkpoints=W.base_provenance_files(config),
        corpora=W.corpus_files(config),
    output:
        metrics=f"{W.PATHS['tables']}/metrics.parquet",
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


rule analysis:
    """The paper's answer from metrics.parquet: the LR chosen per checkpoint and task
    (best_lr.parquet) and where fine-tuned quality peaks and whether it degrades after
    (overtraining.parquet); `overtrained summary` prints the verdicts."""
    input:
        metrics=rules.aggregate.output.metrics,
    output:
        best_lr=f"{W.PATHS['tables']}/best_lr.parquet",
        overtraining=f"{W.PATHS['tables']}/overtraining.parquet",
    log:
        "logs/analysis.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        config_hash=W.config_hash(config),
        code=W.stage_code_hash("analysis"),
    script:
        "../scripts/analysis.py"


rule figures:
    """Every figure (PNG for reading, SVG for print; the plotted curves as JSON for tests)
    and the report's tables: `snakemake --report results/report.html` shows them with the
    captions in report/."""
    input:
        metrics=rules.aggregate.output.metrics,
        best_lr=rules.analysis.output.best_lr,
        overtraining=rules.analysis.output.overtraining,
    output:
        png=[
            report(
                f"{W.PATHS['figures']}/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                labels={"figure": f"{i}. {name}", "format": "PNG"},
            )
            for i, name in enumerate(W.FIGURES, 1)
        ],
        svg=[
            report(
                f"{W.PATHS['figures']}/{name}.svg",
                caption=f"../report/{name}.rst",
                category="Figures",
                labels={"figure": f"{i}. {name}", "format": "SVG"},
            )
            for i, name in enumerate(W.FIGURES, 1)
        ],
        data=[f"{W.PATHS['figures']}/{name}.json" for name in W.FIGURES],
        pages=[
            report(
                f"{W.PATHS['figures']}/{name}.html",
                caption=f"../report/{name}.rst",
                category="Tables" if name != "provenance" else "Provenance",
                labels={"table": name},
            )
            for name in ("overtraining", "best_lr", "provenance")
        ],
    log:
        "logs/figures.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        code=W.stage_code_hash("figures"),
    script:
        "../scripts/figures.py"


rule claims:
    """The paper's qualitative claims (a)-(e), each with an estimate, a 95% interval and a
    verdict (overtrained/analysis/claims.py): Parquet, CSV, and Markdown for people."""
    input:
        metrics=rules.aggregate.output.metrics,
        overtraining=rules.analysis.output.overtraining,
    output:
        parquet=f"{W.PATHS['tables']}/claims.parquet",
        csv=f"{W.PATHS['tables']}/claims.csv",
        md=f"{W.RESULTS}/claims.md",
    log:
        "logs/claims.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        families=config["families"],
        code=W.stage_code_hash("claims"),
    script:
        "../scripts/claims.py"
