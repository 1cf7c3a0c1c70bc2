"""COUNT connections to ADDR, one after another: send a line, read the answer unless
--no-read, then close (the server keeps its end, so it sits in CLOSE_WAIT)."""
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
count = int(sys.argv[2])
read = "--no-read" not in sys.argv
for i in range(count):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"hello\n")
    if read:
        s.recv(16)
    s.close()
print(f"done {count}", flush=True)
