rule prefetch_weights:
    localrule: True
    output:
        PLAN.output_patterns("prefetch_weights"),
    params:
        config=stage_config("prefetch_weights"),
        command=stage_command("prefetch_weights"),
    log:
        PLAN.log_pattern("prefetch_weights"),
    shell:
        "{params.command} > {log} 2>&1"


rule extract_features:
    input:
        unpack(stage_inputs("extract_features")),
    output:
        PLAN.output_patterns("extract_features"),
    params:
        config=stage_config("extract_features"),
        command=stage_command("extract_features"),
    log:
        PLAN.log_pattern("extract_features"),
    threads: PLAN.threads("extract_features", 4)
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=720,
    shell:
        "{params.command} > {log} 2>&1"
