rule prefetch_weights:
    input:
        unpack(stage_inputs("prefetch_weights")),
    output:
        stage_outputs("prefetch_weights"),
    params:
        config=stage_trigger("prefetch_weights"),
        command=stage_command("prefetch_weights"),
    log:
        stage_log("prefetch_weights"),
    threads: stage_threads("prefetch_weights")
    resources:
        **stage_resources("prefetch_weights"),
    priority: stage_priority("prefetch_weights")
    localrule: stage_local("prefetch_weights")
    shell:
        "{params.command} > {log} 2>&1"


rule extract_features:
    input:
        unpack(stage_inputs("extract_features")),
    output:
        stage_outputs("extract_features"),
    params:
        config=stage_trigger("extract_features"),
        command=stage_command("extract_features"),
    log:
        stage_log("extract_features"),
    threads: stage_threads("extract_features")
    resources:
        **stage_resources("extract_features"),
    priority: stage_priority("extract_features")
    localrule: stage_local("extract_features")
    shell:
        "{params.command} > {log} 2>&1"
