package sim

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	ns "github.com/exfilwatch/exfilwatch/internal/netns"
	"io"
	"net"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// The live path of the simulator: the frames of a corpus (or any Ethernet
// capture) are put on a real interface so that a gateway running the eBPF
// collector sees them as traffic. The pcap's timestamps are ignored: a
// simulated day is replayed at a fixed frame rate.

// maxNoBufWait bounds how long one frame is retried while the interface's
// queue is full (ENOBUFS) before the replay gives up.
const maxNoBufWait = 2 * time.Second

// frameSource yields frames; the slice is valid until the next call.
type frameSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// SendPcap replays every frame of the capture at pcapPath (pcap or pcapng,
// Ethernet link type) onto the network interface iface through an AF_PACKET
// raw socket, in file order, at pps frames per second (0: as fast as the
// interface takes them). It stops when ctx ends and returns the frames sent
// so far with ctx's error.
//
// Frames are sent exactly as captured (truncated captures are sent
// truncated); a frame longer than the interface's MTU plus the Ethernet
// header is an error naming the frame, since the kernel refuses it. Needs
// root or CAP_NET_RAW.
func SendPcap(ctx context.Context, pcapPath, iface string, pps int) (sent int, err error) {
	src, closeSrc, err := openFrames(pcapPath, pps)
	if err != nil {
		return 0, err
	}
	defer closeSrc()
	tx, err := openTx(iface)
	if err != nil {
		return 0, err
	}
	defer tx.close()
	return tx.replay(ctx, src, pps)
}

// SendPcapInNetns is SendPcap with iface looked up, and the socket opened, in
// network namespace netns: a name under /var/run/netns (as `ip netns add`
// creates) or a path such as /proc/<pid>/ns/net. The calling goroutine's
// namespace is not changed: only a dedicated, locked OS thread switches, and
// that thread is discarded afterwards. Needs root (CAP_SYS_ADMIN for setns).
func SendPcapInNetns(ctx context.Context, netns, pcapPath, iface string, pps int) (sent int, err error) {
	src, closeSrc, err := openFrames(pcapPath, pps)
	if err != nil {
		return 0, err
	}
	defer closeSrc()
	type result struct {
		tx  *tx
		err error
	}
	var r result
	if err := ns.Do(netns, func() error {
		r.tx, r.err = openTx(iface)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("sim: send: %w", err)
	}
	if r.err != nil {
		return 0, r.err
	}
	// The socket stays bound to the interface in netns whatever thread
	// sends on it.
	defer r.tx.close()
	return r.tx.replay(ctx, src, pps)
}

// openFrames opens a capture file and checks its link type.
func openFrames(path string, pps int) (frameSource, func(), error) {
	if pps < 0 {
		return nil, nil, fmt.Errorf("sim: send: rate must be >= 0 frames/s, got %d", pps)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: send: %w", err)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sim: send: %s: not a capture file: %w", path, err)
	}
	var src frameSource
	var lt layers.LinkType
	if binary.LittleEndian.Uint32(magic) == 0x0a0d0d0a { // pcapng section header block
		r, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("sim: send: %s: %w", path, err)
		}
		src, lt = r, r.LinkType()
	} else {
		r, err := pcapgo.NewReader(br)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("sim: send: %s: %w", path, err)
		}
		src, lt = r, r.LinkType()
	}
	if lt != layers.LinkTypeEthernet {
		f.Close()
		return nil, nil, fmt.Errorf("sim: send: %s: link type %s, only Ethernet captures can be replayed", path, lt)
	}
	return src, func() { f.Close() }, nil
}

// tx is an AF_PACKET socket bound to one interface for sending only.
type tx struct {
	fd    int
	iface string
	mtu   int
	timer *time.Timer
}

// openTx resolves iface in the current thread's network namespace and opens
// a raw packet socket bound to it. The socket's protocol is 0, so it
// receives nothing: it never queues copies of the interface's traffic.
func openTx(iface string) (*tx, error) {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("sim: send: interface %q not found: %w", iface, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("sim: send: opening an AF_PACKET socket needs root or CAP_NET_RAW: %w", err)
		}
		return nil, fmt.Errorf("sim: send: AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifc.Index}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sim: send: bind to %s: %w", iface, err)
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &tx{fd: fd, iface: iface, mtu: ifc.MTU, timer: t}, nil
}

func (t *tx) close() { unix.Close(t.fd) }

// replay sends every frame of src, paced at pps (0: unpaced). The
// per-frame path allocates nothing: the source reuses its buffer, the
// socket is pre-bound (plain write, no sockaddr) and one timer is reused.
func (t *tx) replay(ctx context.Context, src frameSource, pps int) (int, error) {
	done := ctx.Done()
	start := time.Now()
	sent := 0
	for {
		data, _, err := src.ZeroCopyReadPacketData()
		if err == io.EOF {
			return sent, nil
		}
		if err != nil {
			return sent, fmt.Errorf("sim: send: reading frame %d: %w", sent+1, err)
		}
		if pps > 0 {
			// Frame n is due n/pps seconds after the start; sleep only when
			// more than a millisecond ahead, so the average rate is exact
			// even though timers are coarser than one frame at high rates.
			due := start.Add(time.Duration(int64(sent) * int64(time.Second) / int64(pps)))
			if d := time.Until(due); d > time.Millisecond {
				t.timer.Reset(d)
				select {
				case <-done:
					t.timer.Stop()
					return sent, ctx.Err()
				case <-t.timer.C:
				}
			}
		}
		select {
		case <-done:
			return sent, ctx.Err()
		default:
		}
		if err := t.send(ctx, data); err != nil {
			return sent, fmt.Errorf("sim: send: frame %d (%d bytes) on %s: %w", sent+1, len(data), t.iface, err)
		}
		sent++
	}
}

// send writes one frame, waiting while the interface queue is full.
func (t *tx) send(ctx context.Context, frame []byte) error {
	var waited time.Duration
	backoff := 50 * time.Microsecond
	for {
		_, err := unix.Write(t.fd, frame)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN):
			if waited >= maxNoBufWait {
				return fmt.Errorf("interface queue full for %s: %w", maxNoBufWait, err)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			time.Sleep(backoff)
			waited += backoff
			backoff = min(2*backoff, 10*time.Millisecond)
		case errors.Is(err, unix.EMSGSIZE):
			return fmt.Errorf("frame larger than the interface MTU %d + 14-byte Ethernet header (raise it: ip link set dev %s mtu 9000): %w", t.mtu, t.iface, err)
		case errors.Is(err, unix.ENETDOWN) || errors.Is(err, unix.ENXIO):
			return fmt.Errorf("interface is down or gone: %w", err)
		default:
			return err
		}
	}
}
