"""The report pages in a real browser: Debian's chromium driven by playwright (no browser download).

The page loads offline with no console error and no request besides itself; every leaf is in the DOM;
searching a class highlights its leaves; collapsing a node hides its leaves; zoom, pan, hover and table
sorting work; a screenshot is not blank; a 1,000-leaf tree renders fully and a bigger one opens collapsed.
(The 1,000-leaf render time is a benchmark: benchmarks/bench_report.py.)
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from l2h.hierarchy import Hierarchy
from l2h.report import html, tables

CHROMIUM = Path(os.environ.get("L2H_CHROMIUM", "/usr/bin/chromium"))
ARGS = list(html.CHROMIUM_ARGS)
DATA = Path(__file__).resolve().parent / "data" / "report"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tree_data(k: int, seed: int = 0) -> dict:
    """A tree over ``k`` clusters of 30 points each (mostly one class per cluster), with merge support."""
    from scipy.cluster.hierarchy import linkage

    rng = np.random.default_rng(seed)
    tree = Hierarchy.from_linkage(linkage(rng.normal(size=(k, 3)), "average"))
    tree.scores = rng.random((k - 1, 2))
    leaves = np.repeat(np.arange(k), 30)
    labels = np.where(rng.random(leaves.size) < 0.8, leaves % len(CLASSES), rng.integers(0, len(CLASSES), leaves.size))
    return html.tree_payload(tree, leaves=leaves, labels=labels, class_names=CLASSES, support=list(rng.random(k - 1)))


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.is_file(), f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The report page (the demo's tables and two trees) and a page with one 1,000-leaf tree."""
    folder = tmp_path_factory.mktemp("pages")
    frame = tables.runs_frame(json.loads((DATA / "demo_metrics.json").read_text()))
    trees = [("small", tree_data(12)), ("medium", tree_data(300, seed=1))]
    report = html.report_page(
        title="demo",
        description="the demo",
        trees=trees,
        tables=[("Averaged over seeds", tables.to_html(tables.summarize(frame)))],
    )
    (folder / "report.html").write_text(report, encoding="utf-8")
    big = tree_data(1000, seed=2)
    (folder / "big.html").write_text(html.tree_page(big, title="1,000 leaves"), encoding="utf-8")
    huge = tree_data(3000, seed=3)
    (folder / "huge.html").write_text(html.tree_page(huge, title="3,000 leaves"), encoding="utf-8")
    return {"folder": folder, "trees": trees, "big": big, "huge": huge}


