# Report: readable views of every stage's results for `snakemake --report` (figures and HTML tables; the
# numbers themselves stay in the stage outputs). Categories follow the stages: 1. Data ... 4. Comparison.


# Seconds of plotting each: on a cluster, a job of their own would spend longer in the queue and on startup.
localrules:
    report_dataset_stats,
    plot_sid_quality,
    plot_tokenizer_log,
    plot_training_curves,
    plot_similarity_bias,
    report_comparison,


rule report_dataset_stats:
    input:
        stats="results/{dataset}/data/stats.json",
    output:
        report(
            "results/{dataset}/report/dataset_stats.html",
            caption="../report/dataset_stats.rst",
            category="1. Data",
            subcategory="{dataset}",
            labels={"view": "statistics"},
        ),
    log:
        "logs/report_dataset_stats/{dataset}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=script("report_dataset_stats.py"),
    shell:
        "{params.script} --stats {input.stats} --out {output} > {log} 2>&1"


rule plot_sid_quality:
    input:
        quality="results/{dataset}/sids/{tokenizer}/seed{seed}/sid_quality.json",
    output:
        report(
            "results/{dataset}/report/{tokenizer}/seed{seed}/sid_quality.svg",
            caption="../report/sid_quality_figure.rst",
            category="2. Semantic IDs",
            subcategory="{dataset}",
            labels={
                "view": "SID quality",
                "tokenizer": "{tokenizer}",
                "seed": "{seed}",
            },
        ),
    log:
        "logs/plot_sid_quality/{dataset}.{tokenizer}.seed{seed}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=script("plot_sid_quality.py"),
        title="{dataset}, tokenizer {tokenizer}, seed {seed}",
    shell:
        "{params.script} --quality {input.quality} --title {params.title:q}"
        " --out {output} > {log} 2>&1"


rule plot_tokenizer_log:
    input:
        log_table="results/{dataset}/quantize/{tokenizer}/seed{seed}/log.parquet",
    output:
        report(
            "results/{dataset}/report/{tokenizer}/seed{seed}/tokenizer_log.svg",
            caption="../report/tokenizer_log.rst",
            category="2. Semantic IDs",
            subcategory="{dataset}",
            labels={
                "view": "tokenizer training curves",
                "tokenizer": "{tokenizer}",
                "seed": "{seed}",
            },
        ),
    log:
        "logs/plot_tokenizer_log/{dataset}.{tokenizer}.seed{seed}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=script("plot_tokenizer_log.py"),
        title="{dataset}, tokenizer {tokenizer}, seed {seed}",
    shell:
        "{params.script} --log-table {input.log_table} --title {params.title:q}"
        " --out {output} > {log} 2>&1"


rule plot_training_curves:
    input:
        logs=get_train_logs,
    output:
        report(
            "results/{dataset}/report/training_curves.svg",
            caption="../report/training_curves.rst",
            category="3. Training",
            subcategory="{dataset}",
            labels={"view": "training curves"},
        ),
    log:
        "logs/plot_training_curves/{dataset}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=script("plot_training_curves.py"),
        variants=get_variants(),
    shell:
        "{params.script} --logs {input.logs} --variants {params.variants}"
        " --title {wildcards.dataset} --out {output} > {log} 2>&1"


rule plot_similarity_bias:
    input:
        table="results/{dataset}/train/{variant}/seed{seed}/similarity_bias.parquet",
    output:
        report(
            "results/{dataset}/report/{variant}/seed{seed}/similarity_bias.svg",
            caption="../report/similarity_bias.rst",
            category="3. Training",
            subcategory="{dataset}",
            labels={
                "view": "attention bias",
                "variant": "{variant}",
                "seed": "{seed}",
            },
        ),
    log:
        "logs/plot_similarity_bias/{dataset}.{variant}.seed{seed}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=script("plot_similarity_bias.py"),
        title="{dataset}, {variant}, seed {seed}",
    shell:
        "{params.script} --table {input.table} --title {params.title:q}"
        " --out {output} > {log} 2>&1"


rule report_comparison:
    input:
        table="results/comparison.parquet",
        by_popularity="results/comparison_by_popularity.parquet",
        origins="results/comparison_origins.parquet",
    output:
        table=report(
            "results/comparison.html",
            caption="../report/comparison_table.rst",
            category="4. Comparison",
            labels={"view": "table"},
        ),
        chart=report(
            "results/comparison.svg",
            caption="../report/comparison_chart.rst",
            category="4. Comparison",
            labels={"view": "chart"},
        ),
    log:
        "logs/report_comparison.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        script=script("report_comparison.py"),
        variants=get_variants(),
    shell:
        "{params.script} --table {input.table} --by-popularity {input.by_popularity}"
        " --origins {input.origins} --variants {params.variants} --out-html {output.table} --out-svg {output.chart} > {log} 2>&1"
