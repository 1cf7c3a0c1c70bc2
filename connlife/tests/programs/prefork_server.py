"""A pre-fork server: the parent listens, forks N children that all accept on the shared
listener (like PostgreSQL's backends or gunicorn's workers); each child answers and then holds
the connection for ever, so a client that hangs up leaves it in CLOSE_WAIT on that child."""
import os
import socket
import sys

children = int(sys.argv[1])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
pids = []
for _ in range(children):
    pid = os.fork()
    if pid == 0:
        held = []
        while True:
            conn, peer = listener.accept()
            conn.recv(1024)
            conn.sendall(b"ok\n")
            held.append(conn)
            # One write(2) per line: children share the pipe, and print() may split a line.
            os.write(1, f"held pid={os.getpid()} fd={conn.fileno()} peer={peer[0]}:{peer[1]}\n".encode())
    pids.append(pid)
print("children " + " ".join(map(str, pids)), flush=True)
print(f"ready 127.0.0.1:{listener.getsockname()[1]}", flush=True)
os.wait()
