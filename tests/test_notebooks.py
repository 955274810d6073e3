"""Notebooks: stored clean, thin parameter cells, every notebook runs in the smoke profile through papermill and
writes results that follow the schema; the batch pipeline's skip, failure and publish rules."""
from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from robustlib import reproduce, results

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = reproduce.notebooks(ROOT)
PARAMETERS = {"PROFILE", "SEED", "DEVICE", "DATA_DIR", "OUT_DIR"}


def test_there_are_chapter_notebooks():
    assert [p.name for p in NOTEBOOKS][:1] == ["00_adversarial_examples.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_source_notebooks_are_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them (executed copies live in book/)"


def test_the_output_check_catches_a_notebook_with_outputs(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=1,
                                                                   outputs=[nbformat.v4.new_output(
                                                                       "execute_result", {"text/plain": "2"},
                                                                       execution_count=1)])])
    p = tmp_path / "00_x.ipynb"
    nbformat.write(nb, p)
    with pytest.raises(AssertionError, match="hold outputs"):
        test_source_notebooks_are_stored_without_outputs(p)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_only_plain_values(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    assert "parameters" in first.metadata.get("tags", []), "the first code cell must be tagged 'parameters'"
    tree = ast.parse(first.source)
    names = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        names[node.targets[0].id] = ast.literal_eval(node.value)  # raises for anything but a literal
    assert set(names) == PARAMETERS
    assert names["PROFILE"] == "smoke"
    assert "summary()" in code[-1].source, "the last cell must print the run summary"


def test_published_chapters_are_in_sync_or_from_a_real_run():
    for src in NOTEBOOKS:
        dst = ROOT / "book" / "chapters" / src.name
        assert dst.exists(), f"{dst} is missing: run `python -m robustlib book`"
        if reproduce.is_pending(dst):
            expected = nbformat.writes(reproduce.pending_copy(src))
            assert dst.read_text().strip() == expected.strip(), (
                f"{dst.name} is out of date with notebooks/{src.name}: run `python -m robustlib book`")
        else:
            meta = nbformat.read(dst, as_version=4).metadata.get("robustlib", {})
            assert meta.get("profile") in ("quick", "cpu", "paper"), f"{dst.name} was published from a {meta} run"


@pytest.mark.slow
def test_every_notebook_runs_in_the_smoke_profile_and_writes_valid_results(smoke_run):
    run, manifest = smoke_run["dir"], smoke_run["manifest"]
    assert manifest["profile"] == "smoke" and manifest["git"]["commit"]
    for nb in NOTEBOOKS:
        name = reproduce.chapter_name(nb)
        entry = manifest["notebooks"][name]
        assert entry["status"] == "ok" and entry["wall_s"] > 0
        doc = results.load(run / "results" / f"{name}.json")
        assert doc["paper"] == reproduce.paper_key(name) and doc["profile"] == "smoke" and doc["rows"]
        for fig in doc["figures"]:
            assert (run / "results" / fig).stat().st_size > 0
        executed = nbformat.read(run / entry["output"], as_version=4)
        assert executed.metadata["robustlib"]["profile"] == "smoke"
    on_disk = json.loads((run / "manifest.json").read_text())
    assert on_disk["notebooks"].keys() == manifest["notebooks"].keys()


@pytest.mark.slow
def test_rerun_skips_completed_notebooks_and_changes_no_tracked_file(smoke_run):
    before = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                            capture_output=True, text=True).stdout
    logs: list[str] = []
    reproduce.reproduce("smoke", out=smoke_run["dir"], book=False, log=logs.append)
    assert logs and all("already completed" in line for line in logs), logs
    after = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    assert before == after


