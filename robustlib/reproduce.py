"""Batch reproduction: run every chapter notebook through papermill, keep a manifest, build the run's book, publish.

``python -m robustlib reproduce --profile P`` runs ``notebooks/NN_<name>.ipynb`` in order with ``PROFILE=P`` and writes
everything under ``runs/P/`` (never a tracked file):

    runs/P/manifest.json            git commit, hardware, versions, per-notebook status and wall time
    runs/P/notebooks/<nb>.ipynb     executed notebooks
    runs/P/results/<paper>.json     results (schema: robustlib.results), figures under results/figures/
    runs/P/results/checkpoints/     trained models, reused by later notebooks and reruns
    runs/P/book/_build/html/        an HTML book of this run

A failing notebook stops the batch with the notebook's name and the failing cell. Rerunning skips notebooks that
already completed for the same code and profile (``--force`` reruns them): "the same code" is
:func:`notebook_version` — the notebook, the library and its own chapter — so an unrelated change reruns nothing, and
a chapter notebook reruns whenever one of its parts did.

``--jobs J`` runs J notebooks at a time (the default on a machine without a GPU, in the smoke profile: one per CPU
core up to 4, each kernel with its share of the cores; otherwise 1, since the notebooks of a GPU profile each want
the whole GPU). A paper's notebooks always run in order, one after another (its chapter notebook gathers what its
parts trained), different papers run side by side, and the papers in :data:`AFTER_ALL` (the comparison chapter,
which reuses every paper's models) start only when every other paper has finished.

``python -m robustlib reproduce --publish runs/P`` copies a completed non-smoke run's executed notebooks into
``book/chapters/`` and its results into ``book/results/``, so that the committed book shows them.
"""
from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import multiprocessing
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nbformat

from .chapters.common import PROFILES, check_profile, repo_root
from .errors import ConfigError, RobustlibError, UnknownNameError
from .results import GPU_PROFILES
from .utils import atomic_write_text, git_info, hardware_info, hardware_label, package_versions

PENDING_TAG = "robustlib-pending"
# The batch runner (runs and publishes notebooks) and the benchmark (`python -m robustlib bench`, which no notebook
# imports): no notebook's result depends on them, so editing them reruns nothing.
BATCH_ONLY = ("reproduce.py", "cli.py", "__main__.py", "bench.py")
AFTER_ALL = ("comparison",)   # papers that reuse the other papers' trained models: they run after all the others


class ReproduceError(RobustlibError):
    """A notebook of the batch failed, or a run cannot be published."""


# --------------------------------------------------------------------------------------------------- notebooks


def notebook_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / "notebooks"


def notebooks(root: Path | None = None) -> list[Path]:
    """The notebooks in reading order (``NN_<name>.ipynb``, as JupyterLab lists them): each paper's chapter notebook
    (``N0_<paper>``) first, then its parts (``N1_<paper>__<part>`` …)."""
    return sorted(notebook_dir(root).glob("[0-9][0-9]_*.ipynb"))


def run_order(paths: Sequence[Path]) -> list[Path]:
    """The order a batch runs them in: each paper's parts before its chapter notebook, which gathers what they
    trained; papers in reading order."""
    papers: list[str] = []
    for p in paths:
        k = paper_key(chapter_name(p))
        if k not in papers:
            papers.append(k)
    return sorted(paths, key=lambda p: (papers.index(paper_key(chapter_name(p))), "__" not in p.stem, p.name))


def chapter_name(path: Path) -> str:
    """``00_adversarial_examples.ipynb`` → ``adversarial_examples``; ``11_nuat__baselines.ipynb`` →
    ``nuat__baselines``. The name is also the results file's stem (``<name>.json``)."""
    return path.stem.split("_", 1)[1]


def paper_key(name: str) -> str:
    """The paper a notebook belongs to: a paper may split its runs over several notebooks,
    ``NN_<paper>__<part>.ipynb``, each ≤ 10 minutes, listed after the chapter notebook ``N0_<paper>.ipynb`` and run
    before it (:func:`run_order`)."""
    return name.split("__", 1)[0]


