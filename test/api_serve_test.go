package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGTERM sent the instant the listening line appears still stops the API
// cleanly: the handler is in place before the line is printed.
func TestAPIStopRightAfterListening(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true})
	conf := c.root.Path("/etc/ctrl-exec/ctrl-exec.conf")
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := c.root.Command(ctx, "ctrl-exec-api", "--config", conf)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out := bufio.NewReader(stdout)
		first, _ := out.ReadString('\n')
		if strings.HasPrefix(first, "ctrl-exec API listening on ") {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		rest, _ := io.ReadAll(out)
		err = cmd.Wait()
		cancel()
		if err != nil || !strings.HasSuffix(string(rest), "\nAPI server stopped.\n") {
			t.Fatalf("start %d: %v\nstdout: %s%s\nstderr: %s", i+1, err, first, rest, stderr.String())
		}
		if n := strings.Count(strings.Join(c.root.LogLines(), "\n"), "ACTION=api-stop"); n != i+1 {
			t.Fatalf("start %d: %d api-stop lines logged", i+1, n)
		}
	}
}

// A failed TLS handshake on the API is logged as tls-failure, as on the
// agent; a connection closed without a byte (a port check) is not.
func TestAPITLSFailureIsLogged(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true})
	conf := c.root.Path("/etc/ctrl-exec/ctrl-exec.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "api_cert = %s\napi_key = %s\n", c.root.Path("/etc/ctrl-exec/ctrl-exec.crt"), c.root.Path("/etc/ctrl-exec/ctrl-exec.key"))
	f.Close()
	p := c.root.Start("ctrl-exec-api", "--config", conf)
	p.WaitOutput(t, "ctrl-exec API listening on 127.0.0.1:"+itoa(c.port)+" (TLS)", 20*time.Second)
	addr := "127.0.0.1:" + itoa(c.port)

	check, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	check.Close()
	plain, err := net.Dial("tcp", addr) // plain HTTP to the TLS port
	if err != nil {
		t.Fatal(err)
	}
	plain.Write([]byte("GET /health HTTP/1.0\r\n\r\n"))
	io.ReadAll(plain)
	plain.Close()
	c.root.WaitLog(10*time.Second, "ACTION=tls-failure", "PEER=127.0.0.1", "REASON=", "does not look like a TLS handshake")
	if conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	} else {
		conn.Close()
	}
	p.Stop()
	if n := strings.Count(strings.Join(c.root.LogLines(), "\n"), "ACTION=tls-failure"); n != 1 {
		t.Errorf("%d tls-failure lines, want 1 (the port check is not one):\n%s", n, strings.Join(c.root.LogLines(), "\n"))
	}
}
