package bpf

import (
	"context"
	"github.com/exfilwatch/exfilwatch/internal/netns"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkVeth measures phone -> gateway -> internet forwarding through
// veth pairs without and with the programs attached on both gateway
// interfaces (TCX) and Run consuming the maps. TCP is a bulk stream (TSO
// super-packets); UDP sends 64-byte datagrams, the per-packet worst case.
// The machine is shared: compare the pairs from the same run, -count >= 3.
func BenchmarkVeth(b *testing.B) {
	tp := newTopo(b)
	var ln net.Listener
	if err := netns.Do(tp.inet, func() error {
		var err error
		ln, err = net.Listen("tcp", "10.99.2.2:0")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	var usrv *net.UDPConn
	if err := netns.Do(tp.inet, func() error {
		var err error
		usrv, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("10.99.2.2")})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer usrv.Close()
	var received atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := usrv.ReadFromUDP(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()

	attach := func(b *testing.B) func() {
		p, err := Load(DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		if err := netns.Do(tp.gw, func() error {
			if err := p.Attach("gwp"); err != nil {
				return err
			}
			return p.Attach("gwi")
		}); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = p.Run(ctx, &countSink{}); close(done) }()
		return func() { cancel(); <-done; p.Close() }
	}
	tcp := func(b *testing.B) {
		var c net.Conn
		if err := netns.Do(tp.phone, func() error {
			var err error
			c, err = net.Dial("tcp", ln.Addr().String())
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		chunk := make([]byte, 1<<20)
		b.SetBytes(int64(len(chunk)))
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := c.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	udp := func(b *testing.B) {
		var c *net.UDPConn
		if err := netns.Do(tp.phone, func() error {
			var err error
			c, err = net.DialUDP("udp", nil, usrv.LocalAddr().(*net.UDPAddr))
			return err
		}); err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		before := received.Load()
		msg := make([]byte, 64-42) // 64-byte frame without FCS
		start := time.Now()
		sent := 0
		for time.Since(start) < time.Second {
			for j := 0; j < 256; j++ {
				_, _ = c.Write(msg)
			}
			sent += 256
		}
		elapsed := time.Since(start)
		time.Sleep(100 * time.Millisecond) // in flight
		got := received.Load() - before
		b.ReportMetric(float64(got)/elapsed.Seconds(), "rx_pkt/s")
		b.ReportMetric(float64(sent)/elapsed.Seconds(), "tx_pkt/s")
	}
	for _, mode := range []string{"none", "attached"} {
		b.Run("tcp_stream/"+mode, func(b *testing.B) {
			if mode == "attached" {
				defer attach(b)()
			}
			tcp(b)
		})
		b.Run("udp_64B/"+mode, func(b *testing.B) {
			if mode == "attached" {
				defer attach(b)()
			}
			udp(b)
		})
	}
}
