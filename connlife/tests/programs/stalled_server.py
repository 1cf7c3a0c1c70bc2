"""A server that listens and never accepts (a stalled accept loop): connections pile up in
the kernel's accept queue, held by no process."""
import socket
import time

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(f"ready 127.0.0.1:{listener.getsockname()[1]}", flush=True)
time.sleep(3600)
