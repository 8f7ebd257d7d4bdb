"""A rule script's client side, without Snakemake: hands SCRIPT to the job server.

    python tests/drivers/job_server_client.py SCRIPT LOG [MODE [nowait]]

The `snakemake` object is a stand-in with the attributes the server reads (config,
resources, log) and `params.mode` for the script. Exits with the worker's status, or
prints "ran here" when the server was not wanted.
"""

import sys
from types import SimpleNamespace

from overtrained.execution import job_server

script, log = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "ok"
wait = sys.argv[4:5] != ["nowait"]
smk = SimpleNamespace(
    config={"execution": {"job_server": "auto"}},
    resources={"gpu": 0},
    log=[log],
    params={"mode": mode},
)
job_server.hand_over(smk, script, wait=wait)
print("ran here")
