# Stage 4: the recommender (one job per dataset x variant x seed), its full-ranking evaluation, and the
# comparison over seeds and variants.


# Seconds each (a table over the seeds' metrics; the trained bias tables): run where snakemake runs, not as
# cluster jobs.
localrules:
    export_similarity_bias,
    compare,


rule train:
    input:
        unpack(get_train_inputs),
    output:
        model="results/{dataset}/train/{variant}/seed{seed}/model.pt",
        log_table="results/{dataset}/train/{variant}/seed{seed}/log.parquet",  # plotted by report.smk
    log:
        "logs/train/{dataset}.{variant}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: get_train_threads
    resources:
        mem_mb=get_train_mem_mb,
        runtime=240,
        gpu=get_train_gpu_request,
        nodes=1,  # torchrun --standalone: every process of a job on one node
    params:
        script=get_train_script,
        inputs=get_train_input_args,
        options=get_train_options_json,
        recorded_options=get_train_options_record,  # a change reruns the job
    shell:
        "{params.script} --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --data results/{wildcards.dataset}/data {params.inputs}"
        " --config-json {params.options:q}"
        " --out results/{wildcards.dataset}/train/{wildcards.variant}/seed{wildcards.seed}"
        " > {log} 2>&1"


# The model to serve: the same run trained afresh on every interaction (the validation and test items included)
# for the early-stopped run's best epoch count at its learning rates (train.py --refit-from). A rule of its own,
# not `use rule train`, which cannot change the shell command (and changing train's would rerun every run).
rule refit:
    input:
        unpack(get_refit_inputs),
    output:
        model="results/{dataset}/refit/{variant}/seed{seed}/model.pt",
        log_table="results/{dataset}/refit/{variant}/seed{seed}/log.parquet",
    log:
        "logs/refit/{dataset}.{variant}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: get_train_threads
    resources:
        mem_mb=get_train_mem_mb,
        runtime=240,
        gpu=get_train_gpu_request,
        nodes=1,
    params:
        script=get_train_script,
        inputs=get_train_input_args,
        options=get_train_options_json,
        recorded_options=get_train_options_record,  # a change reruns the job
    shell:
        "{params.script} --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --data results/{wildcards.dataset}/data {params.inputs}"
        " --refit-from results/{wildcards.dataset}/train/{wildcards.variant}/seed{wildcards.seed}"
        " --config-json {params.options:q}"
        " --out results/{wildcards.dataset}/refit/{wildcards.variant}/seed{wildcards.seed}"
        " > {log} 2>&1"


rule evaluate:
    input:
        model="results/{dataset}/train/{variant}/seed{seed}/model.pt",
        valid="results/{dataset}/data/valid.parquet",
        test="results/{dataset}/data/test.parquet",
    output:
        metrics="results/{dataset}/eval/{variant}/seed{seed}/metrics.parquet",
        user_metrics="results/{dataset}/eval/{variant}/seed{seed}/user_metrics.parquet",
        recommendations="results/{dataset}/eval/{variant}/seed{seed}/recommendations.parquet",
    log:
        "logs/evaluate/{dataset}.{variant}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        script=script("evaluate.py"),
        options=get_eval_options_json,
        recorded_options=get_train_options_record,  # a change reruns the job
    shell:
        "{params.script} --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --model {input.model}"
        " --data results/{wildcards.dataset}/data --config-json {params.options:q}"
        " --out results/{wildcards.dataset}/eval/{wildcards.variant}/seed{wildcards.seed}"
        " > {log} 2>&1"


rule recommend:
    input:
        model=get_recommend_model,
        interactions="results/{dataset}/data/interactions.parquet",
        users="results/{dataset}/data/users.parquet",
        item_table="results/{dataset}/data/items.parquet",
        left_out="results/{dataset}/data/left_out_users.parquet",
    output:
        "results/{dataset}/recommend/{variant}/seed{seed}/next_items.parquet",
    log:
        "logs/recommend/{dataset}.{variant}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        script=script("recommend.py"),
        options=get_eval_options_json,
        k=config["recommend"]["k"],
        keep_history="" if config["recommend"]["exclude_history"] else "--keep-history",
        cold_users=config["recommend"]["cold_users"],
    shell:
        "{params.script} --dataset {wildcards.dataset} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --model {input.model}"
        " --data results/{wildcards.dataset}/data --left-out {input.left_out}"
        " --k {params.k} {params.keep_history} --cold-users {params.cold_users}"
        " --config-json {params.options:q} --out {output} > {log} 2>&1"


rule export_similarity_bias:
    input:
        model="results/{dataset}/train/{variant}/seed{seed}/model.pt",
        sids=get_similarity_bias_sids,
    output:
        "results/{dataset}/train/{variant}/seed{seed}/similarity_bias.parquet",  # plotted by report.smk
    log:
        "logs/export_similarity_bias/{dataset}.{variant}.seed{seed}.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        script=script("export_similarity_bias.py"),
    shell:
        "{params.script} --model {input.model} --sids {input.sids} --out {output} > {log} 2>&1"


rule compare:
    input:
        metrics=get_eval_outputs(),
        data=get_compared_data(),
    output:
        table="results/comparison.parquet",
        by_popularity="results/comparison_by_popularity.parquet",
        markdown=report(
            "results/comparison.md",
            caption="../report/comparison.rst",
            category="4. Comparison",
            labels={"view": "table (Markdown)"},
        ),
        origins="results/comparison_origins.parquet",
    log:
        "logs/compare.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        script=script("compare.py"),
        eval_dirs=lambda wildcards, input: [str(Path(m).parent) for m in input.metrics],
        data_dirs=lambda wildcards, input: sorted(
            {str(Path(d).parent) for d in input.data}
        ),
        variants=get_variants(),
        popularity_edges=config["compare"]["popularity_edges"],
    shell:
        "{params.script} --eval-dirs {params.eval_dirs} --data-dirs {params.data_dirs}"
        " --variants {params.variants} --popularity-edges {params.popularity_edges}"
        " --out-parquet {output.table} --out-popularity {output.by_popularity}"
        " --out-markdown {output.markdown} --out-origins {output.origins} > {log} 2>&1"
