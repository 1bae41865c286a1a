"""Earlier cells come along: the definitions a cell needs from cells run before it.

A cell in a notebook uses what earlier cells defined; a container has none of that. From the
kernel's input history (`In[n]`, the source IPython ran, with magics already turned into Python)
we find the names the cell reads but does not bind, and for each the last earlier statement that
binds it. Definitions that are safe to run again (`def`, `class`, `import`, assignments without
calls, and `if`/`try` made of those) are kept, with what they need in turn, in their order; they go
above the cell in the saved script. A name with no such definition is reported before any build.
"""
import ast
import builtins
import symtable

from pystributed.cell_runner import HEAD, MARKER
from pystributed.errors import PystributedError

# Names every module has: never looked for.
MODULE_NAMES = {"__name__", "__file__", "__doc__", "__builtins__", "__spec__", "__loader__", "__package__",
                "__annotations__"}
_COMPREHENSIONS = {"listcomp", "setcomp", "dictcomp", "genexpr", "<listcomp>", "<setcomp>", "<dictcomp>",
                   "<genexpr>"}


class UnresolvedNames(PystributedError):
    """Names the cell needs that no earlier cell's source defines in a way we can bring along."""

    def __init__(self, problems):
        self.problems = problems
        lines = [f"  {name}: {why}" for name, why in problems.items()]
        super().__init__(
            "this cell needs names that would not exist in the run (it would fail with NameError); "
            "nothing was saved or run:\n" + "\n".join(lines)
            + "\nDefine them in this cell or an earlier one, pass values with --in NAME, or use --no-deps "
              "to skip this check.")


class Statement:
    """One top-level statement of a cell: what it binds, what it reads when it runs before it binds
    it (`reads_first`) and what its functions read when called (`later`)."""

    def __init__(self, cell, node, text):
        self.cell, self.node, self.text, self.line = cell, node, text, node.lineno
        self.binds, now, self.later = scope_names(text)  # now: what it reads when it runs
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            self.reads_first = now  # `x = x + 1` reads x before binding it
        else:
            self.reads_first = now - self.binds  # `for i in ...: f(i)` binds i before reading it
        # symtable counts `x += 1` as a binding only; it reads x first, unless x was set otherwise here.
        self.reads_first = self.reads_first | _incremented(node)
        self.portable = portable(node)
        self.star = isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)

    def describe(self):
        if isinstance(self.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return f"def {self.node.name}"
        if isinstance(self.node, ast.ClassDef):
            return f"class {self.node.name}"
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return first if len(first) <= 60 else first[:57] + "..."


def statements(cell, source):
    """The top-level statements of `source` (a cell labelled `cell`, e.g. In[3])."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # it did not run: it defined nothing
    lines = source.splitlines(True)
    body = tree.body
    found = []
    for i, node in enumerate(body):
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        end = node.end_lineno
        shares_a_line = (i > 0 and body[i - 1].end_lineno >= start) or (i + 1 < len(body)
                                                                        and body[i + 1].lineno <= end)
        text = ast.unparse(node) + "\n" if shares_a_line else "".join(lines[start - 1:end])
        try:  # IPython compiles statement by statement, and stops at one that does not compile
            compile(ast.Module(body=[node], type_ignores=[]), cell, "exec")
            found.append(Statement(cell, node, text))
        except SyntaxError:  # `return` outside a function: what follows never ran
            break
    return found


def scope_names(source):
    """(names bound at the top level, names read at the top level or in a class body or
    comprehension, names read as globals by functions) of `source`."""
    top = symtable.symtable(source, "<cell>", "exec")
    binds, now, later = set(), set(), set()
    for symbol in top.get_symbols():
        if symbol.is_assigned() or symbol.is_imported():
            binds.add(symbol.get_name())
        if symbol.is_referenced():
            now.add(symbol.get_name())
    for child in top.get_children():
        _globals_read(child, now, later, deferred=False)
    return binds, now, later


def _globals_read(table, now, later, *, deferred):
    # A function's body runs when it is called; a class body or a comprehension runs at once.
    deferred = deferred or (table.get_type() == "function" and table.get_name() not in _COMPREHENSIONS)
    for symbol in table.get_symbols():
        if symbol.is_global() and symbol.is_referenced():
            (later if deferred else now).add(symbol.get_name())
    for child in table.get_children():
        _globals_read(child, now, later, deferred=deferred)


def _incremented(node):
    """Names a statement updates in place (`x += 1`) at the top level, and does not set otherwise."""
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)  # their names are their own
    if isinstance(node, scopes):
        return set()
    updated, stored, stack = set(), set(), [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
            updated.add(n.target.id)
            stack.append(n.value)
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            stored.add(n.id)
        if not isinstance(n, scopes):
            stack.extend(ast.iter_child_nodes(n))
    return updated - stored


def portable(node):
    """Whether running this statement again in the image is what the notebook did: definitions,
    imports and constants, not computations (a call could take hours, or read local files)."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                         ast.Pass)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return node.value is not None and all(_simple_target(t) for t in targets) and _no_calls(node.value)
    if isinstance(node, ast.Expr):  # a docstring or a bare constant
        return isinstance(node.value, ast.Constant)
    if isinstance(node, ast.If):
        return _no_calls(node.test) and all(map(portable, node.body + node.orelse))
    if isinstance(node, ast.Try):
        handlers = [h for h in node.handlers if h.type is None or _no_calls(h.type)] == node.handlers
        inner = node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        return handlers and all(map(portable, inner))
    return False


def _simple_target(target):
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_simple_target(t) for t in target.elts)
    return isinstance(target, ast.Name)


