package netns

import (
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The Go runtime preempts goroutines with signals, and a socket with
// SO_RCVTIMEO returns EINTR instead of restarting: a capture must neither
// fail on that nor be kept alive forever by signals coming faster than its
// quiet period. The signal here stands in for the runtime's own.
func TestEachReceivedSurvivesSignals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("AF_PACKET needs root (CI runs as root)")
	}
	fd, err := PacketSocket("", "lo")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	tids := make(chan int, 1)
	done := make(chan error, 1)
	frames := 0
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		done <- EachReceived(fd, make([]byte, 256), 300*time.Millisecond, func([]byte, int) { frames++ })
	}()
	tid := <-tids

	// Traffic for the first part, so the quiet period restarts after frames.
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	signals := 0
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("EachReceived under signals: %v", err)
			}
			if signals < 20 {
				t.Fatalf("only %d signals were sent: the test did not exercise EINTR", signals)
			}
			if frames == 0 {
				t.Fatal("no frame was captured on lo")
			}
			return
		case <-tick.C:
			if time.Since(send) < 200*time.Millisecond {
				_, _ = conn.WriteTo([]byte("x"), conn.LocalAddr())
			}
			if err := unix.Tgkill(os.Getpid(), tid, unix.SIGURG); err == nil {
				signals++
			}
		case <-timeout:
			t.Fatalf("EachReceived did not return within 10 s under %d signals (quiet period 300 ms)", signals)
		}
	}
}
