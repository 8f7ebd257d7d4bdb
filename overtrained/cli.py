"""`overtrained`: work outside the DAG.

overtrained validate [config.yaml]   # check a config the way the workflow will
"""

from __future__ import annotations

import argparse
import json
import sys

from overtrained import config as config_module


def validate(args: argparse.Namespace) -> int:
    try:
        cfg = config_module.load_file(args.config)
    except config_module.ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        return 2
    if args.show:
        print(json.dumps(cfg, indent=1))
    else:
        print(f"{args.config}: valid")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="overtrained", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="validate a config file and fill in its defaults")
    p.add_argument("config", nargs="?", default="config.yaml")
    p.add_argument("--show", action="store_true", help="print the config with defaults filled in")
    p.set_defaults(func=validate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
