package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// verify checks a request the way the Standard Webhooks spec tells a
// consumer to, written independently of Sign: HMAC-SHA256 over
// "id.timestamp.body" with the base64-decoded secret, constant-time compare
// against every "v1,<sig>" in the space-separated header, 5-minute
// timestamp tolerance.
func verify(secret string, h http.Header, body []byte) error {
	id, tsHdr, sigHdr := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || tsHdr == "" || sigHdr == "" {
		return errors.New("missing webhook headers")
	}
	ts, err := strconv.ParseInt(tsHdr, 10, 64)
	if err != nil {
		return fmt.Errorf("bad timestamp: %w", err)
	}
	if d := time.Since(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp outside tolerance")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + tsHdr + "." + string(body)))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigHdr) {
		v, sig, _ := strings.Cut(s, ",")
		if v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// The example of the Standard Webhooks spec (secret, id, timestamp, payload
// and expected signature as published there).
func TestSignKnownAnswer(t *testing.T) {
	key, err := decodeSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func testAlert(i int) *flowpb.Alert {
	return &flowpb.Alert{
		SchemaVersion: schema.Version, Id: fmt.Sprintf("a%03d", i), DedupKey: "dev/imei/sha1/t.example",
		Detector: "identifier", Severity: flowpb.Severity_SEVERITY_HIGH, DeviceId: "pixel-01", DeviceModel: "Pixel 7a",
		DeviceGroup: "lab-a", Summary: fmt.Sprintf("IMEI sha1 sent to t.example <%d>", i),
		Evidence:    []*flowpb.Evidence{{Key: "form", Value: "sha1-hex-upper"}, {Key: "field", Value: "http.path"}},
		FirstSeenNs: 1_795_000_000_000_000_001, LastSeenNs: 1_795_000_060_000_000_002, WindowStartNs: 1_795_000_000_000_000_000,
		Count: uint64(i + 1), Bytes: 1234, Score: 0.875, CreatedNs: 1_795_000_061_000_000_000 + int64(i),
		Destination: &flowpb.Destination{Addr: schema.AddrBytes(netip.MustParseAddr("198.51.100.7")), Port: 443,
			Host: "t.example", Country: "CN", Asn: 64511, Org: "Tracker Inc"},
		FlowIds: []string{"f1", "f2"},
	}
}

type received struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver records requests and answers with the status next returns.
type receiver struct {
	mu   sync.Mutex
	reqs []received
	next func(n int, r *http.Request) int
	srv  *httptest.Server
}

func newReceiver(t *testing.T, next func(n int, r *http.Request) int) *receiver {
	rc := &receiver{next: next}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, received{r.Header.Clone(), b, time.Now()})
		rc.mu.Unlock()
		code := http.StatusNoContent
		if rc.next != nil {
			code = rc.next(n, r)
		}
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(code)
		fmt.Fprint(w, http.StatusText(code))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func testConfig(eps ...EndpointConfig) Config {
	c := DefaultConfig()
	c.RetryInitial, c.RetryMax = 10*time.Millisecond, 100*time.Millisecond
	c.Endpoints = eps
	return c
}

func ep(name, url, format string) EndpointConfig {
	e := DefaultEndpoint(name, url, format)
	e.Secret, e.RatePerSecond, e.Burst, e.Timeout = testSecret, 1000, 100, 2*time.Second
	return e
}

func newNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestGenericDeliverySignedAndShaped(t *testing.T) {
	rc := newReceiver(t, nil)
	n := newNotifier(t, testConfig(ep("generic", rc.srv.URL, FormatGeneric)))
	alerts := []*flowpb.Alert{testAlert(1), testAlert(2)}
	dl, err := n.Deliver(ctxT(t, 10*time.Second), alerts)
	if err != nil || len(dl) != 0 {
		t.Fatalf("Deliver = %v, %v", dl, err)
	}
	reqs := rc.all()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2", len(reqs))
	}
	for i, r := range reqs {
		if err := verify(testSecret, r.header, r.body); err != nil {
			t.Errorf("request %d: signature: %v", i, err)
		}
		// A tampered body must not verify (the check can fail).
		if err := verify(testSecret, r.header, append([]byte(" "), r.body...)); err == nil {
			t.Errorf("tampered body verified")
		}
		if r.header.Get("webhook-id") != MessageID(alerts[i]) || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", r.header)
		}
		var ev map[string]any
		if err := json.Unmarshal(r.body, &ev); err != nil {
			t.Fatal(err)
		}
		data := ev["data"].(map[string]any)
		dst := data["destination"].(map[string]any)
		if ev["type"] != "exfilwatch.alert" || data["id"] != alerts[i].Id || data["severity"] != "high" ||
			dst["addr"] != "198.51.100.7" || dst["host"] != "t.example" || data["first_seen"] != "2026-11-18T11:06:40.000000001Z" ||
			data["device"].(map[string]any)["model"] != "Pixel 7a" || data["count"] != float64(alerts[i].Count) {
			t.Errorf("generic payload: %s", r.body)
		}
	}
	if MessageID(alerts[0]) == MessageID(alerts[1]) {
		t.Error("distinct alerts share a webhook-id")
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	t.Run("5xx", func(t *testing.T) {
		rc := newReceiver(t, func(n int, _ *http.Request) int {
			if n < 3 {
				return []int{500, 502, 503}[n]
			}
			return 200
		})
		n := newNotifier(t, testConfig(ep("e", rc.srv.URL, FormatGeneric)))
		dl, err := n.Deliver(ctxT(t, 10*time.Second), []*flowpb.Alert{testAlert(1)})
		if err != nil || len(dl) != 0 {
			t.Fatalf("Deliver = %v, %v", dl, err)
		}
		reqs := rc.all()
		if len(reqs) != 4 {
			t.Fatalf("%d attempts, want 4", len(reqs))
		}
		for _, r := range reqs {
			if r.header.Get("webhook-id") != reqs[0].header.Get("webhook-id") {
				t.Error("webhook-id changed between retries")
			}
			if err := verify(testSecret, r.header, r.body); err != nil {
				t.Error(err)
			}
		}
	})
	t.Run("429_and_408", func(t *testing.T) {
		rc := newReceiver(t, func(n int, _ *http.Request) int { return []int{429, 408, 429, 201}[min(n, 3)] })
		n := newNotifier(t, testConfig(ep("e", rc.srv.URL, FormatGeneric)))
		dl, err := n.Deliver(ctxT(t, 10*time.Second), []*flowpb.Alert{testAlert(1)})
		if err != nil || len(dl) != 0 || len(rc.all()) != 4 {
			t.Fatalf("Deliver = %v, %v after %d attempts", dl, err, len(rc.all()))
		}
	})
	t.Run("timeout", func(t *testing.T) {
		var calls atomic.Int32
		rc := newReceiver(t, func(n int, r *http.Request) int {
			if calls.Add(1) == 1 {
				select { // hang past the client timeout
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			}
			return 200
		})
		e := ep("e", rc.srv.URL, FormatGeneric)
		e.Timeout = 200 * time.Millisecond
		n := newNotifier(t, testConfig(e))
		dl, err := n.Deliver(ctxT(t, 10*time.Second), []*flowpb.Alert{testAlert(1)})
		if err != nil || len(dl) != 0 || calls.Load() < 2 {
			t.Fatalf("Deliver = %v, %v after %d calls", dl, err, calls.Load())
		}
	})
	t.Run("connection_refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens: connection refused
		var got atomic.Int32
		n := newNotifier(t, testConfig(ep("e", "http://"+addr+"/hook", FormatGeneric)))
		done := make(chan error, 1)
		var dl []*flowpb.Alert
		go func() {
			var err error
			dl, err = n.Deliver(ctxT(t, 20*time.Second), []*flowpb.Alert{testAlert(1)})
			done <- err
		}()
		time.Sleep(300 * time.Millisecond)
		select {
		case err := <-done:
			t.Fatalf("Deliver returned while the endpoint was down: %v", err)
		default:
		}
		ln2, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("re-listen: %v", err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if verify(testSecret, r.Header, b) == nil {
				got.Add(1)
			}
			w.WriteHeader(200)
		})}
		go srv.Serve(ln2)
		defer srv.Close()
		if err := <-done; err != nil || len(dl) != 0 {
			t.Fatalf("Deliver = %v, %v", dl, err)
		}
		if got.Load() != 1 {
			t.Fatalf("receiver got %d verified requests, want 1", got.Load())
		}
	})
}

