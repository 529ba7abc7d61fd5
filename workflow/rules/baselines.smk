rule run_baseline:
    input:
        unpack(stage_inputs("run_baseline")),
    output:
        stage_outputs("run_baseline"),
    params:
        config=stage_trigger("run_baseline"),
        command=stage_command("run_baseline"),
    log:
        stage_log("run_baseline"),
    threads: stage_threads("run_baseline")
    resources:
        **stage_resources("run_baseline"),
    priority: stage_priority("run_baseline")
    localrule: stage_local("run_baseline")
    shell:
        "{params.command} > {log} 2>&1"
