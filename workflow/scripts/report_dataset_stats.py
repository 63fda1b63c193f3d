"""Report: a prepared dataset's statistics (results/<ds>/data/stats.json) as a self-contained HTML table."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bbqrec.io import atomic_path
from bbqrec.report.tables import dataset_stats_html


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stats", type=Path, required=True, help="results/<ds>/data/stats.json")
    parser.add_argument("--out", type=Path, required=True, help="the HTML page")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with atomic_path(args.out, ".html") as tmp:
        tmp.write_text(dataset_stats_html(json.loads(args.stats.read_text())), encoding="utf-8")
    logging.info("%s -> %s", args.stats, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
