"""The package's shape, guarded: short modules and functions, no import cycle, a thin cli.py, method names only
in methods/, one job per module stated first, and every path the docs cite on disk."""

import ast
import io
import re
import tokenize
from pathlib import Path

import networkx as nx

from onestep.methods import METHODS

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "onestep"
MODULES = sorted(SRC.rglob("*.py"))
MAX_MODULE, MAX_FUNCTION, MAX_LOOP, MAX_CLI = 400, 60, 80, 200
LOOPS = {"fit"}  # the training loop may take MAX_LOOP lines


def rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_module_over_400_lines():
    long = {rel(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_MODULE}
    assert not long, f"modules over {MAX_MODULE} lines: {long}"


def test_no_function_over_60_lines():
    long = {}
    for p in MODULES:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > (MAX_LOOP if node.name in LOOPS else MAX_FUNCTION):
                    long[f"{rel(p)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION} lines ({MAX_LOOP} for {sorted(LOOPS)}): {long}"


def imported(path: Path, names: set[str]) -> set[str]:
    """The onestep modules `path` imports anywhere in it (inside functions too), relative imports resolved."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from onestep import x` imports the module onestep.x when x is one, else onestep itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in names:  # onestep.methods.base.Context -> onestep.methods.base
                t = t.rpartition(".")[0]
            if t and t != me:
                out.add(t)
    return out


def test_no_import_cycle():
    names = {module_name(p) for p in MODULES}
    graph = nx.DiGraph()
    graph.add_nodes_from(names)
    for p in MODULES:
        graph.add_edges_from((module_name(p), t) for t in imported(p, names))
    # a package's __init__ importing its own submodules is no cycle of the code's layers
    graph.remove_edges_from([(a, b) for a, b in list(graph.edges) if b.startswith(a + ".")])
    cycles = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    shortest = [min(nx.simple_cycles(graph.subgraph(c)), key=len) for c in cycles]
    assert not cycles, "import cycles (imports inside functions count): " + "; ".join(
        f"{len(c)} modules {sorted(c)}, e.g. {' -> '.join([*s, s[0]])}" for c, s in zip(cycles, shortest, strict=True))


def test_cli_under_200_lines():
    n = len((SRC / "cli.py").read_text().splitlines())
    assert n < MAX_CLI, f"src/onestep/cli.py has {n} lines; it parses and dispatches only (under {MAX_CLI})"


def string_literals(source: str) -> list[tuple[int, str]]:
    """(line, value) of every string token of a Python or Snakemake source but the docstrings (a string that
    is a statement of its own: a module's, class's, function's or rule's docstring); comments are no tokens."""
    toks = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL)]
    layout = (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
    out = []
    for i, tok in enumerate(toks):
        if tok.type == getattr(tokenize, "FSTRING_MIDDLE", None):
            out.append((tok.start[0], tok.string))
        if tok.type != tokenize.STRING:
            continue
        alone = (i == 0 or toks[i - 1].type in layout) and (i + 1 == len(toks) or toks[i + 1].type in layout)
        if not alone:
            try:
                value = ast.literal_eval(tok.string)
            except (ValueError, SyntaxError):
                value = tok.string
            out.append((tok.start[0], value if isinstance(value, str) else str(value)))
    return out


def test_no_method_named_outside_methods():
    names = set(METHODS) | {"ddpm"}
    found = []
    for p in MODULES:
        if (SRC / "methods") in p.parents:
            continue
        found += [f"{rel(p)}:{i} {s!r}" for i, s in string_literals(p.read_text()) if s in names]
    rules = [REPO / "Snakefile", *sorted((REPO / "workflow").rglob("*.smk"))]
    for p in rules:
        found += [f"{rel(p)}:{i} {s!r}" for i, s in string_literals(p.read_text()) if s in names]
    assert not found, "method names outside src/onestep/methods/ (use the method hooks): " + ", ".join(found)


def test_every_module_states_its_job_first():
    missing = [rel(p) for p in MODULES
               if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip().splitlines()[:1]]
    assert not missing, f"modules without a first docstring line stating their one job: {missing}"


# a repository path, or one inside the package (`methods/flow.py` is src/onestep/methods/flow.py)
CITED = re.compile(r"(?<![\w/.-])((?:src|workflow|config|benchmarks|tests|docs|slurm|methods|onestep)/[\w./*-]*[\w*])")
ROOTS = (REPO, SRC.parent, SRC)


def test_every_path_the_docs_cite_exists():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    missing = []
    for doc in docs:
        text = doc.read_text()
        spans = re.findall(r"`([^`\n]+)`", text) + re.findall(r"\]\(([^)\s#]+)", text)
        for span in spans:
            for path in CITED.findall(re.sub(r"^(\.\.?/)+", "", span)):
                if not any(any(r.glob(path)) if "*" in path else (r / path).exists() for r in ROOTS):
                    missing.append(f"{rel(doc)}: {path}")
    assert not missing, "paths the docs cite that do not exist: " + ", ".join(sorted(set(missing)))
