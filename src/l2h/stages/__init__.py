"""Pipeline stages: one thin Hydra entry point per Snakemake rule (``python -m l2h.stages.<stage>``).

prepare_data → extract_features → train_clusterer → build_tree / run_baseline → evaluate → report.
Stages exchange files only; :mod:`l2h.stages.plan` holds the layout and the experiment grid,
:mod:`l2h.stages.app` the Hydra main every stage shares.
"""
