"""Runs examples/tune_branches.py, recording the trials this process runs.

Used by test_distributed.py: each chief or worker appends the IDs of the
trials it ran to `<out>/ran_<KERASTUNER_TUNER_ID>.txt`, which KerasTuner
does not record itself.
"""

import os
import runpy
import sys
from pathlib import Path

import keras_tuner

out = Path(sys.argv[sys.argv.index("--out") + 1])
record = out / f"ran_{os.environ['KERASTUNER_TUNER_ID']}.txt"
on_trial_end = keras_tuner.Tuner.on_trial_end


def _on_trial_end(self, trial):
    on_trial_end(self, trial)
    with record.open("a") as file:
        file.write(f"{trial.trial_id}\n")


keras_tuner.Tuner.on_trial_end = _on_trial_end
out.mkdir(parents=True, exist_ok=True)
example = Path(__file__).resolve().parents[2] / "examples" / "tune_branches.py"
sys.argv = [str(example), *sys.argv[1:]]
runpy.run_path(str(example), run_name="__main__")
