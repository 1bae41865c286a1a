"""Run one Jupyter cell on a remote server inside a Docker image."""

__version__ = "0.1.0"


def load_ipython_extension(ip):
    """`%load_ext pystributed`"""
    from pystributed.magic import register

    register(ip)
