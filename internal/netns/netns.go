// Package netns runs code inside Linux network namespaces without moving
// the rest of the process: the simulator's live replay and the tests that
// build phone/gateway/internet namespaces joined by veth pairs use it.
package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Path resolves a namespace name (as `ip netns add` creates under
// /var/run/netns) or returns an absolute path (/proc/<pid>/ns/net) as is.
func Path(ns string) string {
	if filepath.IsAbs(ns) {
		return ns
	}
	return filepath.Join("/var/run/netns", ns)
}

// Do runs fn on a dedicated OS thread switched into network namespace ns.
// The thread is never unlocked, so the Go runtime discards it afterwards
// instead of reusing it in the wrong namespace; the caller's thread never
// moves. Sockets fn creates stay in ns whatever thread uses them later.
func Do(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(Path(ns))
		if err != nil {
			done <- fmt.Errorf("network namespace %q: %w", ns, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			if errors.Is(err, unix.EPERM) {
				done <- fmt.Errorf("entering network namespace %q needs root (CAP_SYS_ADMIN): %w", ns, err)
				return
			}
			done <- fmt.Errorf("setns %q: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// PacketSocket opens an AF_PACKET socket bound to ifname in namespace ns
// (the current one when ns is empty) receiving every protocol, with a large
// receive buffer: the independent reference tests capture frames with.
func PacketSocket(ns, ifname string) (int, error) {
	fd := -1
	open := func() error {
		ifc, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256<<20)
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			unix.Close(s)
			return err
		}
		fd = s
		return nil
	}
	var err error
	if ns == "" {
		err = open()
	} else {
		err = Do(ns, open)
	}
	return fd, err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// EachReceived reads the frames arriving on packet socket fd until none has
// come for quiet, and calls fn with each frame the interface received (its
// own transmissions are skipped): data is the frame cut to len(buf), n its
// full length. Frames the kernel dropped because the socket's buffer was
// full make it return an error: the capture is then not a complete reference.
func EachReceived(fd int, buf []byte, quiet time.Duration, fn func(data []byte, n int)) error {
	setTimeout := func(d time.Duration) {
		tv := unix.NsecToTimeval(max(d, time.Millisecond).Nanoseconds())
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	}
	setTimeout(quiet)
	last, shortened := time.Now(), false
	for {
		n, from, err := unix.Recvfrom(fd, buf, unix.MSG_TRUNC)
		if errors.Is(err, unix.EINTR) {
			// A socket with SO_RCVTIMEO is not restarted after a signal, and
			// the Go runtime signals threads to preempt goroutines: retry
			// with what is left of the quiet period, so signals arriving
			// more often than quiet cannot keep the loop alive forever.
			if left := quiet - time.Since(last); left > 0 {
				setTimeout(left)
				shortened = true
				continue
			}
			err = unix.EAGAIN
		}
		if errors.Is(err, unix.EAGAIN) {
			st, err := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
			if err == nil && st.Drops != 0 {
				return fmt.Errorf("capture dropped %d frames", st.Drops)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("recvfrom: %w", err)
		}
		last = time.Now()
		if shortened {
			setTimeout(quiet)
			shortened = false
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		fn(buf[:min(n, len(buf))], n)
	}
}
