"""A real Jupyter kernel, driven message by message (for timing and interrupts)."""
import datetime

from jupyter_client.manager import start_new_kernel


class Kernel:
    def __init__(self, cwd):
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def execute(self, code, *, timeout=300, on_message=None):
        """Run `code`; return its iopub messages (each with 'received', our clock) and the reply.
        `on_message(msg)` is called for each message as it arrives."""
        msg_id = self.client.execute(code)
        messages = []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            msg["received"] = datetime.datetime.now(datetime.timezone.utc)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(msg)
            if on_message:
                on_message(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        while True:  # skip a late kernel_info_reply from start_new_kernel: it made replies one off
            reply = self.client.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return messages, reply["content"]

    def interrupt(self):
        self.manager.interrupt_kernel()


def stream_text(messages, name="stdout"):
    return "".join(m["content"]["text"] for m in messages
                   if m["msg_type"] == "stream" and m["content"]["name"] == name)


def error_of(messages):
    return next((m["content"] for m in messages if m["msg_type"] == "error"), None)
