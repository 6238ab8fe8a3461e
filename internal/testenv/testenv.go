// Package testenv tells tests where the real components of the dev stack
// (Kafka, ClickHouse) are, and whether the test may run here at all.
//
// `make test` (scripts/test.sh) starts the dev stack and exports
// EXFILWATCH_TEST_KAFKA, EXFILWATCH_TEST_CLICKHOUSE and
// EXFILWATCH_REQUIRE_INTEGRATION=1. With the latter set (CI), a missing
// component or privilege is a test failure, never a skip; without it (a
// developer running `go test ./...` by hand), such tests skip with a reason.
package testenv

import (
	"net"
	"os"
	"testing"
	"time"
)

// Required reports whether integration prerequisites must be present.
func Required() bool { return os.Getenv("EXFILWATCH_REQUIRE_INTEGRATION") == "1" }

func missing(t testing.TB, what string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s is required (EXFILWATCH_REQUIRE_INTEGRATION=1) but not available", what)
	}
	t.Skipf("%s not available; run `make test` to start the dev stack", what)
}

func reachable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Kafka returns the bootstrap address of the dev-stack broker.
func Kafka(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("EXFILWATCH_TEST_KAFKA")
	if addr == "" || !reachable(addr) {
		missing(t, "Kafka broker (EXFILWATCH_TEST_KAFKA="+addr+")")
	}
	return addr
}

// ClickHouse returns the native-protocol address of the dev-stack server.
func ClickHouse(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("EXFILWATCH_TEST_CLICKHOUSE")
	if addr == "" || !reachable(addr) {
		missing(t, "ClickHouse server (EXFILWATCH_TEST_CLICKHOUSE="+addr+")")
	}
	return addr
}

// Root requires root privileges (eBPF, network namespaces).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "root (for eBPF and network namespaces)")
	}
}

// Tool requires an external program on PATH (tshark, mmdblookup, ...).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookPath(name)
	if err != nil {
		missing(t, "tool "+name)
	}
	return p
}

// SharedTestdata returns the path of ../shared/testdata relative to the repo
// root, found by walking up from the test's working directory.
func SharedTestdata(t testing.TB) string {
	t.Helper()
	dir, _ := os.Getwd()
	for i := 0; i < 8; i++ {
		p := dir + "/../shared/testdata"
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		dir += "/.."
	}
	missing(t, "../shared/testdata")
	return ""
}
