"""What a ``snakemake`` invocation does before Snakemake builds its DAG (called by ``workflow/rules/common.smk``):

* refuse, in one line, while another ``snakemake`` process works in the same directory (otherwise the second
  one would report the first one's running jobs as "incomplete" and suggest ``--rerun-incomplete``);
* move corrupt outputs of the plan to the quarantine (:mod:`l2h.stages.integrity`), so that Snakemake sees
  them missing and rebuilds them (a dry run only reports them);
* after a failed run, repeat the one-line errors of the failed jobs from their logs.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

#: Snakemake options after which nothing is executed (a dry run, summaries, listings, graphs, unlocking).
_NO_EXECUTION = {
    "--dry-run",
    "--dryrun",
    "--dry_run",
    "--summary",
    "--detailed-summary",
    "--list",
    "--list-rules",
    "--list-target-rules",
    "--dag",
    "--rulegraph",
    "--filegraph",
    "--lint",
    "--unlock",
    "--cleanup-metadata",
    "--list-changes",
    "--lc",
    "--li",
    "--lp",
    "--list-code-changes",
    "--list-input-changes",
    "--list-params-changes",
    "--report",
    "--d3dag",
    "--touch",
    "-t",
    "-S",
    "-D",
    "-l",
    "--archive",
    "--print-compilation",
    "--containerize",
    "--export-cwl",
    "--generate-unit-tests",
}
_LOCK = ".snakemake/l2h.lock"
_held = []  # open lock files of this process (kept open: the lock lasts as long as the process)


def executes(argv: Sequence[str]) -> bool:
    """Whether a ``snakemake`` command line runs jobs (not a dry run, listing, summary, ...)."""
    for arg in argv[1:]:
        if arg in _NO_EXECUTION or (re.fullmatch(r"-[A-Za-z]+", arg) and "n" in arg):
            return False
    return True


def hold_lock(workdir: Path) -> None:
    """Take this directory's l2h lock for the life of this process, or raise ``RuntimeError`` (one line)
    naming the process that holds it."""
    path = workdir / _LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RuntimeError(
            f"another snakemake run is working in {workdir} ({holder}); wait for it to end (or stop it), then run again"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
    handle.flush()
    _held.append(handle)


def sweep_corrupt(paths: Iterable[str], results: Path, *, execute: bool) -> list[str]:
    """Quarantine the corrupt files among ``paths`` (or, without ``execute``, only report them); one message
    line per file."""
    from l2h.stages.integrity import corrupt_outputs, quarantine

    lines = []
    for path, why in corrupt_outputs(paths):
        if execute:
            moved = quarantine(path, results)
            lines.append(f"l2h: {path} is corrupt ({why}): moved to {moved}; it is rebuilt now")
        else:
            lines.append(f"l2h: {path} is corrupt ({why}): a real run moves it to the quarantine and rebuilds it")
    return lines


def failed_job_errors(logs: Iterable[str], since: float) -> list[str]:
    """The ``l2h: error:`` lines of the job logs written since ``since`` (the jobs of this run that failed)."""
    out = []
    for log in logs:
        path = Path(log)
        try:
            if path.stat().st_mtime < since:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out += [f"{line.strip()} (log: {log})" for line in text.splitlines() if line.startswith("l2h: error:")]
    return out


def fail(message: str) -> None:
    """End the invocation with one line on stderr and exit status 1 (before any job started)."""
    print(f"l2h: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(1)
