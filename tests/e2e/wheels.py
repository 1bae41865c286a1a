"""A real, minimal wheel, made here: pip in a sandbox container cannot reach an index.
Used by the end-to-end tests and by benchmarks/bench.py."""
import subprocess
import sys
import zipfile


def make_wheel(folder, name="pystributed_demo_dep", version="1.2.3"):
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as whl:
        whl.writestr(f"{name}/__init__.py", f"VERSION = {version!r}\n")
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: "
                                      "py3-none-any\n")
        whl.writestr(f"{info}/RECORD",
                     f"{name}/__init__.py,,\n{info}/METADATA,,\n{info}/WHEEL,,\n{info}/RECORD,,\n")
    return path


def require_tqdm(folder):
    """The real tqdm as a requirement of FOLDER's: its wheel downloaded here into FOLDER/deps (pip in
    the container cannot reach an index), named by deps/requirements.txt, which config.py names."""
    deps = folder / "deps"
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(deps),
                    "tqdm"],
                   check=True)
    wheel, = deps.glob("tqdm-*.whl")
    (deps / "requirements.txt").write_text(f"./{wheel.name}\n")
    (folder / "config.py").write_text("REQUIREMENTS = 'deps/requirements.txt'\n")