def select(only: Sequence[str] | None, root: Path | None = None) -> list[Path]:
    """The notebooks named in ``only``: a paper key (``nuat``) for all of its notebooks, parts and chapter; a part
    (``nuat__mnist``); or a file stem (``10_nuat``) for exactly that notebook."""
    nbs = notebooks(root)
    if not only:
        return run_order(nbs)
    names = {chapter_name(p): p for p in nbs}
    stems = {p.stem: p for p in nbs}
    papers = {paper_key(n) for n in names}
    wanted = set()
    for n in only:
        n = n.strip()
        if n in papers:
            wanted |= {p for k, p in names.items() if paper_key(k) == n}
        elif n in names:
            wanted.add(names[n])
        elif n in stems:
            wanted.add(stems[n])
        else:
            raise UnknownNameError("notebook", n, sorted(set(names) | papers))
    return run_order([p for p in nbs if p in wanted])


def code_version(root: Path) -> str:
    """The git commit, plus a hash of the uncommitted diff when the tree is modified."""
    g = git_info(root)
    commit = g.get("commit") or "unknown"
    h = hashlib.sha256()
    if g.get("dirty"):
        h.update(subprocess.run(["git", "diff", "HEAD"], cwd=root, capture_output=True).stdout)
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"], cwd=root,
                               capture_output=True).stdout.split(b"\0")
    for name in sorted(u for u in untracked if u):
        p = root / name.decode()
        if p.is_file():
            h.update(name + p.read_bytes())
    if g.get("dirty") or any(untracked):
        commit += "+" + h.hexdigest()[:8]
    return commit


def notebook_version(nb: Path, root: Path) -> str:
    """What a notebook's results depend on, hashed: the notebook itself, the library outside ``robustlib/chapters``
    (plus the chapters' shared ``common.py``), its own chapter module or package and its reported numbers — for a
    paper in :data:`AFTER_ALL` every chapter — not the batch machinery or the benchmark (:data:`BATCH_ONLY`). A finished notebook is
    rerun only when this changes, so editing the README, a test, the batch runner or another paper's chapter never
    redoes hours of finished work (and a rerun notebook still finds
    its trained checkpoints and cached evaluations)."""
    paper = paper_key(chapter_name(nb))
    lib = root / "robustlib"
    chapters = lib / "chapters"
    files = []
    for f in sorted(lib.rglob("*")):
        if not f.is_file() or f.suffix not in (".py", ".yaml") or "__pycache__" in f.parts:
            continue
        rel = f.relative_to(lib)
        if rel.as_posix() in BATCH_ONLY:
            continue
        if rel.parts[0] == "chapters" and rel.name not in ("common.py", "__init__.py") or (
                rel.parts[0] == "chapters" and len(rel.parts) > 2):
            own = rel.parts[1].removesuffix(".py") == paper
            if not (own or paper in AFTER_ALL):
                continue
        if rel.parts[0] == "reported" and f.suffix == ".yaml" and f.stem != paper and paper not in AFTER_ALL:
            continue
        files.append(f)
    h = hashlib.sha256(nb.read_bytes())
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- reproduce


def _manifest_path(run: Path) -> Path:
    return run / "manifest.json"


def load_manifest(run: Path) -> dict:
    p = _manifest_path(run)
    return json.loads(p.read_text()) if p.exists() else {}


