# l2h pipeline: dataset → features → flat clusterer → L2H tree / baselines → metrics → report.
# Run from the repository root:  snakemake --cores all                 (the default experiment, demo)
#                                snakemake --cores all --config experiment=table1
#                                snakemake --cores all --config overrides="clusterer.k=5,10,20"
# The rules live in workflow/rules/; every parameter comes from the Hydra configs in conf/ (beside this file),
# which workflow/rules/common.smk turns into jobs. No profile is needed for a local run; on SLURM add
# --profile workflow/profiles/slurm.

include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        PLAN.all_outputs(),


include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/hierarchy.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
