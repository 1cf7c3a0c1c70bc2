"""A fork-per-connection server (socketserver.ForkingTCPServer): the parent accepts, forks,
and closes its copy; the child answers, then holds the socket without ever closing it, so a
client that hangs up leaves it in CLOSE_WAIT on the child."""
import os
import socketserver
import time


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(1024)
        self.request.sendall(b"ok\n")
        host, port = self.request.getpeername()[:2]
        # One write(2) per line: children share the pipe, and print() may split a line.
        os.write(1, f"held pid={os.getpid()} fd={self.request.fileno()} peer={host}:{port}\n".encode())
        time.sleep(3600)


class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True


with Server(("127.0.0.1", 0), Handler) as srv:
    print(f"ready 127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()