def default_jobs(profile: str, device: str = "auto") -> int:
    """Notebooks at a time when ``--jobs`` is not given: one per CPU core (at most 4) for the smoke profile on a
    machine without a GPU, else 1."""
    import torch
    if profile != "smoke" or (device != "cpu" and torch.cuda.is_available()):
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def reproduce(profile: str = "smoke", only: Sequence[str] | None = None, out: str | Path | None = None,
              force: bool = False, seed: int = 0, device: str = "auto", data_dir: str | Path | None = None,
              book: bool = True, root: Path | None = None, log=print, gpus: int = 1, jobs: int | None = None,
              reuse_published: bool = False) -> dict:
    """Run the notebooks (see module docstring); returns the manifest.

    ``gpus`` = K > 1 runs every training of the notebooks on K processes through ``torchrun`` (one GPU each).
    ``jobs`` = J runs J notebooks at a time (None: :func:`default_jobs`).
    A notebook this run folder has not completed is **adopted** from the committed book instead of being run when
    it was published from a run of the same profile and the same :func:`notebook_version` (its executed notebook
    and results are copied in, see :func:`adopt_published`): a long cpu run resumes on a new machine from what
    earlier sessions published. ``reuse_published`` adopts a published notebook of the same profile whatever code
    it ran (the manifest records its commit and version).
    """
    check_profile(profile)
    jobs = default_jobs(profile, device) if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    root = (root or repo_root()).resolve()
    run = Path(out or root / "runs" / profile).resolve()
    (run / "notebooks").mkdir(parents=True, exist_ok=True)
    results = run / "results"
    results.mkdir(parents=True, exist_ok=True)
    data = Path(data_dir or os.environ.get("ROBUSTLIB_DATA", root / "data")).expanduser().resolve()
    version = code_version(root)
    manifest = load_manifest(run)
    if manifest.get("profile") not in (None, profile):
        raise ConfigError(f"{run} holds a {manifest['profile']!r} run; use another --out for profile {profile!r}")
    manifest.update(profile=profile, seed=seed, gpus=gpus, jobs=jobs, data_dir=str(data), git=git_info(root),
                    code_version=version, hardware=hardware_info(device),
                    versions=package_versions(["papermill", "jupyter-book"]))
    entries = manifest.setdefault("notebooks", {})
    todo = []
    selected = select(only, root)
    versions = {chapter_name(nb): notebook_version(nb, root) for nb in selected}
    for nb in selected:
        name = chapter_name(nb)
        entry = entries.get(name, {})
        parts_rerun = "__" not in name and any(paper_key(chapter_name(t)) == name for t in todo)
        if (not force and not parts_rerun and entry.get("status") == "ok"
                and entry.get("code_version") == versions[name] and (run / "notebooks" / nb.name).exists()):
            log(f"[reproduce] {name}: already completed for this code ({entry['wall_s']:.0f} s), skipped")
            continue
        adopted = None if force or parts_rerun else adopt_published(nb, run, root, profile, versions[name],
                                                                     any_version=reuse_published, log=log)
        if adopted is not None:
            entries[name] = adopted
            _write_manifest(run, manifest)
        else:
            todo.append(nb)
    env = {"ROBUSTLIB_PROGRESS": "plain", "ROBUSTLIB_DATA": str(data), "ROBUSTLIB_GPUS": str(gpus)}
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:    # each kernel gets its share of the cores
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    env_before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    job = _Job(profile, seed, device, data, results, version, versions)
    failures: list[str] = []

    def started(nb: Path) -> None:
        log(f"[reproduce] {chapter_name(nb)}: running {nb.name} with PROFILE={profile!r}")

    def finished(nb: Path, entry: dict) -> None:
        name = chapter_name(nb)
        if entry["status"] == "ok":
            res = results / f"{name}.json"
            entry["results"] = str(res.relative_to(run)) if res.exists() else None
            log(f"[reproduce] {name}: ok in {entry['wall_s']:.0f} s")
        else:
            failures.append(f"notebook {nb.name} failed: {entry['error'].rstrip('.')}. The partly executed "
                            f"notebook is at {run / entry['output']}")
        entries[name] = entry
        _write_manifest(run, manifest)

    t0 = time.time()
    try:
        if jobs == 1:
            for nb in todo:
                started(nb)
                finished(nb, _run_notebook(nb, run, job))
                if failures:
                    break
        else:
            _run_parallel(todo, jobs, run, job, started, finished, lambda: bool(failures))
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        manifest["batch_wall_s"] = round(time.time() - t0, 1)
        _write_manifest(run, manifest)
    if failures:
        raise ReproduceError("; ".join(failures) + "; the batch stopped there (completed notebooks are kept and "
                             "skipped when you run it again).")
    if book:
        manifest["book"] = str(build_run_book(run, root, log=log).relative_to(run))
        _write_manifest(run, manifest)
    return manifest


@dataclass(frozen=True)
class _Job:
    """What every notebook of one batch is run with (picklable, for the worker processes)."""

    profile: str
    seed: int
    device: str
    data: Path
    results: Path
    version: str                       # the commit (recorded)
    versions: dict                     # notebook name → notebook_version (decides what a rerun skips)


