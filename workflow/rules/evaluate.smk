rule evaluate:
    input:
        unpack(stage_inputs("evaluate")),
    output:
        PLAN.output_patterns("evaluate"),
    params:
        config=stage_config("evaluate"),
        command=stage_command("evaluate"),
    log:
        PLAN.log_pattern("evaluate"),
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "{params.command} > {log} 2>&1"
