// Command nodeutil is the only program in the image deploy/local/node.sh
// builds and imports into the real node's containerd (no registry is
// reachable, nothing can be pulled). One static binary, several jobs:
//
//	nodeutil pause               the pod sandbox: wait for SIGTERM/SIGINT, reap children
//	nodeutil serve ADDR          answer HTTP GET / and /healthz with "ok <hostname>"
//	nodeutil tcp ADDR TIMEOUT    exit 0 if a TCP connection to ADDR opens within TIMEOUT
//	nodeutil http URL TIMEOUT    exit 0 on an HTTP 200 from URL within TIMEOUT
//	nodeutil kube-get PATH       GET PATH from the API server the way in-cluster
//	                             clients do (KUBERNETES_SERVICE_HOST/PORT, the
//	                             ServiceAccount token and CA); exit 0 on 200
//
// Every command prints one line saying what happened.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"pause"}
	}
	var err error
	switch {
	case args[0] == "pause" && len(args) == 1:
		pause()
	case args[0] == "serve" && len(args) == 2:
		err = serve(args[1])
	case args[0] == "tcp" && len(args) == 3:
		err = withTimeout(args[2], func(ctx context.Context) error { return dialTCP(ctx, args[1]) })
	case args[0] == "http" && len(args) == 3:
		err = withTimeout(args[2], func(ctx context.Context) error { return get(ctx, http.DefaultClient, args[1], "") })
	case args[0] == "kube-get" && len(args) == 2:
		err = withTimeout("10s", func(ctx context.Context) error { return kubeGet(ctx, args[1]) })
	default:
		fmt.Fprintln(os.Stderr, "usage: nodeutil pause | serve ADDR | tcp ADDR TIMEOUT | http URL TIMEOUT | kube-get PATH")
		os.Exit(2)
	}
	if err != nil {
		fmt.Println("failed:", err)
		os.Exit(1)
	}
}

// pause is what a sandbox's first process does: hold the namespaces open.
// As PID 1 of the pod's PID namespace (if shared) it also reaps orphans.
func pause() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}

func serve(addr string) error {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintf(w, "ok %s\n", host) })
	fmt.Println("serving on", addr)
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
		<-signals
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func withTimeout(timeout string, f func(context.Context) error) error {
	d, err := time.ParseDuration(timeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

func dialTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("connected %s -> %s\n", conn.LocalAddr(), conn.RemoteAddr())
	return conn.Close()
}

func get(ctx context.Context, c *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
	line := strings.Join(strings.Fields(string(body)), " ")
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, line)
	}
	fmt.Printf("GET %s: HTTP 200: %s\n", url, line)
	return nil
}

func kubeGet(ctx context.Context, path string) error {
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT not set")
	}
	token, err := os.ReadFile(sa + "token")
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %sca.crt", sa)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return get(ctx, c, "https://"+net.JoinHostPort(host, port)+path, strings.TrimSpace(string(token)))
}
