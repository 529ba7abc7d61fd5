rule run_baseline:
    input:
        unpack(stage_inputs("run_baseline")),
    output:
        PLAN.output_patterns("run_baseline"),
    params:
        config=stage_config("run_baseline"),
        command=stage_command("run_baseline"),
    log:
        PLAN.log_pattern("run_baseline"),
    threads: PLAN.threads("run_baseline", 4)
    resources:
        gpu=lambda wildcards: int(wildcards.baseline in ("deepect", "treevae")),
        mem_mb=64000,
        runtime=720,
    shell:
        "{params.command} > {log} 2>&1"
