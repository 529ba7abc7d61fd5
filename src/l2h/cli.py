"""The ``l2h`` command: from any file of logits (or probabilities) to a hierarchy, metrics and a figure.

``l2h tree LOGITS --out DIR`` validates every input first; on bad input it prints one line
``l2h: error: <file>: <problem>``, exits with status 2 and writes nothing. Outputs are produced in a
temporary folder beside DIR and moved into place only once all of them exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from l2h import __version__
from l2h.errors import InputError
from l2h.options import AGGREGATIONS, INPUTS, STRATEGIES

# numpy, scipy (metrics) and matplotlib (figure) are imported where they are used, so that `l2h --help`
# and a run without labels or figure do not pay for them

OUTPUTS = ("tree.json", "linkage.npy", "tree.nwk", "metrics.json", "dendrogram.png", "provenance.json")

TREE_EPILOG = """\
writes to DIR:
  tree.json        the lossless record of the hierarchy (ordered merges, scores, options; with
                   --bootstrap, the support of each merge)
  linkage.npy      the hierarchy as a scipy linkage matrix (height = merge step)
  tree.nwk         the hierarchy in Newick format (leaf names from --names; with --bootstrap,
                   each internal node is labelled with its support)
  metrics.json     with --labels: nmi, nmi_geometric, ari, acc, dp, lp (+ coarse_* with --coarse)
  dendrogram.png   the dendrogram (unless --no-plot)
  provenance.json  command line, options, package versions, input checksums

bad input (NaN/inf, wrong shape, label count, missing key, ...) gives a one-line error,
exit status 2, and nothing is written.

examples:
  l2h tree logits.npy --out results/tree
  l2h tree logits.npy --bootstrap 100 --seed 0 --out results/tree
  l2h tree preds.npz --key predictions --input probs \\
      --labels preds.npz --labels-key ground_truth --coarse coarse.npy --names classes.txt --out out/
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l2h", description="Hierarchical clustering from the logits of any flat clusterer (L2H).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tree = commands.add_parser(
        "tree", help="build the L2H hierarchy of a logits file (and score it against labels)",
        description="Build the L2H hierarchy over the K clusters of an N x K logits (or probabilities)\n"
                    "file; with --labels, score it (NMI, ARI, ACC, dendrogram and leaf purity).",
        epilog=TREE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tree.add_argument("logits", metavar="LOGITS", type=Path,
                      help="N x K scores: .npy (memory-mapped), .npz, .pt/.pth or .csv")
    tree.add_argument("--out", metavar="DIR", type=Path, required=True, help="output folder")
    tree.add_argument("--input", choices=INPUTS, default="logits",
                      help="what LOGITS holds: logits (default) or probabilities (rows sum to 1)")
    tree.add_argument("--key", metavar="NAME", help="array name inside a .npz / .pt file")
    tree.add_argument("--labels", metavar="FILE", type=Path,
                      help="true class per point (same formats), to compute metrics")
    tree.add_argument("--labels-key", metavar="NAME", help="array name inside the --labels file")
    tree.add_argument("--coarse", metavar="FILE", type=Path,
                      help="coarser true class per point: scores the tree cut at that many groups")
    tree.add_argument("--coarse-key", metavar="NAME", help="array name inside the --coarse file")
    tree.add_argument("--aggregation", choices=AGGREGATIONS, default=AGGREGATIONS[0],
                      help=f"score aggregation (default: {AGGREGATIONS[0]})")
    tree.add_argument("--strategy", choices=STRATEGIES, default=STRATEGIES[0],
                      help=f"merging strategy (default: {STRATEGIES[0]})")
    tree.add_argument("--names", metavar="FILE", type=Path,
                      help="cluster names: a text file with one name per line (K lines) or a JSON list")
    tree.add_argument("--bootstrap", metavar="B", type=int, default=0,
                      help="support of each merge: the fraction of B trees on bootstrap resamples of the "
                           "points that contain its clade (default: 0 = none)")
    tree.add_argument("--seed", metavar="S", type=int, default=0,
                      help="seed of the bootstrap resamples (default: 0)")
    tree.add_argument("--cache-gib", metavar="GIB", type=float, default=None,
                      help="memory that may hold exp(z - max z) of every row, which makes the merge steps "
                           "cheaper on logits (merges are unchanged; 0 = off; default: half the available "
                           "memory)")
    tree.add_argument("--no-plot", action="store_true", help="do not draw dendrogram.png")
    tree.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    tree.set_defaults(run=run_tree)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``l2h`` console script; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
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
        raise InputError(f"{path}: cannot read names ({exc.strerror if isinstance(exc, OSError) else exc})")
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
    return names


def _read_inputs(args) -> dict:
    """Load and validate every input; raise InputError before anything is written."""
    from l2h.io import load_array
    from l2h.validation import check_input_kind, check_shape

    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out}: exists and is not a directory")
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


