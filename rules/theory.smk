# The theory experiment: a two-layer linear network, simulated on the CPU in seconds.


rule theory:
    """Pre-train W2 W1 on task A for a range of times, fine-tune every snapshot on task B
    (by alignment and penalty), perturb it with Gaussian noise: every curve to Parquet, the
    turning points to a summary table, and one figure (overtrained/analysis/theory.py).
    """
    output:
        curves=W.THEORY_TABLES[0],
        summary=W.THEORY_TABLES[1],
        png=report(
            f"{W.THEORY_FIGURE}.png",
            caption="../report/theory.rst",
            category="Figures",
            labels={"figure": f"{len(W.FIGURES) + 1}. theory", "format": "PNG"},
        ),
        svg=report(
            f"{W.THEORY_FIGURE}.svg",
            caption="../report/theory.rst",
            category="Figures",
            labels={"figure": f"{len(W.FIGURES) + 1}. theory", "format": "SVG"},
        ),
        data=f"{W.THEORY_FIGURE}.json",
    log:
        "logs/theory.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    params:
        theory=config["theory"],
        code=W.stage_code_hash("theory"),
    script:
        "../scripts/theory.py"
