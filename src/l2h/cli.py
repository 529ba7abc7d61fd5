"""The ``l2h`` command: from any file of logits (or probabilities) to a hierarchy, metrics and a figure.

``l2h tree LOGITS --out DIR`` validates every input first; on bad input it prints one line
``l2h: error: <file>: <problem>``, exits with status 2 and writes nothing. Outputs are produced in a
temporary folder beside DIR and swapped in as a whole only once all of them exist (see :mod:`l2h.outdir`).
``l2h compare DIR --reference FILE`` scores a tree against a reference hierarchy (:mod:`l2h.compare`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from l2h import __version__
from l2h.errors import InputError
from l2h.options import AGGREGATIONS, INPUTS, STRATEGIES

if TYPE_CHECKING:  # pragma: no cover
    from l2h.hierarchy import Hierarchy

# numpy, scipy (metrics) and matplotlib (figure) are imported where they are used, so that `l2h --help`
# and a run without labels or figure do not pay for them

TREE_EPILOG = """\
writes to DIR:
  tree.json        the lossless record of the hierarchy (ordered merges, scores, options; with
                   --bootstrap, the support of each merge)
  linkage.npy      the hierarchy as a scipy linkage matrix (height = merge step)
  tree.nwk         the hierarchy in Newick format (leaf names from --names; with --bootstrap,
                   each internal node is labelled with its support)
  metrics.json     with --labels: nmi, nmi_geometric, ari, acc, dp, lp (+ coarse_* with --coarse)
  levels.json      numbers of groups at which the tree is best cut, ranked, with scores
  dendrogram.png   the dendrogram (unless --no-plot)
  tree.html        the interactive dendrogram, one self-contained page (unless --no-plot)
  provenance.json  command line, options, package versions, input checksums

bad input (NaN/inf, wrong shape, label count, missing key, ...) gives a one-line error,
exit status 2, and nothing is written. DIR must be new, empty or an earlier l2h tree output
(it holds the marker file .l2h-tree); its outputs are replaced as a whole, other files are kept.

examples:
  l2h tree logits.npy --out results/tree
  l2h tree preds.npz --key predictions --input probs \\
      --labels preds.npz --labels-key ground_truth --coarse coarse.npy --names classes.txt --out out/
