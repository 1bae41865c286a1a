"""In a real kernel, on the sandbox: a cell that imports a package not installed yet fails on the
server; `%pip install` of it in the same kernel, and the rerun with REQUIREMENTS = "auto" ships it
(a local wheel: containers have no index) and runs."""
from kernel import Kernel, error_of, stream_text
from wheels import make_wheel

NAME = "pystributed_pip_dep"


def test_pip_install_in_the_kernel_is_seen_by_auto_requirements(sandbox, tmp_path, monkeypatch):
    (tmp_path / "wheels-made").mkdir()
    wheel = make_wheel(tmp_path / "wheels-made", name=NAME, version="4.5.6")
    (tmp_path / ".dockerignore").write_text("wheels-made\nsite\n")
    site = tmp_path / "site"  # on the kernel's sys.path from the start, empty: pip installs into it later
    site.mkdir()
    monkeypatch.setenv("PYSTRIBUTED_REQUIREMENTS", "auto")
    kernel = Kernel(tmp_path)
    try:
        messages, reply = kernel.execute(f"import sys\nsys.path.insert(0, {str(site)!r})\n"
                                         "import pystributed.main as runner\n")
        assert reply["status"] == "ok", messages
        cell = f"%%remote\nimport {NAME}\nprint('version', {NAME}.VERSION)\n"
        messages, reply = kernel.execute(cell)  # not installed here: nothing to pin, so not in the image
        assert reply["status"] == "error" and "ModuleNotFoundError" in error_of(messages)["evalue"]

        messages, reply = kernel.execute(f"%pip install --no-index --no-deps --target {site} {wheel}")
        assert reply["status"] == "ok", stream_text(messages) + stream_text(messages, "stderr")
        messages, reply = kernel.execute(cell)
        assert reply["status"] == "ok", (error_of(messages), stream_text(messages, "stderr"))
        assert "version 4.5.6\n" in stream_text(messages)
    finally:
        kernel.close()
