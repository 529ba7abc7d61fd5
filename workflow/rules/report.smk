rule report:
    localrule: True
    input:
        unpack(stage_inputs("report")),
    output:
        PLAN.report_outputs(),
    params:
        config=stage_config("report"),
        command=stage_command("report"),
    log:
        PLAN.log_pattern("report"),
    shell:
        "{params.command} > {log} 2>&1"
