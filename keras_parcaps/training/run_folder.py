"""`RunFolder`: one training run's folder, locked, fingerprinted and resumable."""

import csv
import io
import json
import os
import re
import shutil
import socket
import warnings
from pathlib import Path

from keras_parcaps.training import saving

_CHECKPOINT = re.compile(r"^epoch_(\d+)\.weights\.h5$")
# Processes of this interpreter that hold a lock: path -> depth, so that
# `train_and_evaluate` and the `train` it calls can both hold one folder.
_HELD = {}


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would end the process there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Alive, owned by another user.
        return True
    return True


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 200 else text[:197] + "..."


class RunFolder:
    """A training run's folder: a lock, a fingerprint, checkpoints and resume.

    A run folder holds `run.json` (the run's settings and its fingerprint),
    `checkpoints/epoch_NNN.weights.h5` (weights and optimizer state after
    every epoch), `log.csv`, and, once training ends, `model.keras`. Used as
    a context manager it holds `run.lock`, which names the process that
    trains: a second process is refused at once, and a lock left by a
    process that died is taken over.

    The fingerprint is a flat dict of what makes two runs the same run (the
    data, the model, the seed, the learning rate, the batch schedule).
    `start` compares it with the one in `run.json` before anything in the
    folder changes: the same fingerprint resumes, another one is refused
    with an error naming the fields that differ, unless `overwrite` clears
    the folder first.

    Args:
        path: The folder; created on entering the context if needed (and
            removed again on leaving when nothing was written to it).

    Example:

        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> path = tmp.name
        >>> with RunFolder(path) as run:
        ...     run.start({"seed": 0, "learning_rate": 1e-3})
        ...     run.checkpoints()
        []
        >>> with RunFolder(path) as run:
        ...     run.start({"seed": 1, "learning_rate": 1e-3})
        Traceback (most recent call last):
            ...
        ValueError: ... holds another run: seed 0 there, 1 now. ...
    """

    def __init__(self, path):
        self.path = Path(path)
        self.lock_path = self.path / "run.lock"
        self.info_path = self.path / "run.json"
        self.checkpoint_dir = self.path / "checkpoints"
        self.log_path = self.path / "log.csv"
        self.model_path = self.path / "model.keras"
        self._created = False

    # The lock.

    def __enter__(self):
        self.lock()
        return self

    def __exit__(self, *exc_info):
        self.unlock()

    def _key(self):
        return str(self.path.resolve())

    def lock(self) -> None:
        """Takes `run.lock`, or raises `FileExistsError` naming its holder.

        A lock whose process is gone (killed, crashed) is taken over. The
        same process may take the lock again (the calls nest).
        """
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} exists and is not a folder")
        if not self.path.exists():
            self.path.mkdir(parents=True)
            self._created = True
        key = self._key()
        if _HELD.get(key):
            _HELD[key] += 1
            return
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        for _ in range(3):
            try:
                descriptor = os.open(
                    self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644
                )
            except FileExistsError:
                holder = self._holder()
                if holder is not None and (
                    holder.get("host") != socket.gethostname()
                    or _process_alive(int(holder.get("pid", -1)))
                ):
                    raise FileExistsError(
                        f"{self.path} is in use by process {holder.get('pid')} on "
                        f"{holder.get('host')} (lock file {self.lock_path}); wait "
                        "for it to end, or delete the lock file if that process "
                        "is gone"
                    ) from None
                # Stale (its process is gone) or unreadable: take it over.
                self.lock_path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as file:
                file.write(record)
            _HELD[key] = 1
            return
        raise FileExistsError(f"Could not take the lock {self.lock_path}")

    def _holder(self):
        try:
            return json.loads(self.lock_path.read_text())
        except (OSError, ValueError):
            return None

    def unlock(self) -> None:
        """Releases the lock (the outermost of nested calls removes it)."""
        key = self._key()
        if not _HELD.get(key):
            return
        _HELD[key] -= 1
        if _HELD[key]:
            return
        del _HELD[key]
        self.lock_path.unlink(missing_ok=True)
        if self._created and not any(self.path.iterdir()):
            self.path.rmdir()

    # The fingerprint.

    def info(self) -> dict:
        """The content of `run.json` (`{}` when there is none)."""
        if not self.info_path.is_file():
            return {}
        try:
            return json.loads(self.info_path.read_text())
        except ValueError as error:
            raise ValueError(f"{self.info_path} is not valid JSON: {error}") from None

    def differences(self, fingerprint: dict) -> list:
        """`(field, stored, new)` for every field whose value changed.

        Fields that only one side has do not count, so a fingerprint of a
        few fields (checked before the model is built) can be compared with
        the full one, and a run made by an older version without a
        fingerprint is compared on the settings its `run.json` holds.
        """
        info = self.info()
        stored = info.get("fingerprint", info)
        fingerprint = json.loads(json.dumps(fingerprint))  # tuples -> lists
        return [
            (key, stored[key], value)
            for key, value in fingerprint.items()
            if key in stored and stored[key] != value
        ]

    def check(self, fingerprint: dict) -> None:
        """Raises `ValueError` naming every field that differs from `run.json`."""
        differences = self.differences(fingerprint)
        if differences:
            fields = "; ".join(
                f"{key} {_show(old)} there, {_show(new)} now"
                for key, old, new in differences
            )
            raise ValueError(
                f"{self.path} holds another run: {fields}. Nothing was changed; "
                "resume it with its own settings, start over with overwrite=True "
                "(--overwrite), or use another folder"
            )

    def clear(self) -> None:
        """Deletes everything in the folder but the lock (to start over)."""
        if not self.is_run() and any(
            entry != self.lock_path for entry in self.path.iterdir()
        ):
            raise ValueError(
                f"{self.path} holds files but no run (no run.json); not deleting "
                "them: choose another folder"
            )
        for entry in self.path.iterdir():
            if entry == self.lock_path:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def is_run(self) -> bool:
        """Whether the folder holds a run (its own `run.json`, or folds' ones)."""
        return self.info_path.is_file() or any(self.path.glob("*/run.json"))

    def start(self, fingerprint: dict, overwrite: bool = False, **settings):
        """Checks `fingerprint` (or clears the folder) and writes `run.json`.

        Args:
            fingerprint: The run's fingerprint (see the class docstring).
            overwrite: Whether to delete the folder's content first instead
                of comparing fingerprints.
            **settings: More entries for `run.json` (not compared).
        """
        if overwrite:
            self.clear()
        else:
            self.check(fingerprint)
        info = self.info()
        info.update(settings)
        info["fingerprint"] = fingerprint
        self.path.mkdir(parents=True, exist_ok=True)
        saving.write_text(self.info_path, json.dumps(info, indent=2))

    # Checkpoints and resume.

    def checkpoint_path(self, epoch: int) -> Path:
        """`checkpoints/epoch_NNN.weights.h5`, the state after `epoch` epochs."""
        return self.checkpoint_dir / f"epoch_{epoch:03d}.weights.h5"

    def checkpoints(self) -> list:
        """`(epoch, path)` of every checkpoint, newest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        found = []
        for path in self.checkpoint_dir.iterdir():
            match = _CHECKPOINT.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, reverse=True)

    def restore(self, model) -> int:
        """Loads the newest checkpoint that loads; returns its epoch.

        A checkpoint that cannot be read (cut short by a kill during a save
        by an older version, or damaged on disk) is passed over with a
        warning that names it and the one used instead.

        Args:
            model: The compiled model, whose weights and optimizer state are
                set.

        Returns:
            The number of finished epochs restored; 0 when there is no
            checkpoint.

        Raises:
            ValueError: when there are checkpoints but none loads.
        """
        checkpoints = self.checkpoints()
        if not checkpoints:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        failed = []
        for epoch, path in checkpoints:
            try:
                model.load_weights(path)
            except Exception as error:  # h5py and Keras raise many types.
                failed.append(f"{path.name} ({type(error).__name__}: {error})")
                continue
            if failed:
                warnings.warn(
                    f"Cannot read checkpoint(s) {'; '.join(failed)}; resuming "
                    f"from {path} (epoch {epoch}).",
                    stacklevel=2,
                )
            return epoch
        raise ValueError(
            f"No checkpoint in {self.checkpoint_dir} can be read: "
            f"{'; '.join(failed)}. Start over with overwrite=True (--overwrite)"
        )

    def trim_log(self, epochs: int) -> None:
        """Keeps the `log.csv` rows of the first `epochs` epochs only.

        After a resume from an older checkpoint (or a kill between the
        checkpoint and the log row) the log then has one row per epoch.
        """
        if not self.log_path.is_file():
            return
        with open(self.log_path, newline="") as file:
            rows = list(csv.reader(file))
        if not rows:
            return
        header, body = rows[0], rows[1:]
        kept = [
            row
            for row in body
            if len(row) == len(header) and row[0].isdigit() and int(row[0]) < epochs
        ]
        if kept == body:
            return
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerows([header, *kept])
        saving.write_text(self.log_path, text.getvalue())

    @property
    def finished_epochs(self) -> int:
        """Epochs of the run whose `model.keras` was saved (0 if none)."""
        if not self.model_path.is_file():
            return 0
        return int(self.info().get("finished_epochs", 0))

    def finish(self, epochs: int) -> None:
        """Records in `run.json` that `model.keras` holds `epochs` epochs."""
        info = self.info()
        info["finished_epochs"] = int(epochs)
        saving.write_text(self.info_path, json.dumps(info, indent=2))
