// Command client reproduces (and contrasts) Go HTTP client connection leaks
// for connlife. See ../README.md.
//
// Modes:
//
//	transport-per-request  BUG: a new http.Transport + http.Client per request.
//	                       The body is read and closed, so the connection goes
//	                       back to that transport's idle pool, which nothing
//	                       ever uses again: one idle ESTABLISHED socket (and
//	                       fd) leaks per request, until EMFILE.
//	body-not-closed        BUG: one shared client, but resp.Body is never read
//	                       nor closed. Against a server that closes first
//	                       (server -mode close) every request leaves one
//	                       client socket in CLOSE_WAIT forever.
//	shared                 OK: one global client, body read and closed; a
//	                       single connection is reused.
//	no-keepalive           OK: Transport{DisableKeepAlives: true}, body read
//	                       and closed; one short-lived connection per request.
//	body-not-closed-own-dialer
//	                       BUG: like body-not-closed, but the shared client's
//	                       Transport dials through the program's own
//	                       DialContext (dialWithLog), and the request is made
//	                       (and its body dropped) by postAndForget.
//	seed                   BUG, the incident's code: sendRequest makes a new
//	                       Transport{Dial: dialTimeout} + Client per request
//	                       (deprecated Dial field), POSTs, reads and closes
//	                       the body: one idle ESTABLISHED socket per request.
//
// stdout gets one line per request, written unbuffered:
//
//	req N ok status=200 local=IP:PORT reused=true|false
//
// followed by "done ..." when -count requests have been made.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// sharedClient is the one global client used by the healthy "shared" mode
// and by "body-not-closed". Proxy is left nil so environment proxies never
// interfere with loopback tests.
var sharedClient = &http.Client{Transport: &http.Transport{}}

// ownDialerClient is the shared client of "body-not-closed-own-dialer": its
// Transport dials through the program's own function.
var ownDialerClient = &http.Client{Transport: &http.Transport{DialContext: dialWithLog}}

// leaked keeps every un-closed response reachable (body-not-closed mode), so
// the connection cannot be reclaimed behind our back.
var leaked []*http.Response

func main() {
	url := flag.String("url", "", "URL to POST to, e.g. http://127.0.0.1:8080/ (required)")
	mode := flag.String("mode", "transport-per-request", "transport-per-request | body-not-closed | shared | no-keepalive | body-not-closed-own-dialer | seed")
	interval := flag.Duration("interval", 200*time.Millisecond, "pause between requests")
	count := flag.Int("count", 0, "number of requests (0 = forever)")
	waitStdin := flag.Bool("wait-stdin", false, "read one line from stdin before starting (lets a tracer attach first)")
	exitOnError := flag.Bool("exit-on-error", false, "on the first request error print it to stderr and exit with status 3")
	hold := flag.Duration("hold", 0, "after the last request keep the process (and its sockets) alive this long; negative = until SIGINT/SIGTERM")
	flag.Parse()

	if *url == "" {
		fmt.Fprintln(os.Stderr, "client: -url is required")
		os.Exit(2)
	}
	var do func(n int) (status int, local string, reused bool, err error)
	switch *mode {
	case "transport-per-request":
		do = func(n int) (int, string, bool, error) {
			// The bug: a fresh Transport (and so a fresh connection pool)
			// every time. Nothing keeps a reference to it, but its idle
			// persistConn goroutines keep the connection open forever.
			c := &http.Client{Transport: &http.Transport{}}
			return post(c, *url, n, true)
		}
	case "body-not-closed":
		do = func(n int) (int, string, bool, error) {
			return post(sharedClient, *url, n, false)
		}
	case "shared":
		do = func(n int) (int, string, bool, error) {
			return post(sharedClient, *url, n, true)
		}
	case "no-keepalive":
		noKA := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		do = func(n int) (int, string, bool, error) {
			return post(noKA, *url, n, true)
		}
	case "body-not-closed-own-dialer":
		do = func(n int) (int, string, bool, error) {
			return postAndForget(ownDialerClient, *url, n)
		}
	case "seed":
		do = func(n int) (int, string, bool, error) {
			return sendRequest(*url, n)
		}
	default:
		fmt.Fprintf(os.Stderr, "client: unknown -mode %q\n", *mode)
		os.Exit(2)
	}

	if *waitStdin {
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil && err != io.EOF {
			fmt.Fprintf(os.Stderr, "client: reading stdin: %v\n", err)
		}
	}

	ok, failed := 0, 0
	for n := 1; *count == 0 || n <= *count; n++ {
		status, local, reused, err := do(n)
		if err != nil {
			failed++
			fmt.Fprintf(os.Stderr, "req %d error: %v\n", n, err)
			if *exitOnError {
				os.Exit(3)
			}
		} else {
			ok++
			fmt.Fprintf(os.Stdout, "req %d ok status=%d local=%s reused=%t\n", n, status, local, reused)
		}
		if *count == 0 || n < *count {
			time.Sleep(*interval)
		}
	}
	fmt.Fprintf(os.Stdout, "done requests=%d ok=%d errors=%d unclosed_bodies=%d\n", *count, ok, failed, len(leaked))

	switch {
	case *hold < 0:
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
	case *hold > 0:
		time.Sleep(*hold)
	}
	// Keep leaked responses reachable until the very end.
	fmt.Fprintf(io.Discard, "%d", len(leaked))
}

