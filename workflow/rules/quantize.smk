# Stage 3: the behaviour-bound tokenizer (shared residual codebook over text, image and behaviour streams)
# and the semantic IDs it assigns. One run per tokenizer configuration the variants need.


rule quantize:
    input:
        embeddings=get_tokenizer_embeddings,
        train="results/{dataset}/data/train.parquet",
    output:
        checkpoint="results/{dataset}/quantize/{tokenizer}/tokenizer.pt",
        codebook="results/{dataset}/quantize/{tokenizer}/codebook.parquet",
        log_table="results/{dataset}/quantize/{tokenizer}/log.parquet",
    log:
        "logs/quantize/{dataset}.{tokenizer}.log",
    conda:
        "../../envs/model.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=get_gpu_request,
    params:
        script=script("quantize.py"),
        seed=config["quantize"]["seed"],
        options=lambda wildcards: to_json(get_quantize_options(wildcards)),
    shell:
        "{params.script} --embeddings-dir results/{wildcards.dataset}/embeddings"
        " --train {input.train} --tokenizer {wildcards.tokenizer}"
        " --config-json {params.options:q} --seed {params.seed}"
        " --out-dir results/{wildcards.dataset}/quantize/{wildcards.tokenizer}"
        " --threads {threads} > {log} 2>&1"


rule assign_sids:
    input:
        embeddings=get_tokenizer_embeddings,
        checkpoint="results/{dataset}/quantize/{tokenizer}/tokenizer.pt",
    output:
        sids="results/{dataset}/sids/{tokenizer}/semantic_ids.parquet",
        quality=report(
            "results/{dataset}/sids/{tokenizer}/sid_quality.json",
            caption="../report/sid_quality.rst",
            category="2. Semantic IDs",
            subcategory="{dataset}",
            labels={"view": "SID quality: numbers (JSON)", "tokenizer": "{tokenizer}"},
        ),
    log:
        "logs/assign_sids/{dataset}.{tokenizer}.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        script=script("assign_sids.py"),
    shell:
        "{params.script} --quantize-dir results/{wildcards.dataset}/quantize/{wildcards.tokenizer}"
        " --embeddings-dir results/{wildcards.dataset}/embeddings"
        " --out-dir results/{wildcards.dataset}/sids/{wildcards.tokenizer}"
        " --threads {threads} > {log} 2>&1"