def _no_calls(expr):
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
            return False
        if not isinstance(node, ast.Lambda):  # a lambda's body runs only when called
            stack.extend(ast.iter_child_nodes(node))
    return True


def needed(source, history, *, namespace=None, given=()):
    """The definitions from `history` ([(label, source)], oldest first) that the cell `source`
    needs, as Statements in their order. `given`: names the run gets otherwise (--in); the classes
    of their values that the notebook defined come along too, so that they unpickle. Raise
    UnresolvedNames for names it would lack."""
    earlier = [s for label, text in history for s in statements(label, text)]
    known = MODULE_NAMES | set(given)
    wanted = []  # (name, statements before which it must be bound, who reads it)
    bound = set()
    cell = statements("this cell", source)
    bound_anywhere = set().union(*(s.binds for s in cell)) if cell else set()
    for s in cell:
        where = f"read in this cell (line {s.line})"
        wanted += [(name, len(earlier), where) for name in sorted(s.reads_first - bound)]
        wanted += [(name, len(earlier), where) for name in sorted(s.later - bound_anywhere)]
        bound |= s.binds
    for name in given:
        kind = type(namespace[name]) if namespace and name in namespace else None
        if kind is not None and kind.__module__ == "__main__":
            wanted.append((kind.__name__, len(earlier), f"the class of --in {name}"))
    chosen, problems, seen = set(), {}, set()
    while wanted:
        name, before, where = wanted.pop(0)
        if name in known or (name, before) in seen or name in problems:
            continue
        seen.add((name, before))
        index = next((i for i in range(before - 1, -1, -1) if name in earlier[i].binds), None)
        if index is None and hasattr(builtins, name):
            continue
        if index is None:
            stars = [i for i in range(before) if earlier[i].star]
            if stars:  # `from m import *` may be where it comes from: bring those along
                chosen.update(stars)
            elif namespace is not None and name in namespace:
                problems[name] = (f"{where}; it exists in this kernel, but no earlier cell's source defines "
                                  f"it (IPython, %run or a --out put it there?): pass it with --in {name}")
            else:
                problems[name] = f"{where}; not defined in any earlier cell or in the notebook"
            continue
        s = earlier[index]
        if not s.portable:
            problems[name] = (f"{where}; set in {s.cell} by `{s.describe()}`, which is a computation, not "
                              "brought along (only def, class, import and constants are): pass it "
                              f"with --in {name}")
            continue
        if index not in chosen:
            chosen.add(index)
            by = f"read by `{s.describe()}` from {s.cell}"
            wanted += [(n, index, by) for n in sorted(s.reads_first)]
            wanted += [(n, len(earlier), by) for n in sorted(s.later)]
    if problems:
        raise UnresolvedNames(problems)
    return [earlier[i] for i in sorted(chosen)]


def script(source, history, *, namespace=None, given=()):
    """The saved script: the definitions the cell needs from earlier cells (under HEAD, each
    cell's under its label), then the cell; and the labels of the cells they came from."""
    chosen = needed(source, history, namespace=namespace, given=given)
    if not chosen:
        return source, []
    parts, labels = [HEAD], []
    for s in chosen:
        if s.cell not in labels:
            labels.append(s.cell)
            parts.append(f"# {s.cell}\n")
        parts.append(s.text if s.text.endswith("\n") else s.text + "\n")
    parts.append(f"\n{MARKER}{source}")
    return "".join(parts), labels


def history_of(shell):
    """[(label, source)] of the cells this kernel ran before the one running now."""
    inputs = shell.history_manager.input_hist_parsed
    current = shell.execution_count  # IPython stores a cell under its number before running it
    return [(f"In[{n}]", inputs[n]) for n in range(1, min(current, len(inputs)))]
