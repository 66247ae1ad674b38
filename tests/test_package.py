"""The shape of the `offrl` package: rooms of at most ~600 lines, no import loops, no import hidden in a function to
dodge one, and a copied script that runs, sweeps and benchmarks under its own name with nothing in `offrl` naming its
fields."""

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from offrl.tools import bench, sweep
from tests.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "offrl"
MAX_MODULE_LINES = 620  # "~600": a room you can read in one sitting


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def offrl_imports(path: pathlib.Path) -> list[tuple[str, bool]]:
    """(imported offrl module, whether the import sits inside a function) for every import in the file; `from
    offrl.x import y` counts as an import of offrl.x.y when that is a module, else of offrl.x."""
    found = []
    tree = ast.parse(path.read_text())
    inside = {id(node) for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) for node in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] == "offrl" and module_file(name) is not None:
                found.append((name, id(node) in inside))
    return found


def module_file(name: str) -> pathlib.Path | None:
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[module_name(path)] = {name for name, _ in offrl_imports(path)} - {module_name(path)}
    return graph


def test_every_module_is_a_room_of_at_most_about_600_lines():
    sizes = {str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}
    for path in PACKAGE.rglob("*.py"):  # each room says what it holds
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path} has no opening docstring"


def test_the_package_imports_have_no_loop():
    graph = import_graph()
    # a package imports its own modules (its face); a module importing its package's face is the loop that counts
    state: dict[str, str] = {}
    loops = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if imported.startswith(module + "."):
                continue  # a package's face handing on its own modules
            if state.get(imported) == "open":
                loops.append(trail[trail.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert loops == []


def test_no_offrl_import_hides_inside_a_function():
    hidden = {
        str(path.relative_to(REPO_ROOT)): name
        for path in PACKAGE.rglob("*.py")
        for name, in_function in offrl_imports(path)
        if in_function
    }
    assert hidden == {}


def test_the_library_does_not_import_the_tools():
    graph = import_graph()
    library = {name: imports for name, imports in graph.items() if not name.startswith("offrl.tools")}
    assert {name: sorted(i for i in imports if i.startswith("offrl.tools")) for name, imports in library.items()} == {
        name: [] for name in library
    }


def test_offrl_names_no_field_of_an_algorithm():
    """The fields only a script declares (its algorithm's) appear nowhere in the library a run imports."""
    from offrl.args import RunArgs

    shared = {field for field in RunArgs.__dataclass_fields__}
    own = set()
    for script in REPO_ROOT.glob("train_*.py"):
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == "Args":
                own |= {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    own -= shared | {"lr", "weight_decay"}  # also the keys of torch's optimizer parameter groups
    library = [p for p in PACKAGE.rglob("*.py") if "tools" not in p.parts]
    named = {
        (str(path.relative_to(REPO_ROOT)), node.value)
        for path in library
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in own
    }
    named |= {
        (str(path.relative_to(REPO_ROOT)), node.attr)
        for path in library
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in own and isinstance(node.value, ast.Name)
        and node.value.id == "args"
    }  # fmt: skip
    assert named == set()


def copy_without_flow_steps(folder: pathlib.Path) -> pathlib.Path:
    """train_fql.py copied to train_myfql.py, its `flow_steps` field deleted and its use fixed at 10 steps."""
    text = (REPO_ROOT / "train_fql.py").read_text()
    field = (
        "    flow_steps: int = arg(10, at_least=1)\n"
        '    """Euler steps of the BC flow that produce the distillation target"""\n'
    )
    assert field in text and "args.flow_steps" in text
    copy = folder / "train_myfql.py"
    copy.write_text(text.replace(field, "").replace("args.flow_steps", "10"))
    assert "flow_steps" not in copy.read_text().replace("euler_flow", "")
    return copy


@pytest.mark.slow
def test_a_copied_script_without_one_of_its_fields_runs_and_is_found_by_the_sweep_and_the_bench(
    tmp_path, minari_dir, capsys
):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    copy_without_flow_steps(scripts)
    tiny = ["--no-compile", "--total-steps", "4", "--eval-every", "4", "--log-every", "2", "--eval-episodes", "1",
            "--eval-envs", "1", "--hidden-dims", "16", "16", "--batch-size", "16"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, str(scripts / "train_myfql.py"), "--env-name", "test/pendulum/random-v0",
         "--dataset-dir", str(minari_dir), *tiny],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()  # named by the copy: runs/<env>__myfql__0__<time>
    results = json.loads((run_dir / "results.json").read_text())
    assert "__myfql__0__" in run_dir.name and results["algo"] == "myfql" and results["status"] == "finished"

    root = tmp_path / "sweep"
    code = sweep.main(["--algos", "myfql", "--envs", "test/pendulum/random-v0", "--root", str(root), "--scripts-dir",
                       str(scripts), "--dataset-dir", str(minari_dir), "--jobs", "1", "--", *tiny])  # fmt: skip
    assert code == 0
    swept = json.loads((root / "test-pendulum-random-v0" / "myfql" / "seed0" / "results.json").read_text())
    assert swept["algo"] == "myfql" and swept["status"] == "finished"

    assert bench.parse_args(["--scripts-dir", str(scripts), "--device", "cpu"]).scripts == ["myfql"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--scripts-dir", str(scripts), "--scripts", "fql", "--device", "cpu"])
    assert "no train_fql.py in" in capsys.readouterr().err


def test_a_script_declares_its_checks_and_shapes(tmp_path):
    """The checks come from the script's own field declarations: a copy that drops a field drops its check."""
    from offrl.args import import_script, parse_args

    fql = import_script(REPO_ROOT / "train_fql.py")
    with pytest.raises(SystemExit, match="--flow-steps must be positive, got 0"):
        parse_args(fql.Args, fql.PRESETS, ["--flow-steps", "0"])
    with pytest.raises(SystemExit, match="--hidden-dims needs one or more values, each positive"):
        parse_args(fql.Args, fql.PRESETS, ["--hidden-dims", "64", "0"])
    shutil.copy(REPO_ROOT / "train_fql.py", tmp_path / "train_fql.py")
    copy = import_script(copy_without_flow_steps(tmp_path))
    assert "flow_steps" not in copy.Args.__dataclass_fields__
    assert parse_args(copy.Args, copy.PRESETS, []).args.alpha == 300.0


def test_every_module_of_the_package_is_tracked_by_git():
    """An ignore rule once hid a whole subpackage (`datasets/` matched offrl/datasets/): it ran here and was missing
    from every clone."""
    tracked = subprocess.run(["git", "ls-files", "offrl"], cwd=REPO_ROOT, capture_output=True, text=True)
    if tracked.returncode != 0 or not tracked.stdout:
        pytest.skip("not a git checkout")
    files = {str(p.relative_to(REPO_ROOT)) for p in PACKAGE.rglob("*.py")}
    assert files - set(tracked.stdout.split()) == set()
