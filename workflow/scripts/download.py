"""Rule download: fetch one dataset source from its public origin (or a mirror) into resources/data/<source>.

Every file is checked against the sha256 pinned in bbqrec.data.sources; derived files (ID maps, poster map,
posters) are rebuilt as the shared copy was. Nothing is left behind when a check fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bbqrec.data.download import DEFAULT_RETRIES, DEFAULT_TIMEOUT, fetch_source
from bbqrec.data.sources import SOURCES
from bbqrec.io import InputError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=sorted(SOURCES), help="source folder name")
    parser.add_argument("--dest", type=Path, required=True, help="destination folder, e.g. resources/data/<source>")
    parser.add_argument("--mirror", help="base URL replacing the origins (config download.mirror), e.g. file:///m")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per network operation")
    parser.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="extra tries after a network failure")
    parser.add_argument("--log", type=Path, help="also write the log to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(args.log, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers)
    try:
        fetch_source(args.source, args.dest, mirror=args.mirror, timeout=args.timeout, retries=args.retries)
    except InputError as err:
        logging.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
