"""Command line: ``python -m robustlib reproduce | book``.

    python -m robustlib reproduce --profile smoke            # run every notebook, build the run's book
    python -m robustlib reproduce --profile quick --only nuat
    python -m robustlib reproduce --profile paper --gpus 4   # every training on 4 GPUs (torchrun)
    python -m robustlib reproduce --publish runs/quick        # copy a GPU run into the committed book
    python -m robustlib bench --device cuda                   # throughput of the training methods
    python -m robustlib bench --device cpu --methods fbf,nuat --width 16 --reference --no-eval
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
    rp.add_argument("--profile", default="smoke", help="smoke | cpu | quick | paper (default: smoke)")
    rp.add_argument("--only", default=None, help="comma-separated notebook names, e.g. nuat,abnn")
    rp.add_argument("--out", default=None, help="run folder (default: runs/<profile>)")
    rp.add_argument("--force", action="store_true", help="rerun notebooks already completed for this code")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--device", default="auto")
    rp.add_argument("--data", default=None, help="data folder (default: $ROBUSTLIB_DATA or ./data)")
    rp.add_argument("--no-book", action="store_true", help="do not build the run's HTML book")
    rp.add_argument("--gpus", type=int, default=1, help="train on K GPUs with torchrun (default 1)")
    rp.add_argument("--jobs", type=int, default=None,
                    help="notebooks at a time (default: one per CPU core up to 4 for smoke on CPU, else 1)")
    rp.add_argument("--publish", metavar="RUN_DIR", default=None,
                    help="copy a completed cpu/quick/paper run into book/chapters and book/results (a cpu run's "
                         "results also into book/results/cpu)")
    rp.add_argument("--reuse-published", action="store_true",
                    help="adopt every notebook the book publishes from a run of this profile, even one run by other "
                         "code (by default only the same code version is adopted; the manifest records which)")

    sub.add_parser("book", help="build the committed book into _build/html (warnings are errors)")

    bp = sub.add_parser("bench", help="measure training and evaluation throughput (writes JSON + Markdown)")
    bp.add_argument("--device", default="auto", help="cuda | cpu | auto (default)")
    bp.add_argument("--methods", default=None, help="comma-separated: standard,fbf,nuat,pgd10,trades10 (default all)")
    bp.add_argument("--model", default="resnet18")
    bp.add_argument("--width", type=int, default=None, help="first-stage width (default: the paper's 64)")
    bp.add_argument("--batches", type=int, default=20, help="timed training steps per method")
    bp.add_argument("--warmup", type=int, default=3)
    bp.add_argument("--eval-images", type=int, default=1000)
    bp.add_argument("--no-autoattack", action="store_true")
    bp.add_argument("--compile", action="store_true", help="time the torch.compile path")
    bp.add_argument("--eval-train-steps", type=int, default=200,
                    help="FBF steps on synthetic images before timing the attacks (default 200)")
    bp.add_argument("--eval-checkpoint", default=None, help="time the attacks on this trained state dict instead")
    bp.add_argument("--out", default=None, help="JSON file to write (a .md table is written beside it)")
    bp.add_argument("--reference", action="store_true",
                    help="also time a loop written the way the authors' scripts are (DataLoader + PIL transforms, "
                         "fp32, eager) and report robustlib's speed as a ratio to it (methods: standard,fbf,nuat)")
    bp.add_argument("--rounds", type=int, default=1,
                    help="with --reference: rounds of --batches timed steps, alternating the two loops (default 1)")
    bp.add_argument("--reference-workers", type=int, default=None,
                    help="DataLoader workers of the reference loop (default: the script's, at most the CPU count)")
    bp.add_argument("--no-eval", action="store_true", help="skip the evaluation (PGD-20 / AutoAttack) timings")
    bp.add_argument("--scaling", action="store_true",
                    help="instead: how training and attack cost grow with width, batch size and test images (three "
                         "points each; writes JSON + Markdown + PNG to --out)")

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
                            book=not args.no_book, gpus=args.gpus, jobs=args.jobs,
                            reuse_published=args.reuse_published)
            total = sum(e.get("wall_s", 0) for e in m["notebooks"].values())
            print(f"[reproduce] done: {len(m['notebooks'])} notebooks, {total:.0f} s of notebook time, "
                  f"{m.get('batch_wall_s', 0):.0f} s for this batch ({m['jobs']} at a time); "
                  f"book: {m.get('book', 'not built')}")
            return 0
        if args.command == "bench":
            from .bench import SCALING_METHODS, run, run_scaling
            methods = [m for m in args.methods.split(",") if m] if args.methods else None
            if args.scaling:
                run_scaling(args.device, model=args.model, methods=methods or SCALING_METHODS, out=args.out)
                return 0
            run(args.device, methods, model=args.model,
                model_kwargs={"width": args.width} if args.width else None, batches=args.batches,
                warmup=args.warmup, eval_images=args.eval_images, autoattack=not args.no_autoattack,
                compile={} if args.compile else None, out=args.out, eval_train_steps=args.eval_train_steps,
                eval_checkpoint=args.eval_checkpoint, reference=args.reference, rounds=args.rounds,
                reference_workers=args.reference_workers, evaluation=not args.no_eval)
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
