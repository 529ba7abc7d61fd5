rule train_clusterer:
    input:
        unpack(stage_inputs("train_clusterer")),
    output:
        stage_outputs("train_clusterer"),
    params:
        config=stage_trigger("train_clusterer"),
        command=stage_command("train_clusterer"),
    log:
        stage_log("train_clusterer"),
    threads: stage_threads("train_clusterer")
    resources:
        **stage_resources("train_clusterer"),
    priority: stage_priority("train_clusterer")
    localrule: stage_local("train_clusterer")
    shell:
        "{params.command} > {log} 2>&1"