@pytest.mark.slow
def test_a_failing_notebook_stops_the_batch_naming_notebook_and_cell(tmp_path):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    cells = [nbformat.v4.new_code_cell('PROFILE = "smoke"\nSEED = 0\nDEVICE = "auto"\nDATA_DIR = None\n'
                                       'OUT_DIR = None'),
             nbformat.v4.new_code_cell("x = 1"),
             nbformat.v4.new_code_cell("raise ValueError('boom')")]
    cells[0].metadata["tags"] = ["parameters"]
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=meta), root / "notebooks" / "00_first.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")], metadata=meta),
                   root / "notebooks" / "01_second.ipynb")
    with pytest.raises(reproduce.ReproduceError,
                       match=r"00_first\.ipynb failed: cell \d+ \(execution count 4\) raised ValueError: boom"):
        reproduce.reproduce("smoke", out=tmp_path / "run", book=False, root=root, log=lambda s: None, jobs=1)
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["notebooks"]["first"]["status"] == "failed" and "second" not in m["notebooks"]


def _timed_notebook(path, seconds, fail=False):
    """A notebook that logs its start and end time (and optionally fails) in OUT_DIR/log.txt."""
    p = nbformat.v4.new_code_cell('PROFILE = "smoke"\nSEED = 0\nDEVICE = "auto"\nDATA_DIR = None\nOUT_DIR = None')
    p.metadata["tags"] = ["parameters"]
    body = (f"import pathlib, time\nlog = pathlib.Path(OUT_DIR) / 'log.txt'\n"
            f"with open(log, 'a') as f: f.write('start {path.stem} %f\\n' % time.time())\n"
            f"time.sleep({seconds})\n" + ("raise RuntimeError('planned failure')\n" if fail else "") +
            f"with open(log, 'a') as f: f.write('end {path.stem} %f\\n' % time.time())")
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=[p, nbformat.v4.new_code_cell(body)], metadata=meta), path)


@pytest.mark.slow
def test_parallel_batch_keeps_each_papers_order_runs_papers_side_by_side_and_comparison_last(tmp_path):
    root = tmp_path / "repo"
    nbs = root / "notebooks"
    nbs.mkdir(parents=True)
    _timed_notebook(nbs / "00_solo.ipynb", 4)
    for stem in ("10_paper__one", "11_paper__two", "19_paper"):
        _timed_notebook(nbs / f"{stem}.ipynb", 0.5)
    _timed_notebook(nbs / "90_comparison.ipynb", 0.1)
    run = tmp_path / "run"
    m = reproduce.reproduce("smoke", out=run, book=False, root=root, log=lambda s: None, jobs=2)
    assert m["jobs"] == 2 and all(e["status"] == "ok" for e in m["notebooks"].values()) and len(m["notebooks"]) == 5
    t = {}
    for line in (run / "results" / "log.txt").read_text().split("\n"):
        if line:
            kind, stem, when = line.split()
            t[(kind, stem)] = float(when)
    assert t["end", "10_paper__one"] <= t["start", "11_paper__two"] and t["end", "11_paper__two"] <= t["start", "19_paper"]
    assert t["start", "10_paper__one"] < t["end", "00_solo"]          # two papers ran at the same time
    assert t["start", "90_comparison"] >= max(v for (k, s), v in t.items() if k == "end" and s != "90_comparison")

    # a failure stops its paper's later notebooks and everything not yet started; the running ones finish
    _timed_notebook(nbs / "10_paper__one.ipynb", 0.1, fail=True)
    with pytest.raises(reproduce.ReproduceError, match=r"10_paper__one\.ipynb failed: .*RuntimeError: planned failure"):
        reproduce.reproduce("smoke", out=tmp_path / "run2", book=False, root=root, log=lambda s: None, jobs=2,
                            force=True)
    m2 = json.loads((tmp_path / "run2" / "manifest.json").read_text())["notebooks"]
    assert m2["paper__one"]["status"] == "failed" and m2["solo"]["status"] == "ok"
    assert not {"paper__two", "paper", "comparison"} & set(m2)


@pytest.mark.slow
def test_publish_refuses_smoke_runs(smoke_run):
    with pytest.raises(reproduce.ReproduceError, match="smoke run"):
        reproduce.publish(smoke_run["dir"], root=ROOT)


