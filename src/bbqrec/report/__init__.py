"""bbqrec.report: the figures and HTML tables of `snakemake --report` (no torch; matplotlib with Agg).

`plots` draws the SVG figures (SID quality, tokenizer and recommender training curves, the comparison bars);
`tables` writes small self-contained HTML pages (dataset statistics, the comparison table).
"""
