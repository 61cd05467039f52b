"""The `keras-parcaps` command: demo, train, evaluate, diagnose, explain,
cross-validate, small-data.

Choose the backend with the `KERAS_BACKEND` environment variable
(`tensorflow`, `jax` or `torch`) before running the command.
"""

import os
import sys
import warnings

from keras_parcaps.cli.commands import COMMANDS
from keras_parcaps.cli.options import UsageError, check_args
from keras_parcaps.cli.parser import DEMO_DEFAULTS, build_parser

__all__ = ["DEMO_DEFAULTS", "UsageError", "build_parser", "main"]


def _join_processes(args) -> None:
    """Joins a launcher's processes; the first line says what is used.

    Only the chief prints anything after that line (the others train
    silently, and write no file).
    """
    from keras_parcaps.training import distribution_backend

    for value, name in (
        (args.coordinator_address, "JAX_COORDINATOR_ADDRESS"),
        (args.num_processes, "JAX_NUM_PROCESSES"),
        (args.process_id, "JAX_PROCESS_ID"),
    ):
        if value is not None:
            os.environ[name] = str(value)
    if distribution_backend.launcher_processes() > 1:
        args.distribute = True
    if not args.distribute:
        return
    distribution_backend.initialize_processes()
    print(f"Distributed: {distribution_backend.describe()}", flush=True)
    if not distribution_backend.is_chief():
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the process's life)
        args.verbose = 0


def _one_line(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _format_warning(message, category, filename, lineno, line=None):
    return f"keras-parcaps: warning: {_one_line(message)}\n"


def main(argv=None) -> int:
    """Runs the command line; errors are one line on stderr.

    Bad arguments exit with code 2 before anything is loaded, built or
    written (like argparse); bad data, a locked or foreign `--out` and other
    refusals exit with 2 as well, a training that fails (a non-finite loss)
    with 1.
    """
    if "jax" not in sys.modules:
        # JAX on a CPU compiles the partitionable threefry draws of small
        # weights in up to 85 s each (docs/getting-started.md).
        os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "small-data" and args.out is None:
        args.out = f"runs/small_data_x{args.max_per_class}"
    formatwarning, warnings.formatwarning = warnings.formatwarning, _format_warning
    try:
        check_args(args)
        if hasattr(args, "distribute"):
            _join_processes(args)
        COMMANDS[args.command](args)
    except (UsageError, ValueError, OSError) as error:
        parser.exit(2, f"keras-parcaps: {_one_line(error)}\n")
    except ArithmeticError as error:  # FloatingPointError: a non-finite loss.
        parser.exit(1, f"keras-parcaps: {_one_line(error)}\n")
    finally:
        warnings.formatwarning = formatwarning
    return 0
