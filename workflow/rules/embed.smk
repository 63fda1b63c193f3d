# Stage 2: modality embeddings of every item (text, image) and the behaviour embedding (ID-only SASRec, one per
# tokenizer seed).
# Text and image run as `embed.shards` jobs each and are gathered, so a cluster embeds a catalogue in parallel.


rule embed_text:
    input:
        item_table="results/{dataset}/data/items.parquet",
    output:
        temp("results/{dataset}/embeddings/shards/text.{shard}-of-{n}.parquet"),
    log:
        "logs/embed_text/{dataset}.{shard}-of-{n}.log",
    conda:
        "../../envs/embed.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=get_gpu_request,
    params:
        script=script("embed_text.py"),
        data_root=get_data_root,
        options=lambda wildcards: to_json(config["embed"]["text"]),
    shell:
        "{params.script} --items {input.item_table} --out {output}"
        " --shard {wildcards.shard} --num-shards {wildcards.n}"
        " --data-root {params.data_root} --config-json {params.options:q}"
        " --threads {threads} > {log} 2>&1"


rule embed_image:
    input:
        item_table="results/{dataset}/data/items.parquet",
    output:
        temp("results/{dataset}/embeddings/shards/image.{shard}-of-{n}.parquet"),
    log:
        "logs/embed_image/{dataset}.{shard}-of-{n}.log",
    conda:
        "../../envs/embed.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=get_gpu_request,
    params:
        script=script("embed_image.py"),
        data_root=get_data_root,
        cache_dir="resources/image_cache",
        options=lambda wildcards: to_json(config["embed"]["image"]),
    shell:
        "{params.script} --items {input.item_table} --out {output}"
        " --shard {wildcards.shard} --num-shards {wildcards.n}"
        " --data-root {params.data_root} --cache-dir {params.cache_dir}"
        " --config-json {params.options:q} --threads {threads} > {log} 2>&1"


rule gather_embeddings:
    input:
        shards=get_embedding_shards,
        item_table="results/{dataset}/data/items.parquet",
    output:
        "results/{dataset}/embeddings/{modality}.parquet",
    log:
        "logs/gather_embeddings/{dataset}.{modality}.log",
    wildcard_constraints:
        modality="text|image",
    conda:
        "../../envs/embed.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("gather_embeddings.py"),
    shell:
        "{params.script} --shards {input.shards} --items {input.item_table}"
        " --out {output} > {log} 2>&1"


rule behavior_embed:
    input:
        item_table="results/{dataset}/data/items.parquet",
        train="results/{dataset}/data/train.parquet",
    output:
        "results/{dataset}/embeddings/behavior/seed{seed}.parquet",
    log:
        "logs/behavior_embed/{dataset}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=get_gpu_request,
    params:
        script=script("behavior_embed.py"),
        options=get_train_options_json,
        recorded_options=get_behavior_options_record,  # a change reruns the job
    shell:
        "{params.script} --data results/{wildcards.dataset}/data --seed {wildcards.seed}"
        " --config-json {params.options:q} --out {output} > {log} 2>&1"
