"""Command line: ``python -m robustlib reproduce | book``.

    python -m robustlib reproduce --profile smoke            # run every notebook, build the run's book
    python -m robustlib reproduce --profile quick --only nuat
    python -m robustlib reproduce --profile paper --gpus 4   # every training on 4 GPUs (torchrun)
    python -m robustlib reproduce --publish runs/quick        # copy a GPU run into the committed book
    python -m robustlib bench --device cuda                   # throughput of the training methods
    python -m robustlib book                                  # build the committed book into _build/html
"""
from __future__ import annotations

import argparse
import sys

from .errors import RobustlibError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robustlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("reproduce", help="run the notebooks through papermill (or --publish a run)")
    rp.add_argument("--profile", default="smoke", help="smoke | quick | paper (default: smoke)")
    rp.add_argument("--only", default=None, help="comma-separated notebook names, e.g. nuat,abnn")
    rp.add_argument("--out", default=None, help="run folder (default: runs/<profile>)")
    rp.add_argument("--force", action="store_true", help="rerun notebooks already completed for this code")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--device", default="auto")
    rp.add_argument("--data", default=None, help="data folder (default: $ROBUSTLIB_DATA or ./data)")
    rp.add_argument("--no-book", action="store_true", help="do not build the run's HTML book")
    rp.add_argument("--gpus", type=int, default=1, help="train on K GPUs with torchrun (default 1)")
    rp.add_argument("--publish", metavar="RUN_DIR", default=None,
                    help="copy a completed quick/paper run into book/chapters and book/results")

    sub.add_parser("book", help="build the committed book into _build/html (warnings are errors)")

    args = parser.parse_args(argv)
    try:
        if args.command == "reproduce":
            from . import reproduce as r
            if args.publish:
                copied = r.publish(args.publish)
                print(f"published {len(copied)} files; now run `make book`")
                return 0
            only = [s for s in args.only.split(",") if s.strip()] if args.only else None
            m = r.reproduce(args.profile, only, args.out, args.force, args.seed, args.device, args.data,
                            book=not args.no_book, gpus=args.gpus)
            total = sum(e.get("wall_s", 0) for e in m["notebooks"].values())
            print(f"[reproduce] done: {len(m['notebooks'])} notebooks, {total:.0f} s of notebook time; "
                  f"book: {m.get('book', 'not built')}")
            return 0
        if args.command == "book":
            from .reproduce import build_published_book
            html = build_published_book()
            print(f"[book] built {html}")
            return 0
    except RobustlibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