def test_a_paper_key_selects_its_parts_and_chapter_and_a_stem_selects_one_notebook():
    nuat = [p.name for p in reproduce.select(["nuat"], ROOT)]
    assert nuat[-1] == "10_nuat.ipynb" and "16_nuat__mnist.ipynb" in nuat and len(nuat) >= 7
    assert [p.name for p in reproduce.select(["10_nuat"], ROOT)] == ["10_nuat.ipynb"]
    assert [p.name for p in reproduce.select(["nuat__mnist"], ROOT)] == ["16_nuat__mnist.ipynb"]


def test_unknown_notebook_and_profile_names():
    import robustlib as rl
    with pytest.raises(rl.UnknownNameError, match="Did you mean .adversarial_examples.*Valid notebook names: abnn"):
        reproduce.select(["adversarial"], ROOT)
    with pytest.raises(rl.UnknownNameError, match="Valid profile names: cpu, paper, quick, smoke"):
        reproduce.reproduce("fast", out=ROOT / "runs" / "never", book=False)


def test_results_schema_rejects_bad_documents():
    with pytest.raises(results.SchemaError) as e:
        results.validate({"paper": "nuat", "profile": "smoke", "rows": [{"method": "NuAT", "metrics": {"clean": "x"}}]})
    msg = str(e.value)
    assert "missing top-level key 'hardware'" in msg and "metrics['clean'] should be a number" in msg


def test_reading_order_lists_each_chapter_before_its_parts_and_the_batch_runs_parts_first():
    names = [p.stem for p in NOTEBOOKS]
    assert names.index("10_nuat") < names.index("11_nuat__nuat") < names.index("16_nuat__mnist")
    order = [p.stem for p in reproduce.run_order(NOTEBOOKS)]
    for paper in ("nuat", "abnn", "advprop", "gradreg", "comparison"):
        mine = [s for s in order if s.split("_", 1)[1].split("__")[0] == paper]
        assert "__" not in mine[-1] and all("__" in s for s in mine[:-1]), mine
    assert order[0] == "00_adversarial_examples" and order[-1] == "90_comparison"
    assert [p.stem for p in reproduce.select(["nuat"])][-1] == "10_nuat"


def test_a_notebook_reruns_only_when_its_own_code_changes(tmp_path):
    """Editing the README, a test or another paper's chapter must not redo finished notebooks; editing the library,
    the notebook or its own chapter must."""
    root = tmp_path
    for f, text in {"robustlib/attacks.py": "a = 1", "robustlib/chapters/common.py": "c = 1",
                    "robustlib/chapters/nuat.py": "n = 1", "robustlib/chapters/abnn/__init__.py": "b = 1",
                    "robustlib/reported/nuat.yaml": "x: 1", "robustlib/reported/abnn.yaml": "y: 1",
                    "notebooks/10_nuat.ipynb": "{}", "notebooks/90_comparison.ipynb": "{}", "README.md": "r"}.items():
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(text)
    nuat, comp = root / "notebooks/10_nuat.ipynb", root / "notebooks/90_comparison.ipynb"
    v = lambda nb: reproduce.notebook_version(nb, root)  # noqa: E731
    before, before_comp = v(nuat), v(comp)
    (root / "robustlib/reproduce.py").write_text("batch = 1")              # the batch runner: no result depends on it
    (root / "robustlib/bench.py").write_text("bench = 1")                  # nor on the benchmark (no notebook runs it)
    assert v(nuat) == before
    for f in ("README.md", "robustlib/chapters/abnn/__init__.py", "robustlib/reported/abnn.yaml",
              "robustlib/reproduce.py", "robustlib/bench.py"):
        (root / f).write_text("changed")
    assert v(nuat) == before and v(comp) != before_comp   # the comparison reads every chapter
    for f in ("robustlib/chapters/nuat.py", "robustlib/attacks.py", "robustlib/chapters/common.py",
              "notebooks/10_nuat.ipynb", "robustlib/reported/nuat.yaml"):
        old = v(nuat)
        (root / f).write_text("changed again")
        assert v(nuat) != old, f


