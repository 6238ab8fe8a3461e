package clickhouse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// chdb (PyPI chdb-core, pinned in scripts/deps.sh) is ClickHouse's engine
// as an in-process library: no server, no native protocol. These helpers
// run SQL on it through testdata/chdb/exec.py, so the modern DDL profile
// and the saved queries meet a current ClickHouse version, not only the
// 18.16 server of the dev stack.

// chdbPython returns the interpreter of the venv scripts/deps.sh makes
// (var/chdb-venv), or $EXFILWATCH_CHDB_PYTHON. Missing is a failure under
// EXFILWATCH_REQUIRE_INTEGRATION=1, else a skip.
func chdbPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("EXFILWATCH_CHDB_PYTHON")
	if py == "" {
		dir, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for ; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			if dir == filepath.Dir(dir) {
				t.Fatal("no go.mod above the test directory")
			}
		}
		py = filepath.Join(dir, "var", "chdb-venv", "bin", "python")
	}
	out, err := exec.Command(py, "-c", "import chdb; print(chdb.engine_version)").CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("chdb (%s: %v: %s; run scripts/deps.sh)", py, err, bytes.TrimSpace(out))
		if testenv.Required() {
			t.Fatalf("%s is required (EXFILWATCH_REQUIRE_INTEGRATION=1) but not available", msg)
		}
		t.Skipf("%s not available", msg)
	}
	t.Logf("chdb engine %s", bytes.TrimSpace(out))
	return py
}

// chdbSession is one engine process (testdata/chdb/exec.py) on a data
// directory that outlives it: restart gives a new process on the same data,
// like a restarted server.
type chdbSession struct {
	t      *testing.T
	py     string
	dir    string
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
}

func newChDB(t *testing.T) *chdbSession {
	t.Helper()
	s := &chdbSession{t: t, py: chdbPython(t), dir: t.TempDir()}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *chdbSession) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.py, filepath.Join("testdata", "chdb", "exec.py"), s.dir)
	// DateTime text is read and written in the session time zone.
	s.cmd.Env = append(os.Environ(), "TZ=UTC")
	s.stderr.Reset()
	s.cmd.Stderr = &s.stderr
	var err error
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		s.t.Fatal(err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	s.out = bufio.NewReader(stdout)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start chdb: %v", err)
	}
}

func (s *chdbSession) stop() {
	if s.cmd == nil {
		return
	}
	s.in.Close()
	if err := s.cmd.Wait(); err != nil {
		s.t.Errorf("chdb exited: %v\n%s", err, s.stderr.String())
	}
	s.cmd = nil
}

func (s *chdbSession) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// stepLabel names a statement in an error: its start, on one line.
func stepLabel(sql string) string {
	s := strings.Join(strings.Fields(sql), " ")
	if len(s) > 120 {
		s = s[:120] + " ..."
	}
	return s
}

type chdbStep struct {
	SQL    string            `json:"sql"`
	Params map[string]string `json:"params,omitempty"`
	Format string            `json:"format,omitempty"`
}