"""


COMPARE_EPILOG = """\
reference formats (leaf names must be the tree's leaf names, from l2h tree --names):
  edges    one 'parent child' pair per line (e.g. the WordNet tree over ImageNet-1k)
  newick   a Newick tree (.nwk, .newick, .tre, .tree)
  mapping  CSV with a header 'class,coarse[,coarser...]' (.csv), or a JSON object
           {"class": "coarse", ...} (.json)

example:
  l2h compare results/tree --reference cifar100_superclasses.csv
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``l2h`` argument parser, with its ``tree`` and ``compare`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="l2h", description="Hierarchical clustering from the logits of any flat clusterer (L2H)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tree = commands.add_parser(
        "tree",
        help="build the L2H hierarchy of a logits file (and score it against labels)",
        description="Build the L2H hierarchy over the K clusters of an N x K logits (or probabilities)\n"
        "file; with --labels, score it (NMI, ARI, ACC, dendrogram and leaf purity).",
        epilog=TREE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tree.add_argument(
        "logits", metavar="LOGITS", type=Path, help="N x K scores: .npy (memory-mapped), .npz, .pt/.pth or .csv"
    )
    tree.add_argument(
        "--out", metavar="DIR", required=True, help="output folder: new, empty, or an earlier l2h tree output"
    )
    tree.add_argument(
        "--input",
        choices=INPUTS,
        default="logits",
        help="what LOGITS holds: logits (default) or probabilities (rows sum to 1)",
    )
    tree.add_argument("--key", metavar="NAME", help="array name inside a .npz / .pt file")
    tree.add_argument(
        "--labels", metavar="FILE", type=Path, help="true class per point (same formats), to compute metrics"
    )
    tree.add_argument("--labels-key", metavar="NAME", help="array name inside the --labels file")
    tree.add_argument(
        "--coarse",
        metavar="FILE",
        type=Path,
        help="coarser true class per point: scores the tree cut at that many groups",
    )
    tree.add_argument("--coarse-key", metavar="NAME", help="array name inside the --coarse file")
    tree.add_argument(
        "--aggregation",
        choices=AGGREGATIONS,
        default=AGGREGATIONS[0],
        help=f"score aggregation (default: {AGGREGATIONS[0]})",
    )
    tree.add_argument(
        "--strategy", choices=STRATEGIES, default=STRATEGIES[0], help=f"merging strategy (default: {STRATEGIES[0]})"
    )
    tree.add_argument(
        "--names",
        metavar="FILE",
        type=Path,
        help="cluster names: a text file with one name per line (K lines) or a JSON list",
    )
    tree.add_argument(
        "--bootstrap",
        metavar="B",
        type=int,
        default=0,
        help="support of each merge: the fraction of B trees on bootstrap resamples of the "
        "points that contain its clade (default: 0 = none)",
    )
    tree.add_argument("--seed", metavar="S", type=int, default=0, help="seed of the bootstrap resamples (default: 0)")
    tree.add_argument(
        "--cache-gib",
        metavar="GIB",
        type=float,
        default=None,
        help="memory that may hold exp(z - max z) of every row, which makes the merge steps "
        "cheaper on logits (merges are unchanged; 0 = off; default: half the available "
        "memory)",
    )
    tree.add_argument("--no-plot", action="store_true", help="do not draw dendrogram.png and tree.html")
    tree.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    tree.set_defaults(run=run_tree)
    compare = commands.add_parser(
        "compare",
        help="compare a tree with a reference hierarchy (WordNet, superclasses, ranks)",
        description="Compare the tree in DIR (from l2h tree) with a reference hierarchy; writes\n"
        "DIR/comparison.json: per reference level NMI/ARI of the tree cut at that level's number\n"
        "of groups, cophenetic correlation, normalised Robinson-Foulds distance and the LCA height\n"
        "of each class's first partner, each with its chance level over random trees.",
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("tree_dir", metavar="DIR", type=Path, help="an l2h tree output folder (tree.json)")
    compare.add_argument(
        "--reference",
        metavar="FILE",
        type=Path,
        required=True,
        help="'parent child' edge list, Newick tree, or fine->coarse CSV/JSON mapping",
    )
    compare.add_argument(
        "--format", choices=("edges", "newick", "mapping"), help="format of FILE (default: from its suffix and content)"
    )
    compare.add_argument(
        "--n-random", metavar="N", type=int, default=100, help="random trees for the chance levels (default: 100)"
    )
    compare.add_argument("--seed", type=int, default=0, help="seed of the random trees (default: 0)")
    compare.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    compare.set_defaults(run=run_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``l2h`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "compare" and args.n_random < 2:
        parser.error("--n-random must be at least 2")
    if args.command == "tree":
        for option, needs in (("labels_key", "labels"), ("coarse_key", "coarse"), ("coarse", "labels")):
            if getattr(args, option) is not None and getattr(args, needs) is None:
                parser.error(f"--{option.replace('_', '-')} needs --{needs}")
    try:
        return args.run(args, argv)
    except InputError as exc:
        print(f"l2h: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


def read_names(path: Path, k: int) -> list[str]:
    """K cluster names from a text file (one per line) or a JSON list."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read names ({exc.strerror if isinstance(exc, OSError) else exc})") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise InputError(f"{path}: expected a JSON list of names")
        names = [str(n) for n in names]
    else:
        names = [line.strip() for line in text.rstrip("\n").split("\n")] if text.strip() else []
    if len(names) != k:
        raise InputError(f"{path}: {len(names)} names given for K = {k} clusters")
    blank = [i for i, n in enumerate(names) if not n]
    if blank:
        raise InputError(f"{path}: name {blank[0]} is empty")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if seen.setdefault(name, i) != i:
            raise InputError(
                f"{path}: name {name!r} is given twice (lines {seen[name] + 1} and {i + 1}); "
                "cluster names must be unique"
            )
    return names


def _read_inputs(args) -> dict:
    """Load and validate every input; raise InputError before anything is written."""
    from l2h.io import load_array
    from l2h.outdir import check_out_dir
    from l2h.validation import check_input_kind, check_shape

    args.out = check_out_dir(args.out)
    scores = load_array(args.logits, key=args.key)
    check_input_kind(args.input)
    n, k = check_shape(scores, source=str(args.logits))  # the values are checked as l2h() reads them
    labels = coarse = names = None
    if args.labels is not None:
        labels = _read_labels(args.labels, args.labels_key, n)
    if args.coarse is not None:
        coarse = _read_labels(args.coarse, args.coarse_key, n)
    if args.names is not None:
        names = read_names(args.names, k)
    return {"scores": scores, "labels": labels, "coarse": coarse, "names": names}


def _read_labels(path: Path, key: str | None, n: int):
    import numpy as np

    from l2h.io import load_labels
    from l2h.validation import check_labels

    labels = check_labels(load_labels(path, key=key), n, source=str(path))
    if np.unique(labels).size == labels.size:
        raise InputError(f"{path}: no two points share a class, so dendrogram purity is undefined")
    return labels


def run_tree(args: argparse.Namespace, argv: list[str]) -> int:
    """``l2h tree``: read and check every input, build the tree, write the outputs as a whole."""
    import importlib
    from concurrent.futures import ThreadPoolExecutor

    from l2h.algorithm import l2h
    from l2h.io import provenance, write_json, write_text
    from l2h.levels import suggest_levels, tree_supports
    from l2h.outdir import replace_outputs
    from l2h.validation import looks_like_probabilities

    for option in ("bootstrap", "seed"):
        if getattr(args, option) < 0:
            raise InputError(f"--{option} must be >= 0, got {getattr(args, option)}")
    data = _read_inputs(args)
    scores, labels, coarse, names = data["scores"], data["labels"], data["coarse"], data["names"]
    n, k = scores.shape
    inputs = [str(p) for p in (args.logits, args.labels, args.coarse, args.names) if p is not None]
    options = {
        "input": args.input,
        "key": args.key,
        "labels_key": args.labels_key,
        "coarse_key": args.coarse_key,
        "aggregation": args.aggregation,
        "strategy": args.strategy,
        "bootstrap": args.bootstrap,
        "seed": args.seed,
        "plot": not args.no_plot,
    }
    with ThreadPoolExecutor(1) as background:  # checksums, package versions and the figure's imports
        record = background.submit(
            provenance,
            options,
            list(dict.fromkeys(inputs)),  # run beside L2H
            command=shlex.join(["l2h", *argv]),
            argv=["l2h", *argv],
            n_points=n,
            n_clusters=k,
        )
        if not args.no_plot:
            background.submit(importlib.import_module, "l2h.report.figures")
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tree, leaves = l2h(
                scores,
                aggregation=args.aggregation,
                strategy=args.strategy,
                input=args.input,
                progress=not args.quiet,
                source=str(args.logits),
                return_assignment=True,
                cache_gib=args.cache_gib,
                bootstrap=args.bootstrap,
                seed=args.seed,
            )
        seconds = time.perf_counter() - start
        probabilities = args.input == "logits" and looks_like_probabilities(scores)
        levels = suggest_levels(tree, scores, leaves=leaves, input=args.input, supports=tree_supports(tree))
        metrics = None
        if labels is not None:
            from l2h.metrics import evaluate

            metrics = evaluate(tree, leaves, labels, coarse=coarse)
        record = record.result()
    tree.info["source"] = {"file": str(args.logits), "key": args.key, "sha256": record["inputs"][str(args.logits)]}

    def write_all(folder: Path) -> None:
        tree.write(folder, names=names)
        if metrics is not None:
            write_json(folder / "metrics.json", metrics)
        write_json(folder / "levels.json", levels)
        if not args.no_plot:
            from l2h.report.figures import plot_dendrogram  # matplotlib is slow to import

            plot_dendrogram(
                tree,
                folder / "dendrogram.png",
                names=names,
                title=f"L2H hierarchy of {args.logits.name} ({k} clusters)",
            )
            from l2h.report.html import merge_support, tree_page, tree_payload

            view = tree_payload(tree, names=names, leaves=leaves, labels=labels, support=merge_support(tree))
            write_text(
                folder / "tree.html",
                tree_page(
                    view,
                    title=f"L2H hierarchy of {args.logits.name}",
                    description=f"N = {n:,} points, K = {k} clusters",
                ),
            )
        write_json(folder / "provenance.json", record)

    leftover = replace_outputs(args.out, write_all)
    for warning in caught:  # after the last possible error, so that an error stays a single line
        print(f"l2h: warning: {args.logits}: {warning.message}", file=sys.stderr)
    if probabilities:
        print(
            f"l2h: warning: {args.logits}: every row is non-negative and sums to 1, so these look like "
            "probabilities; if they are, pass --input probs (logits are read through a softmax)",
            file=sys.stderr,
        )
    if leftover is not None:
        print(
            f"l2h: warning: {leftover}: the previous outputs are kept there because a file appeared in "
            f"{args.out} during the run; move what you need and delete it",
            file=sys.stderr,
        )
    if not args.quiet:
        print(summary(tree, names, n, seconds, args.out, metrics, levels))
    return 0


def run_compare(args: argparse.Namespace, argv: list[str]) -> int:
    """``l2h compare``: score the tree in ``args.tree_dir`` against a reference, write comparison.json."""
    from l2h.compare import compare, format_summary, match_leaves, read_reference
    from l2h.hierarchy import Hierarchy
    from l2h.io import sha256_file, write_json

    tree_file = args.tree_dir / "tree.json"
    if not tree_file.is_file():
        raise InputError(f"{args.tree_dir}: no tree.json here; give a folder written by l2h tree")
    tree = Hierarchy.load(tree_file)
    reference = read_reference(args.reference, format=args.format)
    names = tree.names if tree.names is not None else [str(i) for i in range(tree.k)]
    matched = match_leaves(reference, names, source=str(tree_file))
    result = compare(tree, matched, n_random=args.n_random, seed=args.seed, progress=not args.quiet)
    result = {
        "tree": {"file": str(tree_file), "sha256": sha256_file(tree_file)},
        "reference": {
            "file": str(args.reference),
            "sha256": sha256_file(args.reference),
            "format": reference.format,
            "leaves": len(reference.leaves),
            "leaves_not_in_tree": len(reference.leaves) - tree.k,
        },
        "command": shlex.join(["l2h", *argv]),
        **result,
    }
    try:
        write_json(args.tree_dir / "comparison.json", result)
    except OSError as exc:
        raise InputError(f"{args.tree_dir / 'comparison.json'}: cannot write ({exc.strerror or exc})") from None
    if not args.quiet:
        print(format_summary(result, args.tree_dir / "comparison.json"))
    return 0


def summary(
    tree: Hierarchy,
    names: list[str] | None,
    n: int,
    seconds: float,
    out: Path,
    metrics: dict | None,
    levels: dict | None = None,
) -> str:
    """A few human-readable lines about the run."""
    k = tree.k
    label = (lambda i: names[i]) if names is not None else str
    sides = []
    for node in tree.children[-1]:
        members = tree.members(int(node))
        shown = ", ".join(label(i) for i in sorted(members)[:6]) + (", ..." if len(members) > 6 else "")
        sides.append(f"{len(members)} {{{shown}}}")
    lines = [
        f"l2h tree: N = {n:,} points, K = {k} clusters, L2H in {seconds:.2f} s -> {out}",
        f"top-level split: {sides[0]} | {sides[1]}",
    ]
    if tree.support is not None:
        import numpy as np

        support = tree.support[:-1] if k > 2 else tree.support  # the root's is always 1
        lines.append(
            f"bootstrap ({tree.info['bootstrap']['resamples']} resamples): median support "
            f"{float(np.median(support)):.2f}; {int((support >= 0.95).sum())} of {support.size} merges "
            "(root excluded) have support >= 0.95"
        )
    if metrics is not None:
        lines.append("metrics: " + "  ".join(f"{m} {metrics[m]:.4f}" for m in ("nmi", "ari", "acc", "dp", "lp")))
        if "coarse_dp" in metrics:
            lines.append(
                f"coarse ({metrics['coarse_groups']} groups): "
                + "  ".join(f"{m} {metrics['coarse_' + m]:.4f}" for m in ("nmi", "ari", "acc", "dp"))
            )
    if levels is not None:
        best = levels["suggestions"][:3]
        lines.append(
            "suggested levels: "
            + (", ".join(f"{s['n_groups']} groups (score {s['score']:.2f})" for s in best) if best else "none")
            + " (levels.json)"
        )
    return "\n".join(lines)
