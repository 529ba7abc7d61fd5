rule build_tree:
    input:
        unpack(stage_inputs("build_tree")),
    output:
        PLAN.output_patterns("build_tree"),
    params:
        config=stage_config("build_tree"),
        command=stage_command("build_tree"),
    log:
        PLAN.log_pattern("build_tree"),
    resources:
        mem_mb=lambda wildcards, input: max(4000, 3 * int(input.size_mb)),
        runtime=120,
    shell:
        "{params.command} > {log} 2>&1"
