"""The names of L2H's options, importable without numpy (the ``l2h`` command's ``--help`` needs only these)."""

AGGREGATIONS = ("sum_of_cluster_means", "sum_all", "mean_all", "mean_of_cluster_means")
STRATEGIES = ("lowest_score", "all_pairs")
INPUTS = ("logits", "probs")
