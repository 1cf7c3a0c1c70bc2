// Command server is a tiny HTTP server used as the peer for connlife's Go
// leak workloads (see ../client and ../README.md).
//
//	-mode keepalive  connections stay open indefinitely (no idle timeout),
//	                 so an idle client-side pool connection stays ESTABLISHED.
//	-mode close      every response carries "Connection: close"; the server
//	                 closes its end right after responding (server closes
//	                 first), so a client that never closes the body is left
//	                 with a socket in CLOSE_WAIT.
//
// The first stdout line is "listening IP:PORT" (the real address, useful
// with -listen 127.0.0.1:0).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 = pick a free port)")
	mode := flag.String("mode", "keepalive", "keepalive | close (close: every response has \"Connection: close\")")
	bodyBytes := flag.Int("body-bytes", 512, "size of each response body in bytes")
	logConns := flag.Bool("log-conns", false, "log connection state changes to stderr")
	flag.Parse()

	if *mode != "keepalive" && *mode != "close" {
		fmt.Fprintf(os.Stderr, "server: unknown -mode %q (want keepalive or close)\n", *mode)
		os.Exit(2)
	}
	if *bodyBytes < 0 {
		fmt.Fprintln(os.Stderr, "server: -body-bytes must be >= 0")
		os.Exit(2)
	}
	body := bytes.Repeat([]byte("x"), *bodyBytes)
	closeMode := *mode == "close"

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Drain the request body so the connection is reusable in keepalive mode.
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if closeMode {
			// net/http closes the connection after this response
			// (shutdown(SHUT_WR) first, then close).
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
	})

	srv := &http.Server{
		Handler: handler,
		// No timeouts at all: with IdleTimeout == 0 and ReadTimeout == 0 an
		// idle keep-alive connection is kept open forever, which is what lets
		// a leaked client-side pool connection stay ESTABLISHED.
		IdleTimeout: 0,
		ReadTimeout: 0,
		ErrorLog:    log.New(os.Stderr, "server: ", log.LstdFlags),
	}
	if *logConns {
		srv.ConnState = func(c net.Conn, s http.ConnState) {
			fmt.Fprintf(os.Stderr, "conn %s -> %s\n", c.RemoteAddr(), s)
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: listen %s: %v\n", *listen, err)
		os.Exit(1)
	}
	// os.Stdout is unbuffered: this line is on the pipe as soon as Fprintf returns.
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())

	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintf(os.Stderr, "server: serve: %v\n", err)
		os.Exit(1)
	}
}
