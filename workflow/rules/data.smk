rule prepare_data:
    input:
        unpack(stage_inputs("prepare_data")),
    output:
        stage_outputs("prepare_data"),
    params:
        config=stage_trigger("prepare_data"),
        command=stage_command("prepare_data"),
    log:
        stage_log("prepare_data"),
    threads: stage_threads("prepare_data")
    resources:
        **stage_resources("prepare_data"),
    priority: stage_priority("prepare_data")
    localrule: stage_local("prepare_data")
    shell:
        "{params.command} > {log} 2>&1"
