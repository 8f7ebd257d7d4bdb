"""`overtrained`: work outside the DAG.

overtrained validate [config.yaml]   # check a config the way the workflow will
overtrained checkpoints REPO [--tokens 0.5T,1T]   # a repo's parsed checkpoint branches
overtrained pin [config.yaml] [--repin [BRANCH ...]]   # pin hub checkpoints to commit shas
overtrained summary [results/] [--format table|csv|json|markdown]   # overtraining verdicts
overtrained publish RUN --to DIR   # a run's claims, tables (CSV) and figures, for a README
overtrained verify [RUN]   # does every result file still hold what its job wrote?
overtrained partial [config.yaml] [--directory RUN]   # tables of an unfinished run, and why
overtrained install-profile [--name slurm] [--force]   # `snakemake --profile slurm` from anywhere
overtrained job-server [status|stop]   # the local job server's warm processes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from overtrained.core import config as config_module
from overtrained.core import units


def validate(args: argparse.Namespace) -> int:
    from overtrained import workflow

    try:
        raw = config_module.read_file(args.config)
        cfg = workflow.plan_config(raw, report=lambda line: print(line, file=sys.stderr))
    except config_module.ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    if args.show:
        print(json.dumps(cfg, indent=1))
    else:
        print(f"{args.config}: valid")
    return 0


def checkpoints(args: argparse.Namespace) -> int:
    from overtrained.hub import checkpoints as hub

    try:
        if args.branches:
            with open(args.branches, encoding="utf-8") as f:
                branches = json.load(f)
            if isinstance(branches, dict):  # a recording: {"repo", "note", "branches"}
                branches = branches["branches"]
        else:
            branches = hub.list_branches(args.repo)
        found = hub.checkpoints(branches)
        print(f"{args.repo}: {len(found)} checkpoint branches of {len(branches)}")
        for c in found:
            print(f"  {c.branch:<40} step {c.step:>8}  {units.format_tokens(c.tokens)}")
        if args.tokens:
            budgets = [b.strip() for b in args.tokens.split(",") if b.strip()]
            print(hub.config_snippet(args.repo, hub.resolve(budgets, found, args.repo)))
    except hub.CheckpointError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    return 0


def pin(args: argparse.Namespace) -> int:
    from overtrained.hub import pins

    try:
        cfg = config_module.load_file(args.config)
        repin = False if args.repin is None else (set(args.repin) or True)
        lines = pins.pin_config(cfg, repin=repin, check=True)
    except config_module.ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    for name, fam in config_module.hub_families(cfg).items():
        print(f"{name}: {fam['repo']} ({pins.manifest_path(name, fam)})")
        for e in fam["pinned"]:
            print(
                f"  {e['request']:>8} -> {e['revision']:<36} "
                f"{units.format_tokens(e['tokens']):>7} {e['distance']:+7.1%}  "
                f"{e['sha'][:12]}"
            )
        print(f"  tokenizer: {fam['tokenizer_pin']['revision']} {fam['tokenizer_pin']['sha'][:12]}")
    if not config_module.hub_families(cfg):
        print(f"{args.config}: no hub families, nothing to pin")
    return 0


def install_profile(args: argparse.Namespace) -> int:
    from overtrained.execution import slurm_profile

    try:
        lines = slurm_profile.install_profile(args.name, force=args.force)
    except slurm_profile.ProfileError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


def summary(args: argparse.Namespace) -> int:
    import pandas as pd

    from overtrained.analysis import analysis

    path = Path(args.results) / "tables" / "overtraining.parquet"
    if not path.is_file():
        print(
            f"Error: no {path}; run the workflow first (`snakemake`), or name its results "
            "folder: overtrained summary path/to/results",
            file=sys.stderr,
        )
        return 2
    print(analysis.summary(pd.read_parquet(path), args.format))
    return 0


def publish(args: argparse.Namespace) -> int:
    from overtrained.analysis import claims

    try:
        written = claims.publish(args.run, args.to)
    except FileNotFoundError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    print(f"{len(written)} files -> {args.to}: {', '.join(written)}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from overtrained import verify as verify_module

    try:
        checked, found = verify_module.problems(args.run)
    except FileNotFoundError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    for line in found:
        print(line)
    print(f"{checked} files checked: " + (f"{len(found)} problem(s)" if found else "all match"))
    return 1 if found else 0


def partial(args: argparse.Namespace) -> int:
    import os

    from overtrained import workflow
    from overtrained.analysis import partial as partial_module

    try:
        cfg = workflow.plan_config(config_module.read_file(args.config))
    except config_module.ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    os.chdir(args.directory)  # the run's paths are relative to its working directory
    counts = partial_module.write(cfg)
    print(
        f"{counts['present']} results present, {counts['missing']} missing: "
        f"{partial_module.PARTIAL}/ in {args.directory} ({counts['rows']} rows; "
        "why each is missing: missing.csv)"
    )
    return 1 if counts["missing"] else 0


def seed_split(args: argparse.Namespace) -> int:
    import pandas as pd

    from overtrained.analysis import claims

    path = Path(args.results) / "tables" / "metrics.parquet"
    if not path.is_file():
        print(f"Error: no {path}; run the workflow first, or name its results folder",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        sets = [[int(s) for s in part.split(",")] for part in args.sets]
        cfg = config_module.load_file(args.config) if args.config else None
        metrics = pd.read_parquet(path)
        if args.families:
            unknown = sorted(set(args.families) - set(metrics["family"].dropna()))
            if unknown:
                raise ValueError(f"no family {', '.join(unknown)} in {path}")
            metrics = metrics[metrics["family"].isin(args.families)]
        split = claims.seed_split(metrics, sets, cfg)
    except (ValueError, config_module.ConfigError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    text = claims.seed_split_markdown(split)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text, end="")
    return 0


def job_server(args: argparse.Namespace) -> int:
    from overtrained.execution import job_server as server

    if args.action == "stop":
        print(f"stopped {server.stop_all()} job server(s)")
        return 0
    running = server.servers()
    print(f"{len(running)} job server(s) running")
    for entry in running:
        print(f"  pid {entry['pid']}  log {entry['log']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="overtrained", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate a config file and fill in its defaults")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument("--show", action="store_true", help="print the config with defaults filled in")
    p.set_defaults(func=validate)
    p = sub.add_parser(
        "checkpoints", help="list a Hub repo's checkpoint branches and resolve budgets"
    )
    p.add_argument("repo", help="owner/name of a model repository")
    p.add_argument("--tokens", help="comma-separated token budgets to resolve, e.g. 0.5T,1T,2.5T")
    p.add_argument(
        "--branches", help="a JSON list of branch names recorded earlier (instead of the Hub)"
    )
    p.set_defaults(func=checkpoints)
    p = sub.add_parser(
        "pin",
        help="pin hub families' budgets/branches to commit shas in their manifests",
        description="Resolve what each hub family asks for against the repository's branches, "
        "write the pins to its manifest, and report branches that moved since they were "
        "pinned. Needs the Hub (or HF_ENDPOINT).",
    )
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument(
        "--repin",
        nargs="*",
        metavar="BRANCH",
        help="move the pins of these moved branches (all moved ones if none are named); "
        "re-runs their jobs",
    )

    p.set_defaults(func=pin)
    p = sub.add_parser(
        "install-profile",
        help="link profiles/slurm into Snakemake's profile folder, for `--profile slurm`",
        description="Link this checkout's profiles/slurm as ~/.config/snakemake/NAME (under "
        "$XDG_CONFIG_HOME where set), where `snakemake --profile NAME` finds it from any "
        "directory. A link that is already there is left as it is; anything else there is left "
        "alone unless --force, which moves it aside to NAME.bak-<timestamp>.",
    )
    p.add_argument("--name", default="slurm", help="the profile name (default: slurm)")
    p.add_argument(
        "--force",
        action="store_true",
        help="move an existing profile of that name aside (NAME.bak-<timestamp>) and link",
    )
    p.set_defaults(func=install_profile)
    p = sub.add_parser("summary", help="print the overtraining verdicts of a finished run")
    p.add_argument("results", nargs="?", default="results", help="the results folder")
    p.add_argument("--format", choices=["table", "csv", "json", "markdown"], default="table")
    p.set_defaults(func=summary)
    p = sub.add_parser(
        "publish", help="copy a finished run's claims, tables and figures for a README"
    )
    p.add_argument("run", help="the run's working directory (it holds results/)")
    p.add_argument("--to", required=True, help="where to write (e.g. docs/miniature-paper)")
    p.set_defaults(func=publish)
    p = sub.add_parser(
        "verify",
        help="check a run's result files against what their jobs recorded (edits, weights)",
    )
    p.add_argument("run", nargs="?", default=".", help="the run's working directory")
    p.set_defaults(func=verify)
    p = sub.add_parser(
        "partial",
        help="tables from the results of an unfinished run, and which are missing and why",
    )
    p.add_argument("config", nargs="?", default="config.yaml", help="the run's config")
    p.add_argument("--directory", default=".", help="the run's working directory")
    p.set_defaults(func=partial)
    p = sub.add_parser(
        "seed-split",
        help="the claims on disjoint seed sets of a finished run, side by side: do verdicts agree?",
    )
    p.add_argument("results", nargs="?", default="results", help="the results folder")
    p.add_argument(
        "--sets",
        nargs="+",
        required=True,
        metavar="SEEDS",
        help="disjoint comma-separated seed sets, e.g. 0,1,2 3,4,5 (pre-training seeds when "
        "the run has several, else fine-tuning and noise seeds)",
    )
    p.add_argument("--config", help="the run's config (labels claims with schedule and size)")
    p.add_argument(
        "--families",
        nargs="+",
        metavar="FAMILY",
        help="only these families (those that have every seed of the sets)",
    )
    p.add_argument("--out", help="also write the Markdown table here")
    p.set_defaults(func=seed_split)
    p = sub.add_parser(
        "job-server",
        help="list or stop the local job server's processes (they exit by themselves when idle)",
    )
    p.add_argument("action", nargs="?", choices=["status", "stop"], default="status")
    p.set_defaults(func=job_server)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