func TestPermanentRefusalDeadLetters(t *testing.T) {
	bad := newReceiver(t, func(int, *http.Request) int { return 400 })
	good := newReceiver(t, nil)
	n := newNotifier(t, testConfig(ep("bad", bad.srv.URL, FormatGeneric), ep("good", good.srv.URL, FormatGeneric)))
	alerts := []*flowpb.Alert{testAlert(1), testAlert(2)}
	dls, err := n.DeliverDetailed(ctxT(t, 10*time.Second), alerts)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].Endpoint != "bad" || dls[0].Status != 400 || !strings.Contains(dls[0].Reason, "400") {
		t.Fatalf("dead letters %+v", dls)
	}
	if len(bad.all()) != 2 {
		t.Errorf("a 400 was retried: %d attempts for 2 alerts", len(bad.all()))
	}
	if len(good.all()) != 2 {
		t.Errorf("the healthy endpoint got %d alerts, want 2", len(good.all()))
	}
	dl, err := n.Deliver(ctxT(t, 10*time.Second), alerts)
	if err != nil || len(dl) != 2 || dl[0] != alerts[0] || dl[1] != alerts[1] {
		t.Fatalf("Deliver dead-lettered %v, %v", dl, err)
	}
}

func TestBoundedAttemptsDeadLetter(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return 503 })
	cfg := testConfig(ep("e", rc.srv.URL, FormatGeneric))
	cfg.MaxAttempts = 3
	n := newNotifier(t, cfg)
	dls, err := n.DeliverDetailed(ctxT(t, 10*time.Second), []*flowpb.Alert{testAlert(1)})
	if err != nil || len(dls) != 1 || !strings.Contains(dls[0].Reason, "gave up after 3 attempts") || len(rc.all()) != 3 {
		t.Fatalf("dead letters %+v, %v after %d attempts", dls, err, len(rc.all()))
	}
}

