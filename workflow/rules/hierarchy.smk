rule build_tree:
    input:
        unpack(stage_inputs("build_tree")),
    output:
        stage_outputs("build_tree"),
    params:
        config=stage_trigger("build_tree"),
        command=stage_command("build_tree"),
    log:
        stage_log("build_tree"),
    threads: stage_threads("build_tree")
    resources:
        **stage_resources("build_tree"),
    priority: stage_priority("build_tree")
    localrule: stage_local("build_tree")
    shell:
        "{params.command} > {log} 2>&1"
