package pipeline

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/exfilwatch/exfilwatch/detect"
	"github.com/exfilwatch/exfilwatch/transport"
)

// A detect checkpoint file is this header line, one JSON line with the
// input position the state reflects (per topic and partition, the offset
// of the last record included), then the engine snapshot.
const checkpointMagic = "exfilwatch-detect-checkpoint 1\n"

type checkpointPos struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
}

// writeCheckpoint replaces path with pos and state: written to a temporary
// file in the same directory, synced, renamed over path, and the directory
// synced, so a crash leaves the previous checkpoint or this one, never a
// torn file, and a returned nil means it is on disk.
func writeCheckpoint(path string, pos []transport.Message, state []byte) (err error) {
	cp := make([]checkpointPos, len(pos))
	for i, m := range pos {
		cp[i] = checkpointPos{m.Topic, m.Partition, m.Offset}
	}
	line, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("detector checkpoint: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("detector checkpoint: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<16)
	w.WriteString(checkpointMagic)
	w.Write(line)
	w.WriteByte('\n')
	w.Write(state)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("detector checkpoint: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("detector checkpoint: sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("detector checkpoint: close %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("detector checkpoint: %w", err)
	}
	// The rename is durable only once the directory is synced.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("detector checkpoint: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("detector checkpoint: sync %s: %w", dir, err)
	}
	return nil
}

// loadCheckpoint restores eng from the checkpoint at path and returns the
// position it reflects. A bare engine snapshot (written before checkpoints
// carried a position) is restored with no position. A missing file is
// reported as os.ErrNotExist.
func loadCheckpoint(path string, eng *detect.Engine) ([]transport.Message, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	head, err := br.Peek(len(checkpointMagic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !bytes.Equal(head, []byte(checkpointMagic)) {
		return nil, eng.Restore(br) // older bare snapshot, or garbage (Restore says which)
	}
	br.Discard(len(checkpointMagic))
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("read %s position: %w", path, err)
	}
	var cp []checkpointPos
	if err := json.Unmarshal(line, &cp); err != nil {
		return nil, fmt.Errorf("read %s position: %w", path, err)
	}
	if err := eng.Restore(br); err != nil {
		return nil, err
	}
	pos := make([]transport.Message, len(cp))
	for i, p := range cp {
		pos[i] = transport.Message{Topic: p.Topic, Partition: p.Partition, Offset: p.Offset}
	}
	return pos, nil
}
