package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unicode"
)

// JSONLReader reads records from a JSON-lines file or pipe, one record per
// line in the protobuf JSON mapping, and yields them as FormatJSON messages
// whose Offset is the 1-based line number, so errors and dead letters can
// name the line. Blank lines are skipped. Commit is a no-op: a file has no
// consumer offsets, and re-running re-reads it.
type JSONLReader struct {
	br    *bufio.Reader
	c     io.Closer
	name  string
	batch int
	line  int64
	buf   []Message
	arena []byte
	spans [][2]int
	err   error
}

// OpenJSONLReader opens path ("-" is standard input) with batches of up to
// batch lines.
func OpenJSONLReader(path string, batch int) (*JSONLReader, error) {
	if path == "-" {
		return NewJSONLReader(os.Stdin, "stdin", batch), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open JSON lines input: %w", err)
	}
	r := NewJSONLReader(f, path, batch)
	r.c = f
	return r, nil
}

// NewJSONLReader reads from r; name labels errors and dead letters.
func NewJSONLReader(r io.Reader, name string, batch int) *JSONLReader {
	return &JSONLReader{br: bufio.NewReaderSize(r, 1<<20), name: name, batch: max(batch, 1)}
}

// Fetch implements Reader. It returns early with a partial batch when no
// more input is buffered, so a slow pipe is processed as it arrives. Reading
// a blocked pipe cannot be interrupted by ctx.
func (r *JSONLReader) Fetch(ctx context.Context) ([]Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	r.buf, r.arena, r.spans = r.buf[:0], r.arena[:0], r.spans[:0]
	for len(r.spans) < r.batch {
		if len(r.spans) > 0 && r.br.Buffered() == 0 {
			break
		}
		start := len(r.arena)
		var err error
		for {
			var chunk []byte
			chunk, err = r.br.ReadSlice('\n')
			r.arena = append(r.arena, chunk...)
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			r.err = fmt.Errorf("read %s: %w", r.name, err)
			break
		}
		if len(r.arena) > start {
			r.line++
			raw := r.arena[start:]
			// Trim as bytes.TrimSpace does (Unicode spaces too), keeping
			// the start offset consistent with the trimmed line.
			left := bytes.TrimLeftFunc(raw, unicode.IsSpace)
			line := bytes.TrimRightFunc(left, unicode.IsSpace)
			if len(line) > 0 {
				s := start + len(raw) - len(left)
				r.spans = append(r.spans, [2]int{s, s + len(line)})
				r.buf = append(r.buf, Message{Topic: r.name, Offset: r.line, Format: FormatJSON})
			}
		}
		if err != nil {
			r.err = io.EOF
			break
		}
	}
	for i, s := range r.spans {
		r.buf[i].Value = r.arena[s[0]:s[1]:s[1]]
	}
	if len(r.buf) == 0 {
		return nil, r.err
	}
	return r.buf, nil
}

// Commit implements Reader (no-op).
func (r *JSONLReader) Commit(context.Context, []Message) error { return nil }

// Close closes the file (never standard input).
func (r *JSONLReader) Close() error {
	if r.c != nil {
		return r.c.Close()
	}
	return nil
}

// JSONLWriter writes FormatJSON records one per line. Write returns once the
// lines were handed to the operating system (flushed). It is safe for
// concurrent use (stages share one dead-letter writer); each Write's lines
// stay together.
type JSONLWriter struct {
	mu sync.Mutex
	bw *bufio.Writer
	c  io.Closer
}

// CreateJSONLWriter creates (truncates) path; "-" is standard output.
func CreateJSONLWriter(path string) (*JSONLWriter, error) {
	if path == "-" {
		return NewJSONLWriter(os.Stdout), nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create JSON lines output: %w", err)
	}
	w := NewJSONLWriter(f)
	w.c = f
	return w, nil
}

// NewJSONLWriter writes to w.
func NewJSONLWriter(w io.Writer) *JSONLWriter {
	return &JSONLWriter{bw: bufio.NewWriterSize(w, 1<<20)}
}

// Format implements FormatWriter: the runner encodes values as protojson.
func (w *JSONLWriter) Format() Format { return FormatJSON }

// Write implements Writer.
func (w *JSONLWriter) Write(_ context.Context, msgs []Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range msgs {
		if msgs[i].Format != FormatJSON {
			return Fatal(fmt.Errorf("JSON lines writer got a %s value; values must be protojson", msgs[i].Format))
		}
		if bytes.IndexByte(msgs[i].Value, '\n') >= 0 {
			return Fatal(errors.New("JSON lines writer got a value spanning several lines"))
		}
		w.bw.Write(msgs[i].Value)
		w.bw.WriteByte('\n')
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write JSON lines: %w", err)
	}
	return nil
}

// Close flushes and closes the file (never standard output).
func (w *JSONLWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.bw.Flush()
	if w.c != nil {
		err = errors.Join(err, w.c.Close())
	}
	return err
}