func TestCancelWhileDownIsAnError(t *testing.T) {
	rc := newReceiver(t, func(int, *http.Request) int { return 500 })
	n := newNotifier(t, testConfig(ep("e", rc.srv.URL, FormatGeneric)))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	dl, err := n.Deliver(ctx, []*flowpb.Alert{testAlert(1)})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || dl != nil {
		t.Fatalf("Deliver = %v, %v; want the context error", dl, err)
	}
}

func TestRateLimit(t *testing.T) {
	rc := newReceiver(t, nil)
	e := ep("e", rc.srv.URL, FormatGeneric)
	e.RatePerSecond, e.Burst = 20, 1
	n := newNotifier(t, testConfig(e))
	var alerts []*flowpb.Alert
	for i := range 8 {
		alerts = append(alerts, testAlert(i))
	}
	if _, err := n.Deliver(ctxT(t, 10*time.Second), alerts); err != nil {
		t.Fatal(err)
	}
	reqs := rc.all()
	if len(reqs) != 8 {
		t.Fatalf("%d requests", len(reqs))
	}
	// 8 requests at 20/s with burst 1: at least 7 intervals of 50 ms.
	if span := reqs[7].at.Sub(reqs[0].at); span < 7*50*time.Millisecond*9/10 {
		t.Fatalf("8 requests within %v: rate limit of 20/s not respected", span)
	}
	for i := 1; i < len(reqs); i++ {
		if gap := reqs[i].at.Sub(reqs[i-1].at); gap < 40*time.Millisecond {
			t.Errorf("gap %d = %v < 50 ms (minus scheduling slack)", i, gap)
		}
	}
}

