"""Run overtrained.train.finetune.run from a JSON spec and send this process a signal at a step.

    python finetune_until.py SPEC.json STEP SIGNAL    (SIGNAL: KILL or TERM)

KILL is an abrupt death (power loss, OOM killer, scancel --signal=KILL): nothing is cleaned
up. TERM is what Slurm sends at a time limit or on preemption.
"""

import json
import os
import signal
import sys
from pathlib import Path

from transformers import TrainerCallback

from overtrained.train import finetune


class SignalAtStep(TrainerCallback):
    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.signum)


spec = json.loads(Path(sys.argv[1]).read_text())
signum = getattr(signal, f"SIG{sys.argv[3]}")
finetune.run(**spec, callbacks=(SignalAtStep(int(sys.argv[2]), signum),))
