"""A client that fills N connections to a server that never reads, then waits to be killed:
each socket's unsent data keeps it in FIN_WAIT1 after the kill (an orphan the kernel keeps
probing the peer's zero window for), held by no process. Named by its first argument."""
import ctypes
import socket
import sys
import time

name, addr, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME: the comm connlife matches
host, port = addr.rsplit(":", 1)
held = []
for _ in range(count):
    s = socket.create_connection((host, int(port)))
    s.setblocking(False)
    try:
        while True:
            s.send(b"x" * 65536)
    except BlockingIOError:
        pass
    held.append(s)
print(f"ready {count}", flush=True)
time.sleep(3600)