def run_tree(args, argv: list[str]) -> int:
    import importlib
    from concurrent.futures import ThreadPoolExecutor

    from l2h.algorithm import l2h
    from l2h.io import provenance, write_json

    for option in ("bootstrap", "seed"):
        if getattr(args, option) < 0:
            raise InputError(f"--{option} must be >= 0, got {getattr(args, option)}")
    data = _read_inputs(args)
    scores, labels, coarse, names = data["scores"], data["labels"], data["coarse"], data["names"]
    n, k = scores.shape
    inputs = [str(p) for p in (args.logits, args.labels, args.coarse, args.names) if p is not None]
    options = {"input": args.input, "key": args.key, "labels_key": args.labels_key,
               "coarse_key": args.coarse_key, "aggregation": args.aggregation, "strategy": args.strategy,
               "bootstrap": args.bootstrap, "seed": args.seed, "plot": not args.no_plot}
    with ThreadPoolExecutor(1) as background:   # checksums, package versions and the figure's imports
        record = background.submit(provenance, options, list(dict.fromkeys(inputs)),  # run beside L2H
                                   command=shlex.join(["l2h", *argv]), argv=["l2h", *argv], n_points=n,
                                   n_clusters=k)
        if not args.no_plot:
            background.submit(importlib.import_module, "l2h.report.figures")
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tree, leaves = l2h(scores, aggregation=args.aggregation, strategy=args.strategy, input=args.input,
                               progress=not args.quiet, source=str(args.logits), return_assignment=True,
                               cache_gib=args.cache_gib, bootstrap=args.bootstrap, seed=args.seed)
        seconds = time.perf_counter() - start
        metrics = None
        if labels is not None:
            from l2h.metrics import evaluate

            metrics = evaluate(tree, leaves, labels, coarse=coarse)
        record = record.result()
    tree.info["source"] = {"file": str(args.logits), "key": args.key,
                           "sha256": record["inputs"][str(args.logits)]}

    def write_all(folder: Path) -> None:
        tree.write(folder, names=names)
        if metrics is not None:
            write_json(folder / "metrics.json", metrics)
        if not args.no_plot:
            from l2h.report.figures import plot_dendrogram  # matplotlib is slow to import

            plot_dendrogram(tree, folder / "dendrogram.png", names=names,
                            title=f"L2H hierarchy of {args.logits.name} ({k} clusters)")
        write_json(folder / "provenance.json", record)

    _write_outputs(args.out, write_all)
    for warning in caught:  # after the last possible error, so that an error stays a single line
        print(f"l2h: warning: {args.logits}: {warning.message}", file=sys.stderr)
    if not args.quiet:
        print(summary(tree, names, n, seconds, args.out, metrics))
    return 0


def _write_outputs(out: Path, write_all) -> None:
    """Run ``write_all(folder)`` on a fresh folder beside ``out``; then move the results into ``out``.

    A new ``out`` is one rename. An existing ``out`` gets each output replaced by a rename, and
    outputs of an earlier run that this run does not produce (metrics, figure) are removed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_all(tmp)
        os.chmod(tmp, 0o755)
        if not out.exists():
            os.replace(tmp, out)
            return
        for name in OUTPUTS:
            if (tmp / name).exists():
                os.replace(tmp / name, out / name)
            else:
                (out / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summary(tree, names, n: int, seconds: float, out: Path, metrics: dict | None) -> str:
    """A few human-readable lines about the run."""
    import numpy as np

    k = tree.k
    label = (lambda i: names[i]) if names is not None else str
    sides = []
    for node in tree.children[-1]:
        members = tree.members(int(node))
        shown = ", ".join(label(i) for i in sorted(members)[:6]) + (", ..." if len(members) > 6 else "")
        sides.append(f"{len(members)} {{{shown}}}")
    lines = [f"l2h tree: N = {n:,} points, K = {k} clusters, L2H in {seconds:.2f} s -> {out}",
             f"top-level split: {sides[0]} | {sides[1]}"]
    if tree.support is not None:
        support = tree.support[:-1] if k > 2 else tree.support      # the root's is always 1
        lines.append(f"bootstrap ({tree.info['bootstrap']['resamples']} resamples): median support "
                     f"{float(np.median(support)):.2f}; {int((support >= 0.95).sum())} of {support.size} merges "
                     "(root excluded) have support >= 0.95")
    if metrics is not None:
        lines.append("metrics: " + "  ".join(f"{m} {metrics[m]:.4f}" for m in ("nmi", "ari", "acc", "dp", "lp")))
        if "coarse_dp" in metrics:
            lines.append(f"coarse ({metrics['coarse_groups']} groups): " + "  ".join(
                f"{m} {metrics['coarse_' + m]:.4f}" for m in ("nmi", "ari", "acc", "dp")))
    return "\n".join(lines)
