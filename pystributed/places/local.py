"""REMOTE_SERVER = "local": the engine on this machine, through the same server.sh, run by `sh`
in the home folder (where ssh would start)."""
import os

from pystributed.places import server


class Local(server.Server):
    name = "the local engine"

    def __init__(self, config):
        super().__init__(config)
        self.cwd = os.path.expanduser("~")

    def argv(self, size):
        return ["sh", "-c", server.LOADER.format(size)]