def open_page(browser, path: Path):
    """A new page on ``path``, rendered; its console errors and network requests are recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.errors, page.requests = [], []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("request", lambda req: page.requests.append(req.url))
    page.goto(path.as_uri())
    page.wait_for_selector("html[data-rendered]", timeout=20_000)
    return page


def leaf_count(view) -> int:
    return view.locator("text.leaf").count()


def test_page_loads_offline_without_errors(browser, pages):
    page = open_page(browser, pages["folder"] / "report.html")
    assert page.errors == []
    assert [u for u in page.requests if not u.startswith("data:")] == [(pages["folder"] / "report.html").as_uri()]
    assert page.locator("table.sortable tbody tr").count() == 6


def test_every_leaf_is_in_the_dom(browser, pages):
    page = open_page(browser, pages["folder"] / "report.html")
    views = page.locator(".tree-view")
    assert views.count() == 2
    for i, (_, data) in enumerate(pages["trees"]):
        view = views.nth(i)
        assert leaf_count(view) == data["k"]
        assert view.locator("circle.node").count() == data["k"] - 1
        assert view.locator("text.leaf").nth(0).text_content() in data["names"]


def test_search_highlights_the_class(browser, pages):
    page = open_page(browser, pages["folder"] / "report.html")
    view = page.locator(".tree-view").nth(1)
    names = pages["trees"][1][1]["names"]
    expected = sum(name.startswith("truck (") for name in names)
    assert expected > 0
    view.locator("input.search").fill("truck")
    hits = view.locator("text.leaf.hit")
    assert hits.count() == expected
    assert all(t.startswith("truck (") for t in hits.all_text_contents())
    assert view.locator(".hits").text_content() == f"{expected} leaves"
    view.locator("input.search").fill("")
    assert view.locator("text.leaf.hit").count() == 0 and page.errors == []


def test_collapsing_a_node_hides_its_leaves(browser, pages):
    page = open_page(browser, pages["folder"] / "report.html")
    view = page.locator(".tree-view").nth(1)
    data = pages["trees"][1][1]
    k = data["k"]
    sizes = [1] * k
    for a, b in data["children"]:
        sizes.append(sizes[a] + sizes[b])
    node = max(range(k, 2 * k - 2), key=lambda v: sizes[v])  # the biggest subtree below the root
    members = sizes[node]
    assert 1 < members < k
    view.locator(f'circle.node[data-n="{node}"]').click()
    assert leaf_count(view) == k - members
    collapsed = view.locator(f'path.collapsed[data-n="{node}"]')
    assert collapsed.count() == 1
    assert view.locator(f'text.clabel[data-n="{node}"]').text_content().startswith(f"▸ {members} leaves")
    collapsed.click()
    assert leaf_count(view) == k and page.errors == []


def test_zoom_pan_hover_and_sort(browser, pages):
    page = open_page(browser, pages["folder"] / "report.html")
    view = page.locator(".tree-view").nth(0)
    view.scroll_into_view_if_needed()
    transform = lambda: view.locator("g.viewport").get_attribute("transform")  # noqa: E731
    svg = view.locator("svg.canvas")
    assert svg.get_attribute("data-row") == "16.000"  # px per tip at 100%
    box = svg.bounding_box()
    page.mouse.move(box["x"] + 200, box["y"] + 60)
    page.mouse.wheel(0, -300)
    assert float(svg.get_attribute("data-row")) > 16  # zoomed in: the tree stretches
    zoomed = transform()
    page.mouse.move(box["x"] + 300, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + 360, box["y"] + 80, steps=5)
    page.mouse.up()
    assert transform() != zoomed
    view.locator("button[data-act=fit]").click()
    view.locator("circle.node").last.hover()
    tooltip = view.locator(".tooltip")
    assert tooltip.is_visible()
    text = tooltip.text_content()
    for field in ("points", "majority class", "support", "G*", "G†", "score s(G*)", "affinity", " of 11"):
        assert field in text, (field, text)
    header = page.locator("table.sortable thead th", has_text="NMI")
    header.click()
    nmi = [float(t) for t in page.locator("table.sortable tbody tr td:nth-child(9)").all_text_contents()]
    assert nmi == sorted(nmi)
    header.click()
    nmi = [float(t) for t in page.locator("table.sortable tbody tr td:nth-child(9)").all_text_contents()]
    assert nmi == sorted(nmi, reverse=True) and page.errors == []


def test_screenshot_is_not_blank(browser, pages):
    from PIL import Image

    page = open_page(browser, pages["folder"] / "report.html")
    view = page.locator(".tree-view").nth(0)
    image = np.asarray(Image.open(io.BytesIO(view.screenshot())).convert("L"))
    assert image.shape[0] > 100 and image.shape[1] > 500
    assert (image < 200).mean() > 0.01  # lines and text, not an empty canvas
    assert len(np.unique(image)) > 20


def test_thousand_leaf_tree_renders(browser, pages):
    page = open_page(browser, pages["folder"] / "big.html")
    view = page.locator(".tree-view")
    assert leaf_count(view) == 1000 and page.errors == []
    view.locator("button[data-act=fit]").click()  # the whole tree in the canvas
    assert float(view.locator("svg.canvas").get_attribute("data-row")) < 1 and leaf_count(view) == 1000
    assert not view.locator("text.leaf").first.is_visible()  # too small to label


def test_bigger_tree_opens_collapsed_and_search_reveals(browser, pages):
    page = open_page(browser, pages["folder"] / "huge.html")
    view = page.locator(".tree-view")
    visible = leaf_count(view) + view.locator("path.collapsed").count()
    assert visible == 1000 and leaf_count(view) < 1000  # the last 999 merges expanded
    hidden = next(i for i in range(3000) if view.locator(f'text.leaf[data-n="{i}"]').count() == 0)
    name = pages["huge"]["names"][hidden].split(" (")[0]
    view.locator("input.search").fill(name)
    assert view.locator(f'text.leaf.hit[data-n="{hidden}"]').count() == 1 and page.errors == []
