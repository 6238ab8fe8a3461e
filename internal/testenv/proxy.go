package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// CutProxy forwards TCP connections from a loopback port to a backend and
// can be cut and restored, so a test can take a shared server "down"
// (open connections broken, new ones refused) without touching it.
type CutProxy struct {
	Addr string // the proxy's listen address; stays the same across Cut/Restore

	t       testing.TB
	backend string
	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{}
	cuts    int
}

// NewCutProxy starts a proxy to backend, closed when the test ends.
func NewCutProxy(t testing.TB, backend string) *CutProxy {
	p := &CutProxy{t: t, backend: backend, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Cut)
	return p
}

func (p *CutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", p.backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[b] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
		}
	}()
}

// Cut closes the listener (new connections are refused) and every
// forwarded connection.
func (p *CutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
		p.cuts++
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Restore listens on the same address again.
func (p *CutProxy) Restore() {
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", p.Addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Errorf("proxy re-listen on %s: %v", p.Addr, err)
		return
	}
	p.serve(ln)
}

// Cuts reports how many times the proxy was cut while up.
func (p *CutProxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}
