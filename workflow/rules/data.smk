# Stage 1: bring in the raw sources and prepare each dataset (ids, leave-one-out split, stats).


# Downloads need the internet, which cluster compute nodes often lack: run them on the submitting host.
localrules:
    download,


rule download:
    output:
        directory("resources/data/{source}"),
    log:
        "logs/download/{source}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        script=script("download.py"),
        mirror=get_download_mirror_arg(),
    shell:
        "{params.script} --source {wildcards.source} --dest {output}"
        " {params.mirror} > {log} 2>&1"


rule prepare_data:
    input:
        sources=get_prepare_sources,
        # Its preparation keys are params (dataset_spec): its train/quantize blocks do not rerun this rule.
        dataset_config=ancient("config/datasets/{dataset}.yaml"),
    output:
        interactions="results/{dataset}/data/interactions.parquet",
        item_table="results/{dataset}/data/items.parquet",
        users="results/{dataset}/data/users.parquet",
        train="results/{dataset}/data/train.parquet",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
        stats=report(
            "results/{dataset}/data/stats.json",
            caption="../report/stats.rst",
            category="1. Data",
            subcategory="{dataset}",
            labels={"view": "statistics: numbers (JSON)"},
        ),
    log:
        "logs/prepare_data/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        script=script("prepare_data.py"),
        data_root=get_data_root,
        options=get_prepare_options,
        sources_sha256=get_source_digests,  # contents, not mtimes, decide a rerun
        dataset_spec=get_dataset_spec,
    shell:
        "{params.script} --dataset-config {input.dataset_config}"
        " --data-root {params.data_root} --out results/{wildcards.dataset}/data"
        " --max-history-len {params.options[max_history_len]}"
        " --min-seq-len {params.options[min_seq_len]}"
        " --k-core {params.options[k_core]}"
        " --duplicates {params.options[duplicates]}"
        " > {log} 2>&1"


# Users without a leave-one-out split (min_seq_len, k_core) still get next-item lists (rule recommend). A rule of
# its own, not a prepare_data output, so that adding it reran no existing preparation and what follows it.
rule left_out_users:
    input:
        sources=get_prepare_sources,
        dataset_config=ancient("config/datasets/{dataset}.yaml"),
        users="results/{dataset}/data/users.parquet",
        item_table="results/{dataset}/data/items.parquet",
    output:
        "results/{dataset}/data/left_out_users.parquet",
    log:
        "logs/left_out_users/{dataset}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        script=script("left_out_users.py"),
        data_root=get_data_root,
        options=get_prepare_options,
        sources_sha256=get_source_digests,
        dataset_spec=get_dataset_spec,
    shell:
        "{params.script} --dataset-config {input.dataset_config}"
        " --data-root {params.data_root} --data results/{wildcards.dataset}/data"
        " --min-seq-len {params.options[min_seq_len]}"
        " --k-core {params.options[k_core]}"
        " --duplicates {params.options[duplicates]}"
        " --out {output} > {log} 2>&1"
