"""What the notebooks share: where the repository is, which heal to run,
and a scratch directory.

heal is found in this order: `$HEAL_BIN` (what `.ci/run` sets, the binary
the tests built), `heal` on the PATH, then the repository's own debug or
release build under `$CARGO_TARGET_DIR` or `target/`. Nothing is built
from here: build once with `cargo build` (or `--release`) first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# notebooks/ sits at the repository's top.
repo = Path(__file__).resolve().parent.parent


def heal_bin() -> str:
    """The heal executable to run (see the module's docstring)."""
    found = os.environ.get("HEAL_BIN") or shutil.which("heal")
    if found:
        return found
    target = Path(os.environ.get("CARGO_TARGET_DIR") or repo / "target")
    for profile in ("release", "debug"):
        candidate = target / profile / "heal"
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        "no heal binary: set HEAL_BIN, put heal on the PATH, or run `cargo build` "
        f"(looked in {target}/release and {target}/debug)"
    )


def heal(*args: str) -> str:
    """Runs `heal ARGS...` (argv, no shell) and returns its standard output.

    A failure raises with heal's own error text, so the notebook stops
    on the cell that asked and says why.
    """
    argv = [heal_bin(), *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited with {done.returncode}:\n{done.stderr}{done.stdout}"
        )
    return done.stdout


def workdir(name: str) -> Path:
    """A fresh scratch directory for one notebook: `$HEAL_NB_OUT/NAME` when
    set (CI keeps it beside the executed notebooks), a temporary one
    otherwise."""
    root = os.environ.get("HEAL_NB_OUT")
    if root:
        path = Path(root) / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"heal-{name}-"))
