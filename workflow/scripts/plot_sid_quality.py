"""Report: SID quality of one tokenizer (results/<ds>/sids/<tokenizer>/sid_quality.json) as an SVG figure:
code usage and perplexity per level and stream, collisions per stream, cross-stream prefix agreement."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bbqrec.report.plots import plot_sid_quality


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quality", type=Path, required=True, help="results/<ds>/sids/<tokenizer>/sid_quality.json")
    parser.add_argument("--title", default="", help="figure title (dataset and tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="the SVG figure")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plot_sid_quality(json.loads(args.quality.read_text()), args.out, args.title)
    logging.info("%s -> %s", args.quality, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
