package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// DeadLetter is an alert an endpoint refused permanently (a 4xx other than
// 408 and 429) or that ran out of the configured attempts or time.
type DeadLetter struct {
	Alert    *flowpb.Alert
	Endpoint string
	Status   int    // HTTP status of the last attempt, 0 without a response
	Reason   string // human-readable, for the dead-letter record
}

// Notifier delivers alerts to the configured endpoints.
type Notifier struct {
	cfg Config
	eps []*endpoint
	log *slog.Logger
}

type endpoint struct {
	cfg    EndpointConfig
	key    []byte
	client *http.Client
	limit  *bucket
}

// New validates cfg and prepares one HTTP client and rate limiter per
// endpoint. Redirects are not followed (a 3xx is a failed attempt).
func New(cfg Config) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook config: %w", err)
	}
	n := &Notifier{cfg: cfg, log: slog.Default().With("component", "sink.webhook")}
	for _, e := range cfg.Endpoints {
		ep := &endpoint{cfg: e, limit: newBucket(e.RatePerSecond, e.Burst)}
		if e.Secret != "" {
			ep.key, _ = decodeSecret(e.Secret) // validated above
		}
		ep.client = &http.Client{
			Timeout:       e.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		n.eps = append(n.eps, ep)
	}
	return n, nil
}

// Deliver sends every alert to every endpoint and blocks until each is
// settled: acknowledged with a 2xx, or dead-lettered. It returns the alerts
// at least one endpoint dead-lettered (each once), for the caller's
// dead-letter topic; then the caller may commit its offsets. While an
// endpoint fails transiently (connection refused, timeout, 5xx, 408, 429)
// Deliver keeps retrying. If ctx ends first it returns ctx's error and no
// claim about which alerts were delivered.
func (n *Notifier) Deliver(ctx context.Context, alerts []*flowpb.Alert) ([]*flowpb.Alert, error) {
	dls, err := n.DeliverDetailed(ctx, alerts)
	if err != nil {
		return nil, err
	}
	var out []*flowpb.Alert
	seen := map[*flowpb.Alert]bool{}
	for _, d := range dls {
		if !seen[d.Alert] {
			seen[d.Alert] = true
			out = append(out, d.Alert)
		}
	}
	return out, nil
}

// DeliverDetailed is Deliver returning which endpoint refused which alert
// and why.
func (n *Notifier) DeliverDetailed(ctx context.Context, alerts []*flowpb.Alert) ([]DeadLetter, error) {
	if len(alerts) == 0 || len(n.eps) == 0 {
		return nil, ctx.Err()
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		dls  []DeadLetter
		errs = make([]error, len(n.eps))
	)
	for i, ep := range n.eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, a := range alerts {
				dl, err := n.deliverOne(ctx, ep, a)
				if err != nil {
					errs[i] = err
					return
				}
				if dl != nil {
					mu.Lock()
					dls = append(dls, *dl)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return dls, nil
}

// MessageID is the webhook-id of an alert: stable across retries and
// redeliveries of the same alert version (id and created time), so a
// receiver can drop duplicates; a re-emitted alert (new created_ns) gets a
// new id.
func MessageID(a *flowpb.Alert) string {
	h := sha256.New()
	h.Write([]byte(a.GetId()))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, a.GetCreatedNs(), 10))
	return "msg_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// deliverOne retries one alert to one endpoint until it settles. It returns
// a DeadLetter for a permanent refusal, nil when delivered, or an error
// when ctx ended.
func (n *Notifier) deliverOne(ctx context.Context, ep *endpoint, a *flowpb.Alert) (*DeadLetter, error) {
	name := ep.cfg.Name
	body, err := Body(ep.cfg.Format, a, ep.cfg.GeneratorURL)
	if err != nil {
		deliveries.WithLabelValues(name, "dead_lettered").Inc()
		return &DeadLetter{Alert: a, Endpoint: name, Reason: err.Error()}, nil
	}
	id := MessageID(a)
	start := time.Now()
	backoff := n.cfg.RetryInitial
	for attempt := 1; ; attempt++ {
		if err := ep.limit.wait(ctx); err != nil {
			return nil, fmt.Errorf("webhook %s: alert %s not delivered: %w", name, a.GetId(), err)
		}
		status, retryAfter, detail, err := n.post(ctx, ep, id, body)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("webhook %s: alert %s not delivered after %d attempts: %w", name, a.GetId(), attempt, ctx.Err())
		}
		switch {
		case err == nil && status >= 200 && status < 300:
			deliveries.WithLabelValues(name, "delivered").Inc()
			if attempt > 1 {
				n.log.Info("webhook delivered after retries", "endpoint", name, "alert", a.GetId(), "attempts", attempt)
			}
			return nil, nil
		case err == nil && status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			deliveries.WithLabelValues(name, "dead_lettered").Inc()
			reason := fmt.Sprintf("endpoint %s refused with HTTP %d: %s", name, status, detail)
			n.log.Warn("webhook refused alert; dead-lettering", "endpoint", name, "alert", a.GetId(), "status", status, "body", detail)
			return &DeadLetter{Alert: a, Endpoint: name, Status: status, Reason: reason}, nil
		}
		why := detail
		if err != nil {
			why = err.Error()
		}
		if (n.cfg.MaxAttempts > 0 && attempt >= n.cfg.MaxAttempts) || (n.cfg.GiveUpAfter > 0 && time.Since(start) >= n.cfg.GiveUpAfter) {
			deliveries.WithLabelValues(name, "dead_lettered").Inc()
			n.log.Warn("webhook gave up; dead-lettering", "endpoint", name, "alert", a.GetId(), "attempts", attempt, "last", why)
			return &DeadLetter{Alert: a, Endpoint: name, Status: status,
				Reason: fmt.Sprintf("endpoint %s: gave up after %d attempts in %s: %s", name, attempt, time.Since(start).Round(time.Millisecond), why)}, nil
		}
		retries.WithLabelValues(name).Inc()
		// Full-range jitter in [backoff/2, backoff): concurrent senders spread out.
		sleep := backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)+1))
		if retryAfter > sleep {
			sleep = min(retryAfter, n.cfg.RetryMax)
		}
		n.log.Warn("webhook attempt failed; retrying", "endpoint", name, "alert", a.GetId(), "attempt", attempt,
			"status", status, "err", why, "backoff", sleep)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("webhook %s: alert %s not delivered after %d attempts: %w", name, a.GetId(), attempt, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, n.cfg.RetryMax)
	}
}

// post makes one signed attempt. It returns the HTTP status (0 without a
// response), the Retry-After delay if any, a short detail for logs, and a
// transport error.
func (n *Notifier) post(ctx context.Context, ep *endpoint, id string, body []byte) (status int, retryAfter time.Duration, detail string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, "", fmt.Errorf("build request: %w", err)
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", n.cfg.UserAgent)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	if ep.key != nil {
		req.Header.Set("webhook-signature", Sign(ep.key, id, ts, body))
	}
	start := time.Now()
	resp, err := ep.client.Do(req)
	requestSeconds.WithLabelValues(ep.cfg.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			attempts.WithLabelValues(ep.cfg.Name, "timeout").Inc()
		} else {
			attempts.WithLabelValues(ep.cfg.Name, "error").Inc()
		}
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	attempts.WithLabelValues(ep.cfg.Name, strconv.Itoa(resp.StatusCode/100)+"xx").Inc()
	return resp.StatusCode, parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Sprintf("%s %q", resp.Status, snippet), nil
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}
