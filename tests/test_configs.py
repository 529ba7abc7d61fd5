"""The Hydra configs and the experiment plan built from them (no jobs run here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from l2h.errors import InputError
from l2h.report.tables import runs_frame, summarize, to_csv, to_markdown
from l2h.stages.layout import L2H, Run, method_label
from l2h.stages.overrides import GRID_KEYS, Overrides, hydra_value
from l2h.stages.plan import Plan, group_options
from l2h.stages.spec import stages

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EXPERIMENTS = group_options(CONF, "experiment")
GROUP_FILES = sorted(p for p in CONF.glob("*/*.yaml") if p.parent.name != "hydra")


def test_the_paper_experiments_are_there():
    assert {
        "demo",
        "table1",
        "ablation_aggregation",
        "ablation_strategy",
        "robustness_k",
        "inat21_levels",
        "imagenet_case_study",
        "weak_backbone",
    } <= set(EXPERIMENTS)


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_group_file_name_matches(path):
    assert yaml.safe_load(path.read_text())["name"] == path.stem


def test_root_defaults():
    from l2h.stages.plan import _compose

    cfg = _compose(str(CONF), ())
    chosen = {g: cfg[g].name for g in ("dataset", "backbone", "clusterer", "l2h", "baseline", "paths", "experiment")}
    assert chosen == {
        "dataset": "digits",
        "backbone": "pixels",
        "clusterer": "kmeans",
        "l2h": "default",
        "baseline": "agglomerative",
        "paths": "default",
        "experiment": "demo",
    }
    hydra = yaml.safe_load((CONF / "config.yaml").read_text())["hydra"]
    assert hydra["job"]["chdir"] is False and hydra["output_subdir"] is None
    assert hydra["run"]["dir"] == "${oc.select:stage.output,.}"  # each job's Hydra run dir = its output folder


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes(name):
    """Each experiment composes and names only existing options and valid values (= Plan builds)."""
    plan = Plan(CONF, experiment=name)
    assert plan.name == name
    assert set(plan.experiment["grid"]) == set(GRID_KEYS)
    assert plan.runs
    for run in plan.runs:
        assert run.k >= 2
        assert plan.run_of(run.folder) == run
    for stage, fields in plan.jobs():
        plan.command(stage, fields, plan.inputs(stage, fields))  # every job's command line can be built


def test_demo_plan():
    """The default experiment: L2H-kmeans per space, L2H-TURTLE on both spaces, Ward per space, DeepECT on pixels,
    with TURTLE and DeepECT at demo scale and one thread per job."""
    plan = Plan(CONF)
    assert plan.name == "demo"
    l2h = {(r.backbone, r.method) for r in plan.runs if r.kind == "l2h"}
    assert l2h == {("pixels", "kmeans"), ("efficientnet_lite0", "kmeans"), ("pixels+efficientnet_lite0", "turtle")}
    baselines = {(r.backbone, r.method) for r in plan.runs if r.kind == "baseline"}
    assert baselines == {("pixels", "agglomerative"), ("efficientnet_lite0", "agglomerative"), ("pixels", "deepect")}
    assert all(r.k == 10 for r in plan.runs)  # K null = digits' 10 classes
    assert plan.runs[0].folder == "digits/pixels/kmeans_k10_s0/l2h_sum_of_cluster_means_lowest_score"
    assert "results/tables/demo.csv" in plan.report_outputs()
    assert len([p for p in plan.report_outputs() if "/digits_" in p]) == 3  # a dendrogram per L2H run

    turtle = {"dataset": "digits", "backbone": "pixels+efficientnet_lite0", "clusterer": "turtle", "k": 10, "seed": 0}
    assert plan.tracked("train_clusterer", turtle)["clusterer"]["outer_steps"] == 2000
    assert plan.inputs("train_clusterer", turtle)["test"] == [
        "results/features/digits/pixels/test.npy",
        "results/features/digits/efficientnet_lite0/test.npy",
    ]
    deepect = plan.tracked(
        "run_baseline", {"dataset": "digits", "backbone": "pixels", "baseline": "deepect", "k": 10, "seed": 0}
    )["baseline"]
    assert (deepect["pretrain_epochs"], deepect["clustering_epochs"], deepect["grow_interval"]) == (20, 20, 1)
    assert {s: plan.threads(s) for s in ("extract_features", "train_clusterer", "run_baseline")} == {
        "extract_features": 1,
        "train_clusterer": 1,
        "run_baseline": 1,
    }
    assert Plan(CONF, experiment="table1").threads("train_clusterer") == 4  # the stage's declared default


@pytest.mark.parametrize(
    "threads, message",
    [
        ("{train: 1}", "threads key 'train' is not a stage"),
        ("{train_clusterer: 0}", "experiment.threads.train_clusterer = 0: must be >= 1"),
        ("{train_clusterer: two}", "experiment.threads.train_clusterer = 'two': must be an integer"),
        ("{train_clusterer: true}", "experiment.threads.train_clusterer = true: must be an integer"),
    ],
)
def test_bad_experiment_threads(tmp_path, threads, message):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    demo = (conf / "experiment" / "demo.yaml").read_text()
    start = demo.index("\nthreads:")
    end = demo.index("\nfigures:")
    (conf / "experiment" / "demo.yaml").write_text(demo[:start] + f"\nthreads: {threads}" + demo[end:])
    with pytest.raises(InputError, match=re.escape(message)):
        Plan(conf)


def test_sweep_over_k_and_aggregation_is_one_override():
    plan = Plan(CONF, overrides="backbone=pixels clusterer.k=5,10,20 l2h.aggregation=sum_all,sum_of_cluster_means")
    trees = {(r.k, r.aggregation) for r in plan.runs if r.kind == "l2h"}
    assert trees == {(k, a) for k in (5, 10, 20) for a in ("sum_all", "sum_of_cluster_means")}
    assert {r.k for r in plan.runs if r.kind == "baseline"} == {5, 10, 20}
    # one model per clusterer (k-means, TURTLE) and K, shared by both Λ
    assert len([j for j in plan.jobs() if j[0] == "train_clusterer"]) == 2 * 3


def test_range_list_and_glob_sweeps():
    plan = Plan(CONF, overrides=["backbone=pixels", "k=range(4,9,2)", "baseline=[]", "seed=[0,1]"])
    assert {(r.k, r.seed) for r in plan.runs} == {(k, s) for k in (4, 6, 8) for s in (0, 1)}
    assert all(r.kind == "l2h" for r in plan.runs)
    plan = Plan(CONF, overrides="backbone=glob(pix*) baseline=[]")
    assert {r.backbone for r in plan.runs} == {"pixels"}


def test_passthrough_override_reaches_only_its_stage():
    base = Plan(CONF, overrides="backbone=pixels")
    edited = Plan(CONF, overrides="backbone=pixels clusterer.n_init=3")
    run = base.runs[0]
    train = {k: run.fields()[k] for k in ("dataset", "backbone", "clusterer", "k", "seed")}
    assert base.tracked("train_clusterer", train) != edited.tracked("train_clusterer", train)
    assert edited.tracked("train_clusterer", train)["clusterer"]["n_init"] == 3
    for stage, fields in base.jobs():
        if stage not in ("train_clusterer", "report"):
            assert base.tracked(stage, fields) == edited.tracked(stage, fields), stage
    assert "clusterer.n_init=3" in edited.command("train_clusterer", train, edited.inputs("train_clusterer", train))


def test_passthrough_override_reaches_the_options_that_have_its_key():
    """In the demo (k-means and TURTLE, Ward and DeepECT), `clusterer.n_init` is k-means' and `baseline.linkage`
    Ward's: each reaches the jobs of the options that have the key; a key that no option has is refused."""
    plan = Plan(CONF, overrides="clusterer.n_init=3 clusterer.outer_steps=50 baseline.linkage=average")
    by_method = {}
    for stage, fields in plan.jobs():
        if stage in ("train_clusterer", "run_baseline"):
            method = fields.get("clusterer") or fields["baseline"]
            by_method[method] = plan.command(stage, fields, plan.inputs(stage, fields))
    assert "clusterer.n_init=3" in by_method["kmeans"] and "clusterer.n_init=3" not in by_method["turtle"]
    assert "clusterer.outer_steps=50" in by_method["turtle"] and "outer_steps" not in by_method["kmeans"]
    assert "baseline.linkage=average" in by_method["agglomerative"]
    assert "baseline.linkage" not in by_method["deepect"]
    with pytest.raises(
        InputError,
        match=re.escape(
            "clusterer.nope: unknown key: it is in no clusterer option this experiment uses (kmeans, turtle)"
        ),
    ):
        Plan(CONF, overrides="clusterer.nope=1")
    with pytest.raises(InputError, match="clusterer.outer_steps: unknown key"):
        Plan(CONF, overrides="clusterer=kmeans clusterer.outer_steps=50")  # TURTLE's key, but no TURTLE run


