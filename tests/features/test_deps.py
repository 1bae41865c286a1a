"""Which definitions from earlier cells a cell needs, and which names it would lack."""
import pytest
from IPython.core.interactiveshell import InteractiveShell

from pystributed.cell_runner import HEAD, MARKER
from pystributed.features import deps


def script(cell, *history, **kwargs):
    text, labels = deps.script(cell, [(f"In[{n}]", src) for n, src in enumerate(history, 1)], **kwargs)
    return text, labels


def test_only_what_is_needed_comes_along_transitively_and_in_order():
    text, labels = script(
        "print(f(2))\n",
        "import math\nimport json\ndata = load()\n",
        "K = 3\nUNUSED = 4\n",
        "def f(x):\n    return math.floor(helper(x) * K)\n\ndef helper(x):\n    return x\n",
    )
    assert labels == ["In[1]", "In[2]", "In[3]"]
    assert text == (HEAD + "# In[1]\nimport math\n# In[2]\nK = 3\n"
                    "# In[3]\ndef f(x):\n    return math.floor(helper(x) * K)\ndef helper(x):\n    return x\n"
                    "\n" + MARKER + "print(f(2))\n")


def test_no_names_needed_leaves_the_cell_alone():
    assert script("x = 1\nprint(x)\n", "x = 5\n") == ("x = 1\nprint(x)\n", [])


def test_the_last_definition_before_counts_and_decorators_come_along():
    text, _ = script(
        "print(f())\n",
        "def deco(fn):\n    return fn\nK = 1\n",
        "@deco\ndef f(k=K):\n    return k\n",
        "K = 2\ndef f():\n    return K\n",
    )
    assert "@deco" not in text and "def f():\n    return K\n" in text
    assert "K = 2\n" in text and "K = 1" not in text


def test_a_default_read_at_definition_time_takes_the_value_of_that_time():
    text, _ = script("print(f())\n", "K = 1\n", "def f(k=K):\n    return k\n", "K = 2\n")
    assert "K = 1\n" in text and "K = 2" not in text


def test_classes_conditional_imports_and_constants_are_portable():
    text, _ = script(
        "p = Point(1)\nprint(np, LIMITS)\n",
        "try:\n    import numpy as np\nexcept ImportError:\n    np = None\n",
        "import dataclasses\n\n@dataclasses.dataclass\nclass Point:\n    x: int\n",
        "LIMITS = {'low': -1, 'high': [1, 2]}\n",
    )
    assert "import numpy as np" in text and "class Point" in text and "import dataclasses" in text
    assert "LIMITS = {" in text


def test_statements_sharing_a_line_are_taken_apart():
    text, _ = script("print(b)\n", "a = 1; b = 2\n")
    assert "b = 2\n" in text and "a = 1" not in text


@pytest.mark.parametrize(("cell", "history", "namespace", "message"), [
    ("print(missing)\n", [], None, "missing: read in this cell (line 1); not defined in any earlier cell"),
    ("x = 1\nprint(data)\n", ["data = load()\n"], None,
     "data: read in this cell (line 2); set in In[1] by `data = load()`, which is a computation"),
    ("print(model)\n", [], {"model": 1},
     "model: read in this cell (line 1); it exists in this kernel, but no earlier cell's source defines it"),
    ("print(f())\n", ["def f():\n    return helper()\n"], None,
     "helper: read by `def f` from In[1]; not defined in any earlier cell"),
    ("count += 1\n", [], None, "count: read in this cell (line 1)"),
    ("for i in range(3):\n    total += i\n", ["total = sum([])\n"], None, ("total: read in this cell (line "
                                                                          "1); set in In[1]")),
])
def test_names_the_run_would_lack_are_reported(cell, history, namespace, message):
    with pytest.raises(deps.UnresolvedNames) as excinfo:
        script(cell, *history, namespace=namespace)
    assert message in str(excinfo.value)
    assert "--no-deps" in str(excinfo.value)


def test_what_the_cell_binds_itself_builtins_and_inputs_are_not_looked_for():
    assert script("import os\ndef g():\n    return os, h, len\nh = 1\nprint(__name__, given)\n",
                  given=["given"])[1] == []


def test_loop_variables_and_comprehensions_are_the_cell_own():
    assert script("for i in range(3):\n    print(i)\nprint([j for j in range(2)])\nwith open('f') as "
                  "fh:\n    pass\n")[1] == []


def test_the_class_of_an_input_comes_along():
    class Point:  # stands for a class defined in the notebook
        pass
    Point.__module__ = "__main__"
    text, _ = script("print(p)\n", "class Point:\n    pass\n", namespace={"p": Point()}, given=["p"])
    assert "class Point:" in text


def test_a_star_import_may_provide_a_name():
    text, _ = script("print(sqrt(4))\n", "from math import *\n")
    assert "from math import *" in text


def test_the_history_is_the_cells_before_the_running_one(tmp_path):
    shell = InteractiveShell.instance()
    try:
        shell.run_cell("def f():\n    return 42\n", store_history=True)
        shell.run_cell("%ls\nx = f()\n", store_history=True)
        shell.history_manager.store_inputs(shell.execution_count, "print(f())\n")  # the running cell
        history = deps.history_of(shell)
        assert history[-2:] == [("In[1]", "def f():\n    return 42"),
                                ("In[2]", "get_ipython().run_line_magic('ls', '')\nx = f()")]
    finally:
        InteractiveShell.clear_instance()


def test_a_name_set_and_then_incremented_in_one_block_is_the_cell_own():
    assert script("if True:\n    total = 0\n    for i in range(3):\n        total += i\n"
                  "def f():\n    n = 0\n    n += 1\n")[1] == []


def test_cells_that_never_ran_define_nothing():
    with pytest.raises(deps.UnresolvedNames) as excinfo:
        script("print(a, b, c)\n", "a = (\n", "c = 3\nreturn 1\nb = 2\n")
    assert set(excinfo.value.problems) == {"a", "b"}
