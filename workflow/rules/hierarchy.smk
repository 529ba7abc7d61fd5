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
    shell:
        "{params.command} > {log} 2>&1"
