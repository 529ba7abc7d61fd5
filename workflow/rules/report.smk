rule report:
    input:
        unpack(stage_inputs("report")),
    output:
        stage_outputs("report"),
    params:
        config=stage_trigger("report"),
        command=stage_command("report"),
    log:
        stage_log("report"),
    threads: stage_threads("report")
    resources:
        **stage_resources("report"),
    priority: stage_priority("report")
    localrule: stage_local("report")
    shell:
        "{params.command} > {log} 2>&1"