// run executes steps in order and returns each step's output; on the first
// failing step it returns the outputs so far and that step's error.
func (s *chdbSession) run(steps ...chdbStep) ([]string, error) {
	s.t.Helper()
	var outs []string
	for _, st := range steps {
		line, err := json.Marshal(st)
		if err != nil {
			s.t.Fatal(err)
		}
		if _, err := s.in.Write(append(line, '\n')); err != nil {
			s.t.Fatalf("chdb: write step: %v\n%s", err, s.stderr.String())
		}
		resp, err := s.out.ReadBytes('\n')
		if err != nil {
			s.t.Fatalf("chdb: no answer to %s: %v\n%s", stepLabel(st.SQL), err, s.stderr.String())
		}
		var r struct {
			OK     bool   `json:"ok"`
			Output string `json:"output"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(resp, &r); err != nil {
			s.t.Fatalf("chdb: bad result line %q: %v", resp, err)
		}
		if !r.OK {
			return outs, fmt.Errorf("chdb: %s: %s", stepLabel(st.SQL), r.Error)
		}
		outs = append(outs, r.Output)
	}
	return outs, nil
}

// exec runs statements and fails the test on any error.
func (s *chdbSession) exec(sqls ...string) {
	s.t.Helper()
	steps := make([]chdbStep, len(sqls))
	for i, q := range sqls {
		steps[i] = chdbStep{SQL: q}
	}
	if _, err := s.run(steps...); err != nil {
		s.t.Fatal(err)
	}
}

// query runs one SELECT (after USE db when db is set) and returns its rows
// formatted like runQuery does for the 18.16 server: DateTime as UTC text,
// floats with 3 decimals, arrays as fmt.Sprint of their elements.
func (s *chdbSession) query(db, sql string, params map[string]string) ([][]string, error) {
	s.t.Helper()
	res, err := s.queries(db, chdbStep{SQL: sql, Params: params})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// queries runs several SELECTs in one process (each one costs a process
// start otherwise, seconds on a loaded machine) and returns their rows.
func (s *chdbSession) queries(db string, qs ...chdbStep) ([][][]string, error) {
	s.t.Helper()
	var steps []chdbStep
	if db != "" {
		steps = append(steps, chdbStep{SQL: "USE " + db})
	}
	for _, q := range qs {
		q.Format = "JSONCompactEachRowWithNamesAndTypes"
		steps = append(steps, q)
	}
	outs, err := s.run(steps...)
	if err != nil {
		return nil, err
	}
	outs = outs[len(steps)-len(qs):]
	res := make([][][]string, len(outs))
	for i, o := range outs {
		res[i] = parseJSONCompact(s.t, o)
	}
	return res, nil
}

func parseJSONCompact(t *testing.T, out string) [][]string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	if strings.TrimSpace(out) == "" {
		return nil // a statement, not a SELECT
	}
	var names, types []string
	if err := dec.Decode(&names); err != nil {
		t.Fatalf("chdb: no names line in %q: %v", out, err)
	}
	if err := dec.Decode(&types); err != nil {
		t.Fatalf("chdb: no types line in %q: %v", out, err)
	}
	var rows [][]string
	for dec.More() {
		var vals []any
		if err := dec.Decode(&vals); err != nil {
			t.Fatalf("chdb: bad row: %v", err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmtJSONVal(t, types[i], v)
		}
		rows = append(rows, row)
	}
	return rows
}

func fmtJSONVal(t *testing.T, typ string, v any) string {
	typ = strings.TrimSuffix(strings.TrimPrefix(typ, "LowCardinality("), ")")
	if inner, ok := strings.CutPrefix(typ, "Array("); ok {
		inner = strings.TrimSuffix(inner, ")")
		arr, ok := v.([]any)
		if !ok {
			t.Fatalf("chdb: %s value %v is not an array", typ, v)
		}
		s := make([]string, len(arr))
		for i, e := range arr {
			s[i] = fmtJSONVal(t, inner, e)
		}
		return fmt.Sprint(s)
	}
	if strings.HasPrefix(typ, "Float") {
		var f float64
		switch x := v.(type) {
		case json.Number:
			var err error
			if f, err = x.Float64(); err != nil {
				t.Fatalf("chdb: %s %v: %v", typ, v, err)
			}
		case string: // nan, inf
			f, _ = strconv.ParseFloat(x, 64)
		}
		return fmtVal(f)
	}
	return fmt.Sprint(v)
}

// writeJSONEachRow writes the builder columns cols (one Go slice per
// column, exactly what the sink appends to a native INSERT block) as
// JSONEachRow rows named names. Values are written the way clickhouse-go
// serialises each Go type: IPv6 as its 16-byte (IPv4-mapped) form,
// FixedString as its raw bytes (JSON strings here are byte strings, not
// UTF-8: ClickHouse reads them unchanged), nil bytes zero-filled.
func writeJSONEachRow(t *testing.T, path string, names []string, cols []any, rows int) {
	t.Helper()
	var b bytes.Buffer
	for j := range rows {
		b.WriteByte('{')
		for i, col := range cols {
			if i > 0 {
				b.WriteByte(',')
			}
			jsonString(&b, []byte(names[i]))
			b.WriteByte(':')
			jsonValue(t, &b, names[i], col, j)
		}
		b.WriteString("}\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func jsonValue(t *testing.T, b *bytes.Buffer, name string, col any, j int) {
	switch c := col.(type) {
	case []int64:
		b.WriteString(strconv.FormatInt(c[j], 10))
	case []int8:
		b.WriteString(strconv.FormatInt(int64(c[j]), 10))
	case []uint64:
		b.WriteString(strconv.FormatUint(c[j], 10))
	case []uint32:
		b.WriteString(strconv.FormatUint(uint64(c[j]), 10))
	case []uint16:
		b.WriteString(strconv.FormatUint(uint64(c[j]), 10))
	case []uint8:
		b.WriteString(strconv.FormatUint(uint64(c[j]), 10))
	case []float64:
		b.WriteString(strconv.FormatFloat(c[j], 'g', -1, 64))
	case []string:
		jsonString(b, []byte(c[j]))
	case [][]byte:
		jsonString(b, c[j])
	case []netip.Addr:
		jsonString(b, []byte(netip.AddrFrom16(c[j].As16()).String()))
	case [][]string:
		jsonStrings(b, len(c[j]), func(k int) string { return c[j][k] })
	case [][]*string:
		jsonStrings(b, len(c[j]), func(k int) string { return *c[j][k] })
	default:
		t.Fatalf("column %s: no JSON form for %T", name, col)
	}
}

func jsonStrings(b *bytes.Buffer, n int, v func(int) string) {
	b.WriteByte('[')
	for k := range n {
		if k > 0 {
			b.WriteByte(',')
		}
		jsonString(b, []byte(v(k)))
	}
	b.WriteByte(']')
}

// jsonString escapes only what JSON must; other bytes pass as they are.
func jsonString(b *bytes.Buffer, s []byte) {
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// chdbParams gives saved-query parameters as the text a client passes with
// --param_NAME (ClickHouse 19.15+ parses it as the declared type).
func chdbParams(t *testing.T, params map[string]any) map[string]string {
	out := make(map[string]string, len(params))
	for k, v := range params {
		switch x := v.(type) {
		case time.Time:
			out[k] = x.UTC().Format(time.DateTime)
		case string:
			out[k] = x
		case int, int64, uint32, uint64, float64:
			out[k] = fmt.Sprint(x)
		default:
			t.Fatalf("parameter %s: unsupported %T", k, v)
		}
	}
	return out
}
