// Package obs sets up what every stage exposes to operators: structured logs
// (log/slog, text or JSON) and an HTTP endpoint with /metrics (Prometheus),
// /healthz (the process is alive) and /readyz (the stage is connected and
// processing).
package obs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config is the observability section shared by all stages.
type Config struct {
	LogFormat   string `yaml:"log_format" help:"log format: text or json"`
	LogLevel    string `yaml:"log_level" help:"log level: debug, info, warn or error"`
	MetricsAddr string `yaml:"metrics_addr" help:"listen address for /metrics, /healthz and /readyz (empty disables)"`
}

// DefaultConfig returns text logs at info level and metrics on loopback.
func DefaultConfig() Config {
	return Config{LogFormat: "text", LogLevel: "info", MetricsAddr: "127.0.0.1:9464"}
}

// Validate checks the values.
func (c Config) Validate() error {
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("log_format: must be text or json, not %q", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log_level: %v", err)
	}
	if c.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics_addr: invalid address %q (want host:port)", c.MetricsAddr)
		}
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("unknown level %q", s)
	}
	return l, nil
}

// Logger builds the process logger writing to w (stderr in main).
func Logger(c Config, w io.Writer) *slog.Logger {
	lvl, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Ready is a readiness flag a stage flips when it is connected and working.
type Ready struct{ v atomic.Bool }

// Set marks the stage ready or not.
func (r *Ready) Set(ok bool) { r.v.Store(ok) }

// Serve runs the HTTP endpoint until ctx ends. It returns once listening
// fails or the server has shut down.
func Serve(ctx context.Context, addr string, ready *Ready, log *slog.Logger) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready.v.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics_addr: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
