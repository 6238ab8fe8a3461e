package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ClickHouseServer is a private clickhouse-server process for one test: its
// own data folder under t.TempDir() and its own loopback ports, so a test
// can stop, kill and restart it without touching the shared dev-stack
// server (127.0.0.1:9000) that other tests use at the same time. It runs the
// binary deploy/dev/clickhouse.sh runs, with the config that script renders
// (deploy/dev/clickhouse/config.xml.in, users.xml).
//
// Start and Stop may be called from any goroutine (they return errors
// instead of failing the test). The server is killed and waited for when
// the test ends, before its temporary folder is removed.
type ClickHouseServer struct {
	Addr     string // native protocol, 127.0.0.1:port; the same across restarts
	HTTPAddr string // HTTP interface, 127.0.0.1:port
	Dir      string // config, data and logs

	bin, conf string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	starts int
}

// ClickHouseServerBinary finds clickhouse-server the way
// deploy/dev/clickhouse.sh does (PATH, then /usr/sbin). The environment
// variable EXFILWATCH_TEST_CLICKHOUSE_SERVER, when set, names the binary
// instead (and nothing else is tried).
func ClickHouseServerBinary() (string, error) {
	if p := os.Getenv("EXFILWATCH_TEST_CLICKHOUSE_SERVER"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("EXFILWATCH_TEST_CLICKHOUSE_SERVER=%s is not an executable file", p)
		}
		return p, nil
	}
	if p, err := lookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/clickhouse-server"
	if st, err := os.Stat(debian); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return debian, nil
	}
	return "", errors.New("clickhouse-server not on PATH nor at /usr/sbin/clickhouse-server")
}

// StartClickHouse starts a private server and waits until it answers a
// query. A missing binary is a failure under EXFILWATCH_REQUIRE_INTEGRATION=1
// and a skip otherwise; a server that does not come up is always a failure.
func StartClickHouse(t testing.TB) *ClickHouseServer {
	t.Helper()
	bin, err := ClickHouseServerBinary()
	if err != nil {
		missing(t, "ClickHouse server binary ("+err.Error()+"; deploy/dev/clickhouse.sh start installs it)")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "deploy/dev/clickhouse/config.xml.in"))
	if err != nil {
		t.Fatalf("private ClickHouse: %v", err)
	}
	users, err := os.ReadFile(filepath.Join(root, "deploy/dev/clickhouse/users.xml"))
	if err != nil {
		t.Fatalf("private ClickHouse: %v", err)
	}
	dir := t.TempDir()
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), users, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &ClickHouseServer{Dir: dir, bin: bin, conf: filepath.Join(dir, "config.xml")}
	// Registered after t.TempDir, so it runs before the folder is removed.
	t.Cleanup(s.kill)

	// A port found free may be taken before the server binds it; try a few.
	var lastErr error
	for range 3 {
		ports, err := freePorts(3)
		if err != nil {
			t.Fatal(err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		s.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
		conf := strings.NewReplacer("@VAR@", dir, "@TCP_PORT@", strconv.Itoa(ports[0]),
			"@HTTP_PORT@", strconv.Itoa(ports[1]), "@INTERSERVER_PORT@", strconv.Itoa(ports[2])).Replace(string(tmpl))
		if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if lastErr = s.Start(); lastErr == nil {
			return s
		}
		if !strings.Contains(lastErr.Error(), "Address already in use") {
			break
		}
	}
	t.Fatalf("private ClickHouse: %v", lastErr)
	return nil
}

// Start starts the server (again, on the same folder and ports) and waits
// until it answers `SELECT 1`. It is an error if it is already running.
func (s *ClickHouseServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return fmt.Errorf("clickhouse-server %s already running (pid %d)", s.Addr, s.cmd.Process.Pid)
	}
	out, err := os.OpenFile(filepath.Join(s.Dir, "logs", "server.out"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("clickhouse-server output: %w", err)
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(s.bin, "--config-file="+s.conf)
	cmd.Dir = s.Dir
	cmd.Stdout, cmd.Stderr = out, out
	// Should the test binary die without running its cleanups, the server
	// goes with it instead of holding its ports and folder.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	s.starts++

	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-exited:
			s.cmd, s.exited = nil, nil
			return fmt.Errorf("clickhouse-server %s exited during start-up (%v): %s", s.Addr, cmd.ProcessState, s.logTail())
		default:
		}
		if s.answers(client) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("clickhouse-server %s (pid %d) not ready after 60s: %s", s.Addr, cmd.Process.Pid, s.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// answers runs a real query: the server accepts connections before it has
// loaded its tables.
func (s *ClickHouseServer) answers(client *http.Client) bool {
	resp, err := client.Get("http://" + s.HTTPAddr + "/?query=SELECT%201")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "1"
}

// Stop sends sig (syscall.SIGTERM for an orderly shutdown, syscall.SIGKILL
// for a crash) and waits until the process has exited. A server that
// ignores SIGTERM for 60 s is killed, and that is an error.
func (s *ClickHouseServer) Stop(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("clickhouse-server %s is not running", s.Addr)
	}
	cmd, exited := s.cmd, s.exited
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal clickhouse-server pid %d: %w", cmd.Process.Pid, err)
	}
	var err error
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-exited
		err = fmt.Errorf("clickhouse-server pid %d did not exit within 60s of %v; killed", cmd.Process.Pid, sig)
	}
	s.cmd, s.exited = nil, nil
	return err
}

// Starts reports how many times the server process was started.
func (s *ClickHouseServer) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// LogTail returns the end of the server's logs (for failure messages).
func (s *ClickHouseServer) LogTail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logTail()
}

func (s *ClickHouseServer) logTail() string {
	var b bytes.Buffer
	for _, name := range []string{"server.out", "clickhouse-server.err.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, "logs", name))
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "\n--- %s ---\n%s", name, data)
	}
	return b.String()
}

// kill ends the process, if running, and waits for it.
func (s *ClickHouseServer) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd, s.exited = nil, nil
}

// freePorts returns n distinct loopback ports that are free now, below the
// kernel's ephemeral range when that is known (the kernel never hands those
// out by itself, so a port stays free across a server restart unless some
// process asks for it by number).
func freePorts(n int) ([]int, error) {
	lo, hi := 20000, 32000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 11000 {
				lo, hi = 10000, v
			}
		}
	}
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 200 {
			return nil, fmt.Errorf("no %d free loopback ports in [%d, %d)", n, lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, p)
	}
	return ports, nil
}

// repoRoot walks up from the working directory to the module's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/exfilwatch/exfilwatch")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no exfilwatch go.mod above %s", dir)
		}
	}
}
