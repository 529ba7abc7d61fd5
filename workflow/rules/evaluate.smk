rule evaluate:
    input:
        unpack(stage_inputs("evaluate")),
    output:
        stage_outputs("evaluate"),
    params:
        config=stage_trigger("evaluate"),
        command=stage_command("evaluate"),
    log:
        stage_log("evaluate"),
    threads: stage_threads("evaluate")
    resources:
        **stage_resources("evaluate"),
    priority: stage_priority("evaluate")
    localrule: stage_local("evaluate")
    shell:
        "{params.command} > {log} 2>&1"
