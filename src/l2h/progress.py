"""Progress bars that suit both terminals and log files.

On a terminal (or in a notebook) :func:`progress_bar` is an ordinary tqdm bar redrawn in place. When its
output is a file or a pipe, as for a pipeline job whose output goes to its log file, redrawing would join
every update into one huge ``\\r``-separated line; instead each update is written as its own line, at most
once every ``L2H_PROGRESS_INTERVAL`` seconds (default 30), and the final state is always written.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from types import ModuleType, SimpleNamespace
from typing import Any, TextIO

from tqdm import tqdm as std_tqdm
from tqdm.auto import tqdm as auto_tqdm

#: Seconds between two progress lines in a log file (environment variable ``L2H_PROGRESS_INTERVAL``).
DEFAULT_INTERVAL_S = 30.0
#: tqdm.auto's class derives from tqdm's notebook bar inside a Jupyter kernel, else from the terminal bar.
_NOTEBOOK = auto_tqdm.__bases__[0] is not std_tqdm


class _LineWriter:
    """A text stream for tqdm that turns each in-place redraw (``\\r`` + status + padding) into one line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        getattr(self._stream, "flush", lambda: None)()


class _LineBar(std_tqdm):
    """A bar for log files: a new postfix or description shows in the next line, without forcing one."""

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description_str(desc, refresh=False)


def _interval() -> float:
    value = os.environ.get("L2H_PROGRESS_INTERVAL", "")
    try:
        return max(float(value), 0.0) if value else DEFAULT_INTERVAL_S
    except ValueError:
        return DEFAULT_INTERVAL_S


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(iterable: Iterable | None = None, *, file: TextIO | None = None, **kwargs: Any) -> std_tqdm:
    """A tqdm progress bar (same arguments as ``tqdm.tqdm``) that writes plain lines when not on a terminal.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over, as for tqdm.
    file : text stream, optional
        Where the bar goes (default ``sys.stderr``).
    **kwargs
        Passed to tqdm (``total``, ``desc``, ``unit``, ``disable``, ``leave``, ...). Off a terminal, ``leave``
        is forced on (the last line states the total), ``position`` to 0 (no cursor movement), and a new
        postfix or description waits for the next line instead of writing one.

    Returns
    -------
    tqdm.tqdm
        The bar; use it as tqdm's (``update``, context manager, iteration).

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> for _ in progress_bar(range(3), file=log, desc="work"):
    ...     pass
    >>> "\\r" in log.getvalue(), log.getvalue().count("\\n") >= 1
    (False, True)
    """
    stream = sys.stderr if file is None else file
    if _NOTEBOOK and file is None:  # a notebook: tqdm's widget
        return auto_tqdm(iterable, **kwargs)
    if _is_terminal(stream):
        return std_tqdm(iterable, file=stream, **kwargs)
    interval = _interval()
    kwargs.update(
        leave=True,
        position=0,
        ascii=True,
        dynamic_ncols=False,
        ncols=80,
        mininterval=interval,
        maxinterval=max(interval, 10.0),
    )
    return _LineBar(iterable, file=_LineWriter(stream), **kwargs)


@contextlib.contextmanager
def routed_progress(*modules: ModuleType) -> Iterator[None]:
    """Within the block, route the bars of third-party modules that ``import tqdm`` (and call ``tqdm.tqdm`` or
    ``tqdm.trange``) through :func:`progress_bar`, by replacing their global ``tqdm`` name; restored afterwards.
    Modules without such a name are left alone.

    Examples
    --------
    >>> import io, types, tqdm
    >>> lib = types.ModuleType("lib"); lib.tqdm = tqdm
    >>> log = io.StringIO()
    >>> with routed_progress(lib):
    ...     for _ in lib.tqdm.trange(2, file=log):
    ...         pass
    >>> "\\r" in log.getvalue(), lib.tqdm is tqdm
    (False, True)
    """
    shim = SimpleNamespace(tqdm=progress_bar, trange=lambda *args, **kwargs: progress_bar(range(*args), **kwargs))
    saved = [(m, m.tqdm) for m in modules if isinstance(getattr(m, "tqdm", None), ModuleType)]
    try:
        for module, _ in saved:
            module.tqdm = shim
        yield
    finally:
        for module, original in saved:
            module.tqdm = original
