rule prepare_data:
    localrule: True
    output:
        PLAN.output_patterns("prepare_data"),
    params:
        config=stage_config("prepare_data"),
        command=stage_command("prepare_data"),
    log:
        PLAN.log_pattern("prepare_data"),
    shell:
        "{params.command} > {log} 2>&1"