def test_paths_and_runtime_keys_do_not_trigger_reruns():
    base = Plan(CONF, overrides="backbone=efficientnet_lite0")
    moved = Plan(CONF, overrides="backbone=efficientnet_lite0 paths.data=/elsewhere backbone.batch_size=7")
    fields = {"dataset": "digits", "backbone": "efficientnet_lite0", "split": "test"}
    assert base.tracked("extract_features", fields) == moved.tracked("extract_features", fields)
    assert "paths.data=/elsewhere" in moved.command("extract_features", fields, {"classes": "x"})


@pytest.mark.parametrize("kind", ["pixels", "efficientnet_lite", "open_clip", "timm"])
def test_backbone_runtime_keys_are_the_feature_cache_runtime_keys(kind):
    """The keys the features cache ignores are exactly the backbone schemas' runtime knobs."""
    from l2h import schema
    from l2h.features.backbone import RUNTIME_KEYS

    assert set(schema.runtime_keys("backbone", kind)) == set(RUNTIME_KEYS)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ("dataset=nope", "dataset 'nope': unknown"),
        ("backbone=pixels+nope", "backbone 'nope': unknown"),
        ("clusterer=nope", "clusterer 'nope': unknown"),
        ("clusterer.k=1", "K must be an integer >= 2"),
        ("k=2.5", "K must be an integer >= 2"),
        ("l2h.aggregation=median", "l2h.aggregation = 'median': must be one of"),
        ("l2h.strategy=random", "l2h.strategy = 'random': must be one of"),
        ("seed=-1", "seed = -1: must be an integer in 0..4294967295"),
        ("seed=4294967296", "seed = 4294967296: must be an integer in 0..4294967295"),
        ("clusterer.n_init=1,2", "sweeps a value that is not part of the result paths"),
        ("clusterer.no_such_key=1", "clusterer.no_such_key: unknown key"),
        ("+clusterer.n_inti=20", "clusterer.n_inti: unknown key (did you mean 'n_init'?)"),
        ("++clusterer.foo=1", "clusterer.foo: unknown key"),
        ("l2h.input=foo", "l2h.input = 'foo': must be one of logits, probs (set by override 'l2h.input=foo')"),
        ("l2h.block_rows=-1", "l2h.block_rows = -1: must be >= 1 (set by override 'l2h.block_rows=-1')"),
        ("dataset.offline=maybe", "dataset.offline = 'maybe': must be true or false"),
        ("dataset.offline=2", "dataset.offline = 2: must be true or false"),
        ("clusterer.k=100000", "cannot make more clusters than the 1257 points of digits's train split"),
        ("clusterer.k='5", "cannot split into overrides"),
        ("clusterer.temperature=-1", "clusterer.temperature = -1: must be 'auto' or a positive number"),
        ("baseline.linkage=single", "baseline.linkage = 'single': must be one of ward, average"),
        ("experiment=table1", "--config experiment=NAME"),
        ("stage.output=x", "the pipeline sets stage"),
        ("nogroup.x=1", "does not name a config group"),
        ("dataset=", "dataset '': unknown"),
        ("dataset=[", "cannot parse"),
    ],
)
def test_bad_overrides_fail_at_composition(overrides, message):
    with pytest.raises(InputError, match=re.escape(message)):
        Plan(CONF, overrides=overrides)