// post sends one POST with client. If readAndClose, the body is read to EOF
// and closed (the correct thing); otherwise the response is stashed in
// leaked and its body left untouched.
func post(client *http.Client, url string, n int, readAndClose bool) (status int, local string, reused bool, err error) {
	local = "?"
	trace := &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			local = info.Conn.LocalAddr().String()
			reused = info.Reused
		},
	}
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(fmt.Sprintf("{\"seq\":%d}\n", n)))
	if err != nil {
		return 0, local, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))

	resp, err := client.Do(req)
	if err != nil {
		return 0, local, reused, err
	}
	if !readAndClose {
		leaked = append(leaked, resp)
		return resp.StatusCode, local, reused, nil
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return resp.StatusCode, local, reused, err
}

// withTrace returns req carrying a trace that fills in the local address and
// whether the connection was reused (valid once the request got a connection).
func withTrace(req *http.Request) (*http.Request, *connInfo) {
	info := &connInfo{local: "?"}
	trace := &httptrace.ClientTrace{
		GotConn: func(g httptrace.GotConnInfo) {
			info.local = g.Conn.LocalAddr().String()
			info.reused = g.Reused
		},
	}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace)), info
}

type connInfo struct {
	local  string
	reused bool
}

// dialWithLog is the program's own DialContext (body-not-closed-own-dialer):
// net/http calls it on a goroutine of its own, so its stack names no code of
// the request that needed the connection.
func dialWithLog(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "dial %s %s: %v\n", network, addr, err)
	}
	return conn, err
}

// postAndForget POSTs with client and drops the response: the body is never
// read nor closed (kept reachable in leaked), the bug of
// body-not-closed-own-dialer.
func postAndForget(client *http.Client, url string, n int) (status int, local string, reused bool, err error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(fmt.Sprintf("{\"seq\":%d}\n", n)))
	if err != nil {
		return 0, "?", false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req, info := withTrace(req)
	resp, err := client.Do(req)
	if err != nil {
		return 0, info.local, info.reused, err
	}
	leaked = append(leaked, resp)
	return resp.StatusCode, info.local, info.reused, nil
}

// dialTimeout is the incident's dial function, plugged into the deprecated
// Transport.Dial field (seed mode).
func dialTimeout(network, addr string) (net.Conn, error) {
	return net.DialTimeout(network, addr, 5*time.Second)
}

// sendRequest is the incident's code (seed mode): a new Transport and Client
// for every request, so each connection goes back to a pool nothing uses
// again. The body is read and closed, which does not help.
func sendRequest(url string, n int) (status int, local string, reused bool, err error) {
	transport := &http.Transport{Dial: dialTimeout}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(fmt.Sprintf("{\"seq\":%d}\n", n)))
	if err != nil {
		return 0, "?", false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req, info := withTrace(req)
	resp, err := client.Do(req)
	if err != nil {
		return 0, info.local, info.reused, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return resp.StatusCode, info.local, info.reused, err
	}
	return resp.StatusCode, info.local, info.reused, nil
}
