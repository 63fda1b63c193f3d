"""The BBQ tokenizer (METHOD.md Part 1): behaviour-bound, dual-aligned residual quantization into semantic IDs.

`residual` (residual quantizer), `club` (CLUB bound), `tokenizer` (encoders, decoders, losses, presets),
`train` (inputs and training loop), `sids` (semantic IDs, dedup `extra`, quality metrics).
"""