func TestSlackShape(t *testing.T) {
	rc := newReceiver(t, nil)
	a := testAlert(1)
	a.Evidence = append(a.Evidence, &flowpb.Evidence{Key: "note", Value: strings.Repeat("x", 5000)})
	e := ep("slack", rc.srv.URL, FormatSlack)
	e.RatePerSecond = 1000
	n := newNotifier(t, testConfig(e))
	if dl, err := n.Deliver(ctxT(t, 10*time.Second), []*flowpb.Alert{a}); err != nil || len(dl) != 0 {
		t.Fatal(dl, err)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Fields []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"fields"`
			Elements []map[string]any `json:"elements"`
		} `json:"blocks"`
	}
	body := rc.all()[0].body
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "[HIGH] identifier: IMEI sha1 sent to t.example") || len(msg.Blocks) < 3 {
		t.Fatalf("slack message: %s", body)
	}
	if msg.Blocks[0].Type != "header" || msg.Blocks[0].Text.Type != "plain_text" || len([]rune(msg.Blocks[0].Text.Text)) > 150 {
		t.Errorf("header block: %+v", msg.Blocks[0])
	}
	if msg.Blocks[1].Type != "section" || len(msg.Blocks[1].Fields) == 0 || !strings.Contains(msg.Blocks[1].Fields[0].Text, "pixel-01") {
		t.Errorf("fields block: %+v", msg.Blocks[1])
	}
	for _, b := range msg.Blocks {
		if b.Text != nil && len([]rune(b.Text.Text)) > 3000 {
			t.Errorf("%s block text is %d characters (Slack limit 3000)", b.Type, len([]rune(b.Text.Text)))
		}
	}
	if strings.Contains(string(body), "<1>") {
		t.Error("mrkdwn special characters not escaped")
	}
	if msg.Blocks[len(msg.Blocks)-1].Type != "context" {
		t.Error("no context block")
	}
}

func TestAlertmanagerShape(t *testing.T) {
	rc := newReceiver(t, nil)
	e := ep("am", rc.srv.URL+"/api/v2/alerts", FormatAlertmanager)
	e.GeneratorURL = "http://exfilwatch.lab/alerts"
	n := newNotifier(t, testConfig(e))
	a := testAlert(4)
	if dl, err := n.Deliver(ctxT(t, 10*time.Second), []*flowpb.Alert{a}); err != nil || len(dl) != 0 {
		t.Fatal(dl, err)
	}
	var got []struct {
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		EndsAt       *time.Time        `json:"endsAt"`
		GeneratorURL string            `json:"generatorURL"`
	}
	body := rc.all()[0].body
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("not a JSON array of alerts: %v: %s", err, body)
	}
	if len(got) != 1 {
		t.Fatalf("%d alerts in body", len(got))
	}
	g := got[0]
	if g.Labels["alertname"] != "exfilwatch_identifier" || g.Labels["severity"] != "high" || g.Labels["device_id"] != "pixel-01" ||
		g.Labels["destination"] != "t.example" {
		t.Errorf("labels %v", g.Labels)
	}
	for k, v := range g.Labels {
		if v == "" {
			t.Errorf("empty label %s", k)
		}
	}
	if g.Annotations["summary"] != a.Summary || g.Annotations["alert_id"] != a.Id || g.Annotations["evidence_form"] != "sha1-hex-upper" {
		t.Errorf("annotations %v", g.Annotations)
	}
	if !g.StartsAt.Equal(time.Unix(0, a.FirstSeenNs)) || g.EndsAt != nil || g.GeneratorURL != e.GeneratorURL {
		t.Errorf("startsAt %v endsAt %v generatorURL %q", g.StartsAt, g.EndsAt, g.GeneratorURL)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := testConfig(ep("a", "https://hooks.example/x", FormatSlack))
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for key, mut := range map[string]func(*Config){
		"endpoints[0].url:":             func(c *Config) { c.Endpoints[0].URL = "ftp://x" },
		"endpoints[0].format:":          func(c *Config) { c.Endpoints[0].Format = "teams" },
		"endpoints[0].secret:":          func(c *Config) { c.Endpoints[0].Secret = "hunter2" },
		"endpoints[0].rate_per_second:": func(c *Config) { c.Endpoints[0].RatePerSecond = 0 },
		"endpoints[0].name:":            func(c *Config) { c.Endpoints[0].Name = "" },
		"endpoints[1].name:": func(c *Config) {
			c.Endpoints = append(c.Endpoints, c.Endpoints[0])
		},
		"retry_max:":    func(c *Config) { c.RetryMax = time.Nanosecond },
		"max_attempts:": func(c *Config) { c.MaxAttempts = -1 },
	} {
		c := testConfig(ep("a", "https://hooks.example/x", FormatSlack))
		mut(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), key) {
			t.Errorf("%s: got %v", key, err)
		}
	}
}