def _entry(nb: Path, job: _Job) -> dict:
    """A notebook's manifest entry before it runs."""
    return {"notebook": nb.name, "output": str(Path("notebooks") / nb.name),
            "code_version": job.versions.get(chapter_name(nb), job.version), "commit": job.version,
            "profile": job.profile, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _run_notebook(nb: Path, run: Path, job: _Job) -> dict:
    """Execute one notebook; returns its manifest entry (status ok or failed, never raises for a failing cell)."""
    t0 = time.time()
    entry = _entry(nb, job)
    try:
        _execute(nb, run / entry["output"], job)
        entry["status"] = "ok"
    except Exception as e:  # papermill's PapermillExecutionError, or a kernel failure
        entry.update(status="failed", error=_describe(e))
    entry["wall_s"] = round(time.time() - t0, 1)
    return entry


def _chains(todo: Sequence[Path]) -> dict[str, list[Path]]:
    """The notebooks to run, grouped by paper (in book order); each group runs in order."""
    chains: dict[str, list[Path]] = {}
    for nb in todo:
        chains.setdefault(paper_key(chapter_name(nb)), []).append(nb)
    return chains


def published_index(root: Path) -> Path:
    """``book/results/published.json``: per profile, per notebook name, what :func:`publish` copied into the book
    (notebook, results file, commit, :func:`notebook_version`, wall time, hardware)."""
    return root / "book" / "results" / "published.json"


def _published_results(root: Path, profile: str, name: str) -> Path:
    return root / "book" / "results" / ("cpu" if profile not in GPU_PROFILES else ".") / f"{name}.json"


def adopt_published(nb: Path, run: Path, root: Path, profile: str, version: str, *, any_version: bool = False,
                    log=print) -> dict | None:
    """Copy notebook ``nb``'s published execution and results from the committed book into ``run`` and return its
    manifest entry (status ok, ``adopted`` saying from where), when :func:`publish` recorded it for ``profile`` with
    code version ``version`` (any version with ``any_version``) and the book still shows that execution. None
    otherwise (the notebook runs)."""
    index = published_index(root)
    name = chapter_name(nb)
    rec = (json.loads(index.read_text()) if index.exists() else {}).get(profile, {}).get(name)
    if rec is None:
        return None
    shown = root / "book" / "chapters" / nb.name
    res = _published_results(root, profile, name)
    if _published_profile(shown) != profile or not res.exists():
        log(f"[reproduce] {name}: its published {profile} run is no longer in the book; running it")
        return None
    if rec.get("code_version") != version and not any_version:
        log(f"[reproduce] {name}: published from other code (version {rec.get('code_version')}, this code "
            f"{version}); running it (--reuse-published adopts it as it is)")
        return None
    executed = nbformat.read(shown, as_version=4)
    executed.cells = [c for c in executed.cells if "robustlib-published" not in c.metadata.get("tags", [])]
    (run / "notebooks").mkdir(parents=True, exist_ok=True)
    (run / "results").mkdir(parents=True, exist_ok=True)
    nbformat.write(executed, run / "notebooks" / nb.name)
    shutil.copy(res, run / "results" / f"{name}.json")
    log(f"[reproduce] {name}: adopted from the book (published {profile} run, commit "
        f"{str(rec.get('commit'))[:12]}, {rec.get('wall_s', 0):.0f} s)")
    return {"notebook": nb.name, "output": str(Path("notebooks") / nb.name), "results": f"results/{name}.json",
            "status": "ok", "code_version": version, "commit": rec.get("commit"), "profile": profile,
            "started": rec.get("started"), "wall_s": rec.get("wall_s", 0.0), "hardware": rec.get("hardware"),
            "adopted": {"from": str(shown.relative_to(root)), "code_version": rec.get("code_version")}}


def _run_parallel(todo, jobs, run, job, started, finished, stop) -> None:
    """Run ``todo`` on ``jobs`` worker processes: one notebook of a paper at a time, the papers of
    :data:`AFTER_ALL` after every other paper; after a failure nothing new starts and the running ones finish."""
    waiting = _chains(todo)
    busy: dict[cf.Future, tuple[str, Path]] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        while waiting or busy:
            running = {p for p, _ in busy.values()}
            for paper in list(waiting):
                if stop() or len(busy) >= jobs:
                    break
                others = [p for p in set(waiting) | running if p not in AFTER_ALL]
                if paper in running or (paper in AFTER_ALL and others):
                    continue
                nb = waiting[paper].pop(0)
                if not waiting[paper]:
                    del waiting[paper]
                started(nb)
                busy[pool.submit(_run_notebook, nb, run, job)] = (paper, nb)
                running.add(paper)
            if not busy:
                break
            done, _ = cf.wait(busy, return_when=cf.FIRST_COMPLETED)
            for f in done:
                _, nb = busy.pop(f)
                try:
                    entry = f.result()
                except Exception as e:  # the worker process itself died (e.g. out of memory)
                    entry = {**_entry(nb, job), "status": "failed", "wall_s": 0.0, "error": _describe(e)}
                finished(nb, entry)


def _write_manifest(run: Path, manifest: dict) -> None:
    atomic_write_text(json.dumps(manifest, indent=2, default=str), _manifest_path(run))


def _execute(nb: Path, output: Path, job: _Job) -> None:
    import papermill as pm
    params = {"PROFILE": job.profile, "SEED": job.seed, "DEVICE": job.device, "DATA_DIR": str(job.data),
              "OUT_DIR": str(job.results)}
    pm.execute_notebook(str(nb), str(output), parameters=params, cwd=str(nb.parent), kernel_name="python3",
                        progress_bar=False, log_output=False, report_mode=False)
    out = nbformat.read(output, as_version=4)
    out.metadata.setdefault("robustlib", {}).update(profile=job.profile, seed=job.seed, code_version=job.version)
    nbformat.write(out, output)


def _describe(e: Exception) -> str:
    idx = getattr(e, "cell_index", None)
    if idx is not None:
        return (f"cell {idx} (execution count {getattr(e, 'exec_count', '?')}) raised "
                f"{getattr(e, 'ename', type(e).__name__)}: {str(getattr(e, 'evalue', e)).strip()}")
    return f"{type(e).__name__}: {e}"


# ----------------------------------------------------------------------------------------------------- books


def _jupyter_book() -> str:
    exe = Path(sys.executable).parent / "jupyter-book"
    return str(exe) if exe.exists() else "jupyter-book"


def run_jupyter_book(src: Path, out: Path, log=print) -> Path:
    """``jupyter-book build`` with warnings as errors; returns the HTML folder."""
    cmd = [_jupyter_book(), "build", str(src), "--path-output", str(out), "-W", "-n", "--keep-going", "-q"]
    log("[book] " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReproduceError(f"the book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return out / "_build" / "html"


def build_published_book(root: Path | None = None, log=print) -> Path:
    """Build the committed book (``_config.yml``/``_toc.yml`` at the root) into ``_build/html``."""
    root = (root or repo_root()).resolve()
    sync_pending(root)
    return run_jupyter_book(root, root, log=log)


def build_run_book(run: Path, root: Path | None = None, log=print) -> Path:
    """An HTML book of a run: the committed book with the run's executed notebooks and results in place."""
    root = (root or repo_root()).resolve()
    src = run / "book" / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy(root / f, src / f)
    shutil.copytree(root / "book", src / "book", ignore=shutil.ignore_patterns("_build"))
    manifest = load_manifest(run)
    profile = manifest.get("profile", "?")
    for name, entry in manifest.get("notebooks", {}).items():
        executed = run / entry["output"]
        if entry.get("status") == "ok" and executed.exists():
            nb = nbformat.read(executed, as_version=4)
            nb.cells.insert(1, _banner(f"Run of profile **{profile}** (code version `{entry['code_version'][:12]}`,"
                                       f" {entry['wall_s']:.0f} s)." + (
                                           " The smoke profile trains tiny models on a few thousand images: its "
                                           "numbers only show that the pipeline works." if profile == "smoke"
                                           else ""), "note", "Run"))
            nbformat.write(nb, src / "book" / "chapters" / entry["notebook"])
    for res in (run / "results").glob("*.json"):
        shutil.copy(res, src / "book" / "results" / res.name)
    import yaml
    cfg = yaml.safe_load((src / "_config.yml").read_text())
    cfg["title"] = f"{cfg.get('title', 'Book')} — {profile} run"
    (src / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return run_jupyter_book(src, run / "book", log=log)


def _banner(text: str, kind: str, title: str):
    cell = nbformat.v4.new_markdown_cell(f"```{{admonition}} {title}\n:class: {kind}\n{text}\n```")
    cell["id"] = "robustlib-" + "-".join(title.lower().split())   # a valid cell id: no spaces
    cell.metadata["tags"] = [PENDING_TAG if title == "Results pending" else "robustlib-run"]
    return cell


PENDING_TEXT = ("This chapter has not been published from a run yet, so it shows its code and prose without "
                "outputs. To see its tables and figures, run `make reproduce` (smoke profile, CPU) and open "
                "`runs/smoke/book/_build/html`, or run `python -m robustlib reproduce --profile cpu` (two CPU cores, "
                "overnight) or `--profile quick` (one GPU) and publish the run with `python -m robustlib reproduce "
                "--publish runs/cpu`.")


def pending_copy(source: Path):
    """The published-book stand-in for a chapter with no GPU run yet: the source notebook plus a banner."""
    nb = nbformat.read(source, as_version=4)
    nb = copy.deepcopy(nb)
    nb.cells.insert(1, _banner(PENDING_TEXT, "warning", "Results pending"))
    nb.metadata.setdefault("robustlib", {})["pending"] = True
    return nb


def is_pending(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return bool(nb.metadata.get("robustlib", {}).get("pending"))


def sync_pending(root: Path | None = None) -> list[Path]:
    """Refresh ``book/chapters/<nb>`` from ``notebooks/<nb>`` for every chapter that is not published yet."""
    root = (root or repo_root()).resolve()
    changed = []
    for src in notebooks(root):
        dst = root / "book" / "chapters" / src.name
        if dst.exists() and not is_pending(dst):
            continue
        text = nbformat.writes(pending_copy(src))
        if not dst.exists() or dst.read_text() != text + "\n" and dst.read_text() != text:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(text)
            changed.append(dst)
    return changed


def _published_profile(path: Path) -> str | None:
    if not path.exists():
        return None
    nb = nbformat.read(path, as_version=4)
    meta = nb.metadata.get("robustlib", {})
    return None if meta.get("pending") else meta.get("profile")


def _training_seconds(results: Path | None) -> float:
    """The training time of the distinct models behind a results file's rows (a model shown in several tables
    counts once)."""
    if results is None or not results.exists():
        return 0.0
    rows = json.loads(results.read_text()).get("rows", [])
    seen = {(r.get("method"), r.get("train_s")) for r in rows if isinstance(r.get("train_s"), (int, float))}
    return float(sum(t for _, t in seen))


def publish(run: str | Path, root: Path | None = None, log=print) -> list[Path]:
    """Copy a completed run's executed notebooks and results into the committed book (refuses smoke runs).

    Each published chapter opens with a banner naming the profile, the hardware, the commit and the wall time. A
    ``cpu`` run's results always go to ``book/results/cpu/`` and, unless a GPU run (quick or paper) is published
    for that chapter already, also to ``book/results/`` with its notebook; a GPU run replaces the cpu rows there and
    the cpu results stay in ``book/results/cpu/``.
    """
    root = (root or repo_root()).resolve()
    run = Path(run).resolve()
    manifest = load_manifest(run)
    if not manifest:
        raise ReproduceError(f"{run} has no manifest.json: it is not a reproduce run folder")
    profile = manifest.get("profile")
    if profile == "smoke":
        raise ReproduceError(f"{run} is a smoke run; only {', '.join(p for p in PROFILES if p != 'smoke')} runs can "
                             "be published")
    run_hw = hardware_label(manifest.get("hardware") or {})
    index_path = published_index(root)
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    copied = []
    for name, entry in manifest.get("notebooks", {}).items():
        if entry.get("status") != "ok":
            log(f"[publish] {name}: not completed ({entry.get('status')}), skipped")
            continue
        hw = entry.get("hardware") or run_hw   # an adopted notebook keeps the machine it ran on
        index.setdefault(profile, {})[name] = {
            k: entry.get(k) for k in ("notebook", "commit", "code_version", "wall_s", "started")} | {
            "hardware": hw, "results": str(_published_results(root, profile, name).relative_to(root))}
        index[profile][name]["code_version"] = (entry.get("adopted") or {}).get("code_version",
                                                                                entry.get("code_version"))
        dst = root / "book" / "chapters" / entry["notebook"]
        res_src = run / entry["results"] if entry.get("results") else None
        if profile not in GPU_PROFILES and res_src is not None:
            keep = root / "book" / "results" / "cpu" / f"{name}.json"
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(res_src, keep)
            copied.append(keep)
        if profile not in GPU_PROFILES and _published_profile(dst) in GPU_PROFILES:
            log(f"[publish] {name}: a GPU run is published already; its {profile} results are kept in "
                "book/results/cpu/ only")
            continue
        nb = nbformat.read(run / entry["output"], as_version=4)
        nb.cells = [c for c in nb.cells if "robustlib-published" not in c.metadata.get("tags", [])]
        text = (f"Published from a **{profile}** run on {hw}, commit `{(entry.get('commit') or '?')[:12]}`, "
                f"{entry['wall_s'] / 60:.1f} minutes ({entry.get('started', '?')}).")
        # some models were trained by an earlier, interrupted execution; a chapter whose part notebooks ran gathers
        # their rows (their models' time is theirs), so the test applies to part notebooks and chapters without parts
        gathers = "__" not in name and any(paper_key(n) == name and "__" in n for n in manifest.get("notebooks", {}))
        trained = 0.0 if gathers else _training_seconds(res_src)
        if trained > entry["wall_s"]:
            text += (f" Its models' measured training time is {trained / 60:.1f} minutes: part of it ran in an earlier "
                     "execution whose checkpoints this one resumed from.")
        if profile not in GPU_PROFILES:
            text += (" **CPU scale: compare the differences between rows, not the absolute numbers** — the models "
                     "are narrower and trained for fewer epochs than the paper's (the configuration table says how).")
        banner = _banner(text, "note", "Published run")
        banner.metadata["tags"] = ["robustlib-published"]
        nb.cells.insert(1, banner)
        nb.metadata.setdefault("robustlib", {}).update(profile=profile, hardware=hw, commit=entry.get("commit"),
                                                       wall_s=entry["wall_s"])
        nb.metadata["robustlib"].pop("pending", None)
        nbformat.write(nb, dst)
        copied.append(dst)
        if res_src is not None:
            res_dst = root / "book" / "results" / f"{name}.json"
            shutil.copy(res_src, res_dst)
            copied.append(res_dst)
        log(f"[publish] {name}: copied ({profile})")
    if copied:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", index_path)
        copied.append(index_path)
        times = wall_times_path(root)
        atomic_write_text(wall_times_markdown(index, root) + "\n", times)
        copied.append(times)
    return copied


def wall_times_path(root: Path) -> Path:
    """``book/results/wall_times.md``: the measured wall time of every published notebook (the performance appendix
    includes it), rewritten by every :func:`publish`."""
    return root / "book" / "results" / "wall_times.md"


def wall_times_markdown(index: dict, root: Path) -> str:
    """Per published profile, every notebook of the book with the wall time its published run measured (or "not
    run yet"), the hardware and commit, and the total: what the whole book costs to regenerate in that profile."""
    book = sorted((root / "notebooks").glob("*.ipynb")) if (root / "notebooks").is_dir() else []
    out = []
    for profile in [p for p in PROFILES if p in index]:
        runs = index[profile]
        names = [(chapter_name(nb), nb.name) for nb in book]
        names += sorted((n, r.get("notebook") or n) for n, r in runs.items() if n not in dict(names))
        done = [runs[n]["wall_s"] for n, _ in names if n in runs and runs[n].get("wall_s") is not None]
        out += [f"**{profile} profile**: {len(done)} of {len(names)} notebooks published, "
                f"{sum(done) / 3600:.2f} hours of notebook time in all (run one after another).", "",
                "| notebook | wall time (min) | hardware | commit | started |", "|---|---|---|---|---|"]
        for name, file in names:
            r = runs.get(name)
            if r is None:
                out.append(f"| {file} | not run yet | | | |")
            else:
                out.append(f"| {file} | {r['wall_s'] / 60:.1f} | {r.get('hardware', '?')} | "
                           f"`{str(r.get('commit') or '?')[:12]}` | {r.get('started', '?')} |")
        out.append("")
    return "\n".join(out).rstrip() if out else "No run has been published yet."
