"""``python -m cachet demo``: a tour of the cache on the embedded default stack."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cachet")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo: concurrent clients over memory + SQLite")
    demo.add_argument("--path", help="SQLite file for the L2 (default: a temporary directory)")
    demo.add_argument("--clients", type=int, default=8, help="concurrent clients per frontend")
    args = parser.parse_args(argv)
    from ._demo import run

    return run(args.path, args.clients)


if __name__ == "__main__":
    sys.exit(main())