def _fake_run(tmp_path, profile, name="nuat", notebook="10_nuat.ipynb"):
    run = tmp_path / f"run-{profile}"
    (run / "notebooks").mkdir(parents=True)
    (run / "results").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# NuAT"), nbformat.v4.new_code_cell("1")])
    nb.metadata["robustlib"] = {"profile": profile}
    nbformat.write(nb, run / "notebooks" / notebook)
    (run / "results" / f"{name}.json").write_text(json.dumps({"profile": profile}))
    manifest = {"profile": profile, "hardware": {"cpu": "AMD EPYC", "cpu_count": 2, "gpu": None},
                "notebooks": {name: {"status": "ok", "notebook": notebook, "output": f"notebooks/{notebook}",
                                     "results": f"results/{name}.json", "commit": "abc123def456789",
                                     "wall_s": 1800.0, "started": "2026-12-03T20:00:00"}}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_publishing_a_cpu_run_banners_it_and_a_gpu_run_replaces_it_keeping_the_cpu_results(tmp_path):
    root = tmp_path / "repo"
    (root / "book" / "chapters").mkdir(parents=True)
    (root / "book" / "results").mkdir()
    reproduce.publish(_fake_run(tmp_path, "cpu"), root, log=lambda *_: None)
    nb = nbformat.read(root / "book/chapters/10_nuat.ipynb", as_version=4)
    banner = nb.cells[1].source
    assert "**cpu** run on CPU (2 cores: AMD EPYC)" in banner and "abc123def456" in banner and "30.0 minutes" in banner
    assert "compare the differences between rows" in banner and nb.metadata["robustlib"]["profile"] == "cpu"
    assert "earlier execution" not in banner
    times = (root / "book/results/wall_times.md").read_text()     # the appendix's table of measured wall times
    assert "**cpu** profile**" not in times and "**cpu profile**: 1 of 1 notebooks published, 0.50 hours" in times
    assert "| 10_nuat.ipynb | 30.0 | CPU (2 cores: AMD EPYC) | `abc123def456` |" in times
    resumed = _fake_run(tmp_path / "resumed", "cpu")      # its models took longer than this execution: it resumed
    (resumed / "results/nuat.json").write_text(json.dumps({"profile": "cpu", "rows": [
        {"method": "NuAT", "train_s": 2400.0}, {"method": "NuAT", "train_s": 2400.0}, {"method": "FBF", "train_s": 600}]}))
    reproduce.publish(resumed, root, log=lambda *_: None)
    banner = nbformat.read(root / "book/chapters/10_nuat.ipynb", as_version=4).cells[1].source
    assert "training time is 50.0 minutes" in banner and "earlier execution" in banner
    assert json.loads((root / "book/results/nuat.json").read_text())["profile"] == "cpu"
    assert json.loads((root / "book/results/cpu/nuat.json").read_text())["profile"] == "cpu"
    reproduce.publish(_fake_run(tmp_path, "quick"), root, log=lambda *_: None)
    assert json.loads((root / "book/results/nuat.json").read_text())["profile"] == "quick"
    assert json.loads((root / "book/results/cpu/nuat.json").read_text())["profile"] == "cpu"
    nb = nbformat.read(root / "book/chapters/10_nuat.ipynb", as_version=4)
    assert sum("Published run" in c.source for c in nb.cells) == 1 and "**quick**" in nb.cells[1].source
    (tmp_path / "run-cpu").rename(tmp_path / "old-cpu")
    reproduce.publish(_fake_run(tmp_path, "cpu"), root, log=lambda *_: None)  # a later cpu run: GPU chapter stays
    assert nbformat.read(root / "book/chapters/10_nuat.ipynb", as_version=4).metadata["robustlib"]["profile"] == "quick"


def test_a_new_run_folder_adopts_what_the_book_published_for_the_same_code(tmp_path):
    """A long cpu run resumes on a new machine (an empty run folder) from what earlier sessions published: the
    published notebook of the same profile and code version is adopted, not rerun; other code runs it again unless
    reuse_published says otherwise, and the manifest says where an adopted notebook came from."""
    root = tmp_path / "repo"
    (root / "book" / "chapters").mkdir(parents=True)
    (root / "book" / "results").mkdir()
    (root / "robustlib").mkdir()
    (root / "robustlib" / "attacks.py").write_text("a = 1")
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("raise RuntimeError('must not run')")])
    (root / "notebooks").mkdir()
    nbformat.write(source, root / "notebooks" / "10_nuat.ipynb")
    version = reproduce.notebook_version(root / "notebooks" / "10_nuat.ipynb", root)
    run = _fake_run(tmp_path, "cpu")
    m = json.loads((run / "manifest.json").read_text())
    m["notebooks"]["nuat"]["code_version"] = version
    (run / "manifest.json").write_text(json.dumps(m))
    reproduce.publish(run, root, log=lambda *_: None)
    index = json.loads(reproduce.published_index(root).read_text())
    assert index["cpu"]["nuat"]["code_version"] == version and index["cpu"]["nuat"]["results"] == \
        "book/results/cpu/nuat.json"
    quiet = dict(book=False, root=root, log=lambda *_: None, jobs=1)
    new = reproduce.reproduce("cpu", out=tmp_path / "fresh", **quiet)["notebooks"]["nuat"]
    assert new["status"] == "ok" and new["adopted"]["from"] == "book/chapters/10_nuat.ipynb"
    assert new["commit"] == "abc123def456789" and new["wall_s"] == 1800.0
    assert json.loads((tmp_path / "fresh/results/nuat.json").read_text())["profile"] == "cpu"
    adopted = nbformat.read(tmp_path / "fresh/notebooks/10_nuat.ipynb", as_version=4)
    assert not any("Published run" in c.source for c in adopted.cells)   # the banner is the book's, not the run's
    with pytest.raises(reproduce.ReproduceError, match="10_nuat.ipynb failed"):   # a smoke run adopts nothing
        reproduce.reproduce("smoke", out=tmp_path / "smoke", **quiet)
    (root / "robustlib" / "attacks.py").write_text("a = 2")                 # other code: it runs again
    with pytest.raises(reproduce.ReproduceError, match="10_nuat.ipynb failed"):
        reproduce.reproduce("cpu", out=tmp_path / "other", **quiet)
    again = reproduce.reproduce("cpu", out=tmp_path / "reuse", reuse_published=True, **quiet)["notebooks"]["nuat"]
    assert again["adopted"]["code_version"] == version and again["code_version"] != version
    reproduce.publish(tmp_path / "reuse", root, log=lambda *_: None)     # republished: keeps the run's own version
    assert json.loads(reproduce.published_index(root).read_text())["cpu"]["nuat"]["code_version"] == version


