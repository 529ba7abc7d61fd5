"""l2h.progress: bars redrawn in place on a terminal, plain lines at an interval in log files."""

from __future__ import annotations

import io
import types

from l2h.progress import progress_bar, routed_progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_each_update_is_a_line_at_the_interval(monkeypatch):
    monkeypatch.setenv("L2H_PROGRESS_INTERVAL", "3600")
    log = io.StringIO()
    with progress_bar(total=1000, desc="work", unit="img", file=log, leave=False) as bar:
        for i in range(1000):
            bar.set_postfix(loss=i)  # ClustPy sets one every epoch: no extra line
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert len(lines) == 2 and lines[0].startswith("work:   0%") and lines[1].startswith("work: 100%")
    assert "1000/1000" in lines[1] and "loss=999" in lines[1]  # the final state stays (leave=False: terminals)

    monkeypatch.setenv("L2H_PROGRESS_INTERVAL", "0")
    log = io.StringIO()
    for _ in progress_bar(range(5), desc="each", file=log):
        pass
    assert [line.split("|")[0] for line in log.getvalue().splitlines()][:6] == [
        "each:   0%",
        "each:  20%",
        "each:  40%",
        "each:  60%",
        "each:  80%",
        "each: 100%",
    ]


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    term = Terminal()
    for _ in progress_bar(range(3), desc="tty", file=term, mininterval=0):
        pass
    assert term.getvalue().count("\r") >= 3 and "\n" in term.getvalue()


def test_third_party_bars_are_routed_and_restored():
    import tqdm

    lib = types.ModuleType("lib")
    lib.tqdm = tqdm
    log = io.StringIO()
    with routed_progress(lib):
        for _ in lib.tqdm.trange(4, desc="lib", file=log):
            pass
    assert lib.tqdm is tqdm and "\r" not in log.getvalue() and "lib: 100%" in log.getvalue()
