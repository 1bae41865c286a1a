"""Print the Configuration reference, a Markdown table of every config key (its type, default and one
line), from pystributed/config.py's own definitions: the dataclass Config and its HELP texts.

    python3 scripts/config_reference.py           # print it
    python3 scripts/config_reference.py --write   # put it in docs/configuration.md, between its markers

tests/test_docs.py fails when docs/configuration.md's table is not what this prints."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from pystributed import config

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
BEGIN = "<!-- config reference: made by scripts/config_reference.py; edit pystributed/config.py -->"
END = "<!-- end of config reference -->"
# What the annotations mean, as config.py checks them.
TYPES = ("`Count` is a whole number, at least 1; `int` a whole number, 0 or more; `float` a number, 0 or "
         "more.")


def default(field):
    if field.name in config.DEFAULT_SHOWN:
        return f"`\"{config.DEFAULT_SHOWN[field.name]}\"`"
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    # Strings as config.py.example writes them: in double quotes.
    return f"`{json.dumps(value) if isinstance(value, str) else repr(value)}`"


def reference():
    """The table, one row per key in Config's order, and the line that says what its types mean."""
    fields = dataclasses.fields(config.Config)
    missing = [field.name for field in fields if field.name not in config.HELP]
    if missing:
        raise SystemExit(f"config.HELP has no text for {', '.join(missing)}")
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for field in fields:
        annotation = str(field.type).replace("|", "\\|")  # a table cell: '|' would end it
        rows.append(f"| `{field.name}` | `{annotation}` | {default(field)} | {config.HELP[field.name]} |")
    return "\n".join([*rows, "", TYPES]) + "\n"


def write(page=PAGE):
    text = page.read_text(encoding="utf-8")
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{page} lacks the markers {BEGIN!r} and {END!r}")
    page.write_text(f"{head}{BEGIN}\n{reference()}{END}{tail}", encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="write it into docs/configuration.md, between its markers")
    if parser.parse_args(argv).write:
        write()
    else:
        sys.stdout.write(reference())


if __name__ == "__main__":
    main()
