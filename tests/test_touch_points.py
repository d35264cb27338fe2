"""Every place the plugin touches another library's objects is listed, with why, in docs/architecture.md.

The scan below finds the operations that change an object the plugin did not create: module hooks, post-import hooks,
process-wide settings (signal handlers, thread counts, environment variables, `warnings.showwarning`, a library
logger's filters, file descriptors), accelerate's shared state, a trainer's callback list, a model's weights or
config, a tokenizer's template. A new one that is not in the table of docs/architecture.md fails here, and so does a
row whose place no longer does it.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trl_smol"
DOC = ROOT / "docs" / "architecture.md"
HEADING = "## Where the plugin touches other libraries' objects"

# What counts as touching, read from the source text of a call's function or an assignment's target.
CALLS = re.compile(
    r"\.register_(forward|forward_pre|full_backward)_hook$|register_post_import_hook$|^torch\.set_num_threads$"
    r"|^signal\.signal$|^signal\.pthread_sigmask$|\.eval$"
    r"|^logging\.getLogger\(.*\)\.addFilter$|\.reconfigure$|^os\.dup2$"
)
TARGETS = re.compile(
    r"showwarning$|\.weight\.data$|^weight\.data$|\.use_cache$|tokenizer\.chat_template$|tokenizer\.pad_token$"
    r"|callback_handler\.callbacks|environ\["
)
# Modules that build their own objects (a tiny test model, the demo model) rather than touch the user's.
OWN_OBJECTS = {"testing.py", "demo/model.py"}


def enclosing_functions(tree: ast.AST) -> dict[int, str]:
    """Line -> the innermost function (or class.method) that contains it."""
    lines: dict[int, str] = {}

    def visit(node: ast.AST, name: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = name
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inner = f"{name}.{child.name}" if name and name[0].isupper() else child.name
            elif isinstance(child, ast.ClassDef):
                inner = child.name
            if hasattr(child, "lineno"):
                for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    lines[line] = inner if inner else lines.get(line, "<module>")
            visit(child, inner)

    visit(tree, "")
    return lines


def touch_points() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in OWN_OBJECTS:
            continue
        tree = ast.parse(path.read_text())
        where = enclosing_functions(tree)
        for node in ast.walk(tree):
            hit = False
            if isinstance(node, ast.Call) and CALLS.search(ast.unparse(node.func)):
                hit = True
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                hit = any(TARGETS.search(ast.unparse(target)) for target in targets)
            elif isinstance(node, ast.Attribute) and node.attr in ("_shared_state", "_total_train_tokens"):
                hit = True
            if hit:
                found.add((f"trl_smol/{relative}", where.get(node.lineno, "<module>")))
    return found


def listed() -> set[tuple[str, str]]:
    text = DOC.read_text()
    assert HEADING in text, f"docs/architecture.md lost its section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(trl_smol/[^`]+)` \| `([^`]+)` \|", section, re.MULTILINE)
    return set(rows)


def test_every_touch_point_is_listed_with_why():
    unlisted = touch_points() - listed()
    assert not unlisted, f"add these to the table in docs/architecture.md ({HEADING!r}): {sorted(unlisted)}"


def test_every_listed_touch_point_still_exists():
    stale = listed() - touch_points()
    assert not stale, f"rows in docs/architecture.md whose place no longer touches anything: {sorted(stale)}"


def test_the_scan_finds_what_it_looks_for():
    points = touch_points()
    assert ("trl_smol/hook.py", "install") in points  # the one piece of magic: the post-import hook on `trl`
    assert ("trl_smol/features/labelled_scoring.py", "LabelledScoring.only_labelled") in points