def test_unknown_experiment_and_tag():
    with pytest.raises(InputError, match="experiment 'nope': unknown"):
        Plan(CONF, experiment="nope")
    with pytest.raises(InputError, match="tag"):
        Plan(CONF, tag="a/b")
    assert Plan(CONF, tag="k-sweep").report_outputs()[0] == "results/tables/demo+k-sweep.csv"


def test_paths_override_moves_every_output():
    plan = Plan(CONF, overrides="paths.results=out/elsewhere")
    assert all(p.startswith("out/elsewhere/") for p in plan.report_outputs())
    assert plan.output_patterns("build_tree")[0] == f"out/elsewhere/{L2H}/tree.json"


def test_hydra_value_round_trips_through_hydras_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    value = {"a": "results/x+y/z_k10.npy", "b": ["p", "q r"], "k": 10, "f": 0.5, "n": None, "t": True}
    parsed = OverridesParser.create().parse_overrides([f"x={hydra_value(value)}"])[0].value()
    assert parsed == value
    for text in ("it's", 'say "hi"', "back\\slash", "end\\", "quote\\'d", "a,b c=d"):
        assert OverridesParser.create().parse_overrides([f"x={hydra_value(text)}"])[0].value() == text
    with pytest.raises(InputError):
        hydra_value("${oc.env:HOME}")


