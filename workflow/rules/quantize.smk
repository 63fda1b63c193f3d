# Stage 3: the behaviour-bound tokenizer (shared residual codebook over text, image and behaviour streams)
# and the semantic IDs it assigns. One run per tokenizer configuration and seed the variants need (the seed also
# picks the behaviour embedding: common.smk, get_tokenizer_seed).


rule quantize:
    input:
        unpack(get_tokenizer_embeddings),
        train="results/{dataset}/data/train.parquet",
    output:
        checkpoint="results/{dataset}/quantize/{tokenizer}/seed{seed}/tokenizer.pt",
        codebook="results/{dataset}/quantize/{tokenizer}/seed{seed}/codebook.parquet",
        log_table="results/{dataset}/quantize/{tokenizer}/seed{seed}/log.parquet",
    log:
        "logs/quantize/{dataset}.{tokenizer}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=get_gpu_request,
    params:
        script=script("quantize.py"),
        behavior=get_behavior_arg,
        options=lambda wildcards: to_json(get_quantize_options(wildcards)),
    shell:
        "{params.script} --embeddings-dir results/{wildcards.dataset}/embeddings {params.behavior}"
        " --train {input.train} --tokenizer {wildcards.tokenizer}"
        " --config-json {params.options:q} --seed {wildcards.seed}"
        " --out-dir results/{wildcards.dataset}/quantize/{wildcards.tokenizer}/seed{wildcards.seed}"
        " --threads {threads} > {log} 2>&1"


rule assign_sids:
    input:
        unpack(get_tokenizer_embeddings),
        checkpoint="results/{dataset}/quantize/{tokenizer}/seed{seed}/tokenizer.pt",
    output:
        sids="results/{dataset}/sids/{tokenizer}/seed{seed}/semantic_ids.parquet",
        quality=report(
            "results/{dataset}/sids/{tokenizer}/seed{seed}/sid_quality.json",
            caption="../report/sid_quality.rst",
            category="2. Semantic IDs",
            subcategory="{dataset}",
            labels={
                "view": "SID quality: numbers (JSON)",
                "tokenizer": "{tokenizer}",
                "seed": "{seed}",
            },
        ),
    log:
        "logs/assign_sids/{dataset}.{tokenizer}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        script=script("assign_sids.py"),
        behavior=get_behavior_arg,
    shell:
        "{params.script} --quantize-dir results/{wildcards.dataset}/quantize/{wildcards.tokenizer}/seed{wildcards.seed}"
        " --embeddings-dir results/{wildcards.dataset}/embeddings {params.behavior}"
        " --out-dir results/{wildcards.dataset}/sids/{wildcards.tokenizer}/seed{wildcards.seed}"
        " --threads {threads} > {log} 2>&1"
