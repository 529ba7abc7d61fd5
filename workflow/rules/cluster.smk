rule train_clusterer:
    input:
        unpack(stage_inputs("train_clusterer")),
    output:
        PLAN.output_patterns("train_clusterer"),
    params:
        config=stage_config("train_clusterer"),
        command=stage_command("train_clusterer"),
    log:
        PLAN.log_pattern("train_clusterer"),
    threads: PLAN.threads("train_clusterer", 4)
    resources:
        gpu=1,
        mem_mb=lambda wildcards, input: max(16000, 4 * int(input.size_mb)),
        runtime=480,
    shell:
        "{params.command} > {log} 2>&1"
