package testenv

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// query runs one statement over the HTTP interface.
func query(t *testing.T, s *ClickHouseServer, q string) (string, error) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post("http://"+s.HTTPAddr+"/?query="+url.QueryEscape(q), "text/plain", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", q, resp.StatusCode, body)
	}
	return strings.TrimSpace(string(body)), nil
}

func mustQuery(t *testing.T, s *ClickHouseServer, q string) string {
	t.Helper()
	out, err := query(t, s, q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// A private server keeps its data across SIGTERM and SIGKILL restarts, is
// really gone while stopped, and comes back on the same ports.
func TestClickHouseServerRestarts(t *testing.T) {
	s := StartClickHouse(t)
	if s.Addr == "127.0.0.1:9000" {
		t.Fatalf("private server on the shared dev server's port %s", s.Addr)
	}
	mustQuery(t, s, "CREATE TABLE default.t (n UInt32) ENGINE = MergeTree ORDER BY n")
	mustQuery(t, s, "INSERT INTO default.t VALUES (1), (2), (3)")
	addr := s.Addr
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if err := s.Stop(sig); err != nil {
			t.Fatalf("stop with %v: %v", sig, err)
		}
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s still accepts connections after %v", s.Addr, sig)
		}
		if _, err := query(t, s, "SELECT 1"); err == nil {
			t.Fatalf("stopped server (%v) answered a query", sig)
		}
		if err := s.Stop(sig); err == nil {
			t.Fatal("Stop of a stopped server succeeded")
		}
		if err := s.Start(); err != nil {
			t.Fatalf("start after %v: %v", sig, err)
		}
		if s.Addr != addr {
			t.Fatalf("address changed across restart: %s -> %s", addr, s.Addr)
		}
		mustQuery(t, s, "INSERT INTO default.t VALUES (10)")
		if got, want := mustQuery(t, s, "SELECT count() FROM default.t"), []string{"4", "5"}[i]; got != want {
			t.Fatalf("after %v restart: %s rows, want %s", sig, got, want)
		}
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start of a running server succeeded")
	}
	if got := s.Starts(); got != 3 {
		t.Fatalf("%d starts, want 3", got)
	}
}
