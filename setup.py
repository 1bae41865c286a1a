from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="pystributed",
    version="0.1.0",
    description="Run one Jupyter cell on your own GPU server inside a Docker image.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["pystributed", "pystributed.*"]),
    # Read at run time (sent to the server on ssh's stdin), so it must be in the wheel; MANIFEST.in
    # puts it in the sdist. tests/test_install_e2e.py installs both into fresh venvs and runs a cell.
    package_data={"pystributed": ["server.sh", "places/slurm_job.sh"]},
    python_requires=">=3.9",
    install_requires=["ipython"],
    extras_require={
        "demo": ["nbclient", "nbformat", "ipykernel"],
        "test": ["pytest", "build", "mypy", "nbclient", "nbformat", "ipykernel", "ruff",
                 # the browser tests: Jupyter's two front ends, Selenium (with Debian's chromium and
                 # chromedriver, from scripts/sandbox.sh install --all), Pillow for the README's screenshots
                 "jupyterlab", "notebook", "selenium", "pillow"],
    },
)