def test_overrides_parser_splits_like_a_shell():
    parsed = Overrides.parse("'clusterer.k=5,10' clusterer.n_init=3", options={})
    assert parsed.grid == {"k": ["5", "10"]}
    assert parsed.passthrough == [("clusterer", "clusterer.n_init=3")]


def test_wildcard_constraints_match_run_folders():
    plan = Plan(CONF)
    patterns = plan.wildcard_constraints()
    for run in plan.runs:
        assert re.fullmatch(patterns["run"], run.folder)
    assert not re.fullmatch(patterns["run"], "digits/pixels/kmeans_k10_s0")
    assert re.fullmatch(patterns["backbone"], "clip_vitl14+dinov2_vitg14")
    assert plan.run_of("cifar100/clip_vitl14+dinov2_vitg14/kmeans_k90_s1/l2h_sum_all_all_pairs") == Run(
        "l2h", "cifar100", "clip_vitl14+dinov2_vitg14", "kmeans", 90, 1, "sum_all", "all_pairs"
    )


def test_every_stage_has_a_module_and_a_rule():
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert set(stages()) >= {
        "prepare_data",
        "prefetch_weights",
        "extract_features",
        "train_clusterer",
        "build_tree",
        "run_baseline",
        "evaluate",
        "report",
    }
    for name in stages():
        assert (REPO / "src" / "l2h" / "stages" / f"{name}.py").is_file()
        assert f"rule {name}:" in rules
        assert f'stage_trigger("{name}")' in rules  # every rule has its rerun trigger
        assert f'stage_outputs("{name}")' in rules  # ... and its outputs flagged update() by the helper


def test_method_labels():
    assert method_label("l2h", "turtle", {}) == "L2H-TURTLE"
    assert method_label("l2h", "kmeans", {}) == "L2H-kmeans"
    assert method_label("baseline", "agglomerative", {"linkage": "ward"}) == "Agglomerative (ward)"
    assert method_label("baseline", "deepect", {}) == "DeepECT"


def test_tables_average_over_seeds():
    def record(seed, acc, coarse=None):
        metrics = {"nmi": 0.5, "ari": 0.4, "acc": acc, "dp": 0.3, "lp": 0.9}
        if coarse is not None:
            metrics.update(coarse_nmi=coarse, coarse_ari=coarse, coarse_acc=coarse, coarse_dp=coarse)
        return {
            "run": {
                "method": "L2H-kmeans",
                "dataset": "d",
                "backbone": "b",
                "k": 10,
                "seed": seed,
                "aggregation": "sum_all",
                "strategy": "lowest_score",
            },
            "labels": {"classes": 10, "coarse": 2 if coarse is not None else None},
            "n_points": 5,
            "metrics": metrics,
        }

    rows = runs_frame([record(0, 0.5, 0.7), record(1, 0.7, 0.9)])
    csv_text = to_csv(rows)
    assert csv_text.splitlines()[0].startswith("method,dataset,backbone,k,seed")
    assert "coarse_dp" in csv_text.splitlines()[0] and len(csv_text.splitlines()) == 3
    md = to_markdown(summarize(rows), title="t")
    line = [row for row in md.splitlines() if row.startswith("| L2H-kmeans")]
    assert len(line) == 1 and "| 2 |" in line[0] and "0.600 ± 0.141" in line[0] and "10 classes; coarse: 2" in line[0]
    single = to_markdown(summarize(runs_frame([record(0, 0.5)])), title="t")
    assert "coarse" not in single and "| 0.500 |" in single


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_option_file_matches_its_schema(path):
    """Each option of conf/ composes into a node its kind's schema accepts (unknown keys, types, ranges)."""
    from l2h import schema
    from l2h.stages.plan import _compose

    group = path.parent.name
    cfg = _compose(str(CONF), (f"{group}={path.stem}",))
    from omegaconf import OmegaConf

    schema.validate(group, OmegaConf.to_container(cfg[group], resolve=True))


