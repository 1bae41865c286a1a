"""Count the core code a newcomer reads to follow the seed path (save the cell, build, push, run on
the server, copy back): the functions a seed run goes through, from `%%save_for_remote` to
results/<run-id>/, in the front doors, the steps, the place and the server script, without blank
lines, comments and docstrings. The helpers they call (context, docker, util, results, config,
progress, live) are read on demand and not counted; nor are the branches beyond the seed path
(detach, interrupt, a dropped connection) or features.

    python3 scripts/core_lines.py     # each function's count, the total; exit 1 above LIMIT
"""
import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pystributed"
LIMIT = 500
SEED = {
    "magic.py": ["RemoteMagics.save_for_remote", "save", "check_cell", "_with_newline", "register"],
    "main.py": ["main", "_namespace", "_show"],
    "pipeline.py": ["Run", "run", "check", "check_code", "environment", "pack", "ship", "connect", "build", "push",
                    "pull", "layer_progress", "start_args", "follow", "stream", "finish", "fetch"],
    "places/__init__.py": ["place_for"],
    "places/ssh.py": ["SSH_DEFAULTS", "Ssh", "_short_tmp"],
    "places/server.py": ["SCRIPT", "MARK", "LOADER", "program", "Server.call", "Server.stream", "Server.answer_of",
                         "Server.after_mark", "Server.workdir", "Server.prepare", "Server.docker", "Server.follow",
                         "Server.finish", "Server.fetch", "_env_writer", "Unframe"],
    "server.sh": ["MARK", "LOG", "STATE", "answer", "container", "state_format", "docker_command", "rundir",
                  "follow", "finish", "fetch"],
}


def python_spans(text):
    """{qualified name: (first line, last line)} of top-level definitions and methods, and the
    line numbers of docstrings."""
    tree, spans, docstrings = ast.parse(text), {}, set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            spans[node.name] = (first, node.end_lineno)
            for inner in node.body if isinstance(node, ast.ClassDef) else []:
                if isinstance(inner, ast.FunctionDef):
                    start = min([inner.lineno] + [d.lineno for d in inner.decorator_list])
                    spans[f"{node.name}.{inner.name}"] = (start, inner.end_lineno)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    spans[target.id] = (node.lineno, node.end_lineno)
    return spans, docstrings


def shell_spans(text):
    spans, lines = {}, text.splitlines()
    for number, line in enumerate(lines, 1):
        match = re.match(r"([A-Za-z_]+)\(\) \{", line) or re.match(r"([A-Z_]+)=", line)
        if match:
            end = number
            if line.rstrip().endswith("{"):
                end = next(n for n in range(number, len(lines) + 1) if lines[n - 1] == "}")
            spans[match.group(1)] = (number, end)
    return spans, set()


def main():
    total = 0
    for name, wanted in SEED.items():
        text = (PACKAGE / name).read_text(encoding="utf-8")
        spans, skip = python_spans(text) if name.endswith(".py") else shell_spans(text)
        lines = text.splitlines()
        count = 0
        for item in wanted:
            first, last = spans[item]
            count += sum(1 for n in range(first, last + 1)
                         if lines[n - 1].strip() and not lines[n - 1].strip().startswith("#") and n not in skip)
        total += count
        print(f"{count:5}  pystributed/{name}: {', '.join(wanted)}")
    print(f"{total:5}  in all (at most {LIMIT})")
    return 0 if total <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
