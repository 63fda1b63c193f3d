# bbqrec: BBQRec as a Snakemake workflow. Stages, in data-flow order:
#   prepare_data -> embed_text / embed_image / behavior_embed -> quantize -> assign_sids -> train -> evaluate -> compare
#   (report.smk draws each stage's results for `snakemake --report`)
# Each stage is one file under workflow/rules/; input logic lives in workflow/rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_outputs(),