@pytest.mark.parametrize(
    "group, patch, message",
    [
        ("clusterer", {"k": True}, "clusterer.k = true: must be an integer"),
        ("clusterer", {"normalize": "yes"}, "clusterer.normalize = 'yes': must be true or false"),
        ("clusterer", {"n_init": 0}, "clusterer.n_init = 0: must be >= 1"),
        ("clusterer", {"seed": 2**32}, "clusterer.seed = 4294967296: must be <= 4294967295"),
        ("clusterer", {"extra": 1}, "clusterer.extra: unknown key"),
    ],
)
def test_schema_is_strict(group, patch, message):
    from omegaconf import OmegaConf

    from l2h import schema

    node = {**OmegaConf.to_container(OmegaConf.load(CONF / group / "kmeans.yaml")), **patch}
    with pytest.raises(InputError, match=re.escape(message)):
        schema.validate(group, node)


def test_runtime_keys_are_left_out_of_the_trigger_and_gpus_follow_the_options():
    from l2h import schema

    plan = Plan(CONF)
    train = {"dataset": "digits", "backbone": "pixels", "clusterer": "kmeans", "k": 10, "seed": 0}
    tracked = plan.tracked("train_clusterer", train)["clusterer"]
    assert "block_rows" not in tracked and "n_init" in tracked
    assert set(schema.runtime_keys("clusterer", "turtle")) == {
        "device",
        "checkpoint_dir",
        "checkpoint_every",
        "progress",
    }
    assert not plan.needs_gpu("train_clusterer", train)  # k-means
    turtle = {**train, "backbone": "pixels+efficientnet_lite0", "clusterer": "turtle"}
    assert plan.needs_gpu("train_clusterer", turtle)  # device: auto
    assert not plan.needs_gpu("extract_features", {"dataset": "digits", "backbone": "pixels"})
    assert plan.needs_gpu("extract_features", {"dataset": "digits", "backbone": "efficientnet_lite0"})
    assert not plan.needs_gpu(
        "run_baseline", {"dataset": "digits", "backbone": "pixels", "baseline": "deepect", "k": 10, "seed": 0}
    )  # device: cpu
    cpu = Plan(CONF, overrides="clusterer.device=cpu")
    assert not cpu.needs_gpu("train_clusterer", turtle)
    assert cpu.tracked("train_clusterer", turtle) == plan.tracked("train_clusterer", turtle)


def test_checkpoints_go_inside_the_jobs_folder():
    plan = Plan(CONF)
    turtle = {"dataset": "digits", "backbone": "pixels+efficientnet_lite0", "clusterer": "turtle", "k": 10, "seed": 0}
    import shlex

    args = shlex.split(plan.command("train_clusterer", turtle, plan.inputs("train_clusterer", turtle)))
    assert (
        "clusterer.checkpoint_dir='results/digits/pixels+efficientnet_lite0/turtle_k10_s0/.checkpoints/train_clusterer'"
    ) in args
    kmeans = {**turtle, "backbone": "pixels", "clusterer": "kmeans"}
    assert "checkpoint_dir" not in plan.command("train_clusterer", kmeans, plan.inputs("train_clusterer", kmeans))
    own = Plan(CONF, overrides="clusterer.checkpoint_dir=/scratch/ck")
    args = shlex.split(own.command("train_clusterer", turtle, own.inputs("train_clusterer", turtle)))
    assert "clusterer.checkpoint_dir=/scratch/ck" in args and not any(".checkpoints" in a for a in args)


def test_every_intermediate_is_a_target():
    plan = Plan(CONF)
    targets = set(plan.all_outputs())
    for stage, fields in plan.jobs():
        assert set(plan.outputs(stage, fields)) <= targets
    assert "results/features/digits/pixels/test.npy" in targets
    assert "results/digits/pixels/kmeans_k10_s0/logits.npy" in targets