def test_a_chapter_that_gathers_its_parts_rows_is_not_called_resumed(tmp_path):
    """The chapter notebook's results hold its part notebooks' rows, whose models the parts trained: their training
    time exceeding the chapter's wall time says nothing about the chapter having resumed."""
    root = tmp_path / "repo"
    (root / "book" / "chapters").mkdir(parents=True)
    (root / "book" / "results").mkdir()
    run = _fake_run(tmp_path, "cpu")
    (run / "results/nuat.json").write_text(json.dumps({"profile": "cpu", "rows": [
        {"method": "NuAT", "train_s": 2400.0}, {"method": "FBF", "train_s": 600.0}]}))
    part = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# MNIST"), nbformat.v4.new_code_cell("1")])
    nbformat.write(part, run / "notebooks/16_nuat__mnist.ipynb")
    (run / "results/nuat__mnist.json").write_text(json.dumps({"profile": "cpu", "rows": [
        {"method": "NuAT", "train_s": 60.0}]}))
    m = json.loads((run / "manifest.json").read_text())
    m["notebooks"]["nuat__mnist"] = {"status": "ok", "notebook": "16_nuat__mnist.ipynb",
                                     "output": "notebooks/16_nuat__mnist.ipynb", "results": "results/nuat__mnist.json",
                                     "commit": "abc123def456789", "wall_s": 600.0, "started": "2026-12-03T19:00:00"}
    (run / "manifest.json").write_text(json.dumps(m))
    reproduce.publish(run, root, log=lambda *_: None)
    banner = nbformat.read(root / "book/chapters/10_nuat.ipynb", as_version=4).cells[1].source
    assert "30.0 minutes" in banner and "earlier execution" not in banner
