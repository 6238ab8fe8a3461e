package pipeline

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exfilwatch/exfilwatch/eval"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
	"github.com/exfilwatch/exfilwatch/sink/clickhouse"
	"github.com/exfilwatch/exfilwatch/sink/webhook"
)

// receiver is a webhook endpoint that verifies Standard Webhooks signatures
// independently of the sender's code (stdlib HMAC over id.timestamp.body)
// and records the alert ids it accepted.
type receiver struct {
	key      []byte
	mu       sync.Mutex
	ids      map[string]int
	badSig   int
	failNext int // answer 500 to this many requests first
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.failNext > 0 {
		rc.failNext--
		http.Error(w, "try later", http.StatusInternalServerError)
		return
	}
	mac := hmac.New(sha256.New, rc.key)
	fmt.Fprintf(mac, "%s.%s.", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"))
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := false
	for _, sig := range strings.Fields(r.Header.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			ok = true
		}
	}
	if !ok {
		rc.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.Data.ID == "" {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rc.ids[ev.Data.ID]++
	w.WriteHeader(http.StatusNoContent)
}

// TestEndToEnd runs the simulated lab through collector (pcap mode) -> the
// real Kafka broker -> enrich -> detect -> the real ClickHouse server and an
// HTTP webhook receiver, and checks the detection-quality targets, that every
// alert is in ClickHouse exactly once (after FINAL) and that every alert
// reached the webhook with a valid signature.
func TestEndToEnd(t *testing.T) {
	kafka := testenv.Kafka(t)
	chAddr := testenv.ClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	key := []byte("e2e-webhook-secret-0123456789")
	rc := &receiver{key: key, ids: map[string]int{}, failNext: 5}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	cfg := DemoConfig()
	cfg.ClickHouse.Database = fmt.Sprintf("exfilwatch_e2e_%d", time.Now().UnixNano())
	ep := webhook.DefaultEndpoint("e2e", srv.URL, webhook.FormatGeneric)
	ep.Secret = "whsec_" + base64.StdEncoding.EncodeToString(key)
	ep.RatePerSecond = 10000
	ep.Burst = 1000
	cfg.Webhooks.Endpoints = []webhook.EndpointConfig{ep}
	cfg.Webhooks.RetryInitial = 10 * time.Millisecond
	cfg.Webhooks.RetryMax = 100 * time.Millisecond

	ths, err := eval.ParseThresholds("recall:identifier_leak=0.99,recall:beaconing=0.95,recall:dns_tunnel=0.95,leak-recall:*=0.99,precision:*=0.9")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := Demo(ctx, &cfg, DemoOptions{Dir: t.TempDir(), Devices: 30, Seed: 7, Kafka: kafka, ClickHouse: chAddr, Thresholds: ths}, &out, io.Discard, log)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	t.Logf("\n%s", out.String())
	if len(res.Failures) > 0 {
		t.Fatalf("detection-quality targets not met: %v", res.Failures)
	}
	if res.Report == nil || len(res.Report.LeakByForm) < 20 {
		t.Fatalf("leak evaluation missing or too small: %+v", res.Report)
	}

	ids := alertIDs(t, res.AlertsFile)
	rc.checkDelivered(t, ids)
	checkStored(t, ctx, cfg.ClickHouse, ids, res.Flows)
}

// alertIDs reads the distinct alert ids from the pipeline's JSON-lines copy.
func alertIDs(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	alerts, err := eval.ReadAlerts(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, a := range alerts {
		ids[a.Id] = true
	}
	if len(ids) < 10 {
		t.Fatalf("only %d alerts", len(ids))
	}
	return ids
}

// checkDelivered: every alert reached the receiver, every request was signed.
func (rc *receiver) checkDelivered(t *testing.T, ids map[string]bool) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	missing := 0
	for id := range ids {
		if rc.ids[id] == 0 {
			missing++
		}
	}
	if missing > 0 || rc.badSig > 0 {
		t.Fatalf("%d of %d alerts never reached the webhook; %d requests had an invalid signature", missing, len(ids), rc.badSig)
	}
}

// checkStored: every alert is in ClickHouse exactly once after FINAL and
// every collected flow is stored; the test database is dropped afterwards.
func checkStored(t *testing.T, ctx context.Context, cfg clickhouse.Config, ids map[string]bool, flows int64) {
	t.Helper()
	conn, err := clickhouse.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+cfg.Database)
	var rows, distinct uint64
	q := fmt.Sprintf("SELECT count(), uniqExact(id) FROM %s.alerts FINAL", cfg.Database)
	if err := conn.QueryRow(ctx, q).Scan(&rows, &distinct); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if distinct != uint64(len(ids)) || rows != distinct {
		t.Fatalf("ClickHouse alerts FINAL: %d rows, %d distinct ids; pipeline produced %d distinct ids", rows, distinct, len(ids))
	}
	var stored uint64
	if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT uniqExact(id) FROM %s.flows", cfg.Database)).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if int64(stored) != flows {
		t.Fatalf("ClickHouse has %d distinct flows, pipeline collected %d", stored, flows)
	}
}

func TestBenignOnlyRaisesNothing(t *testing.T) {
	kafka := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := DemoConfig()
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	res, err := Demo(ctx, &cfg, DemoOptions{Dir: t.TempDir(), Devices: 30, Seed: 11, BenignOnly: true, Kafka: kafka}, &out, io.Discard, log)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if res.Flows == 0 {
		t.Fatal("no flows collected")
	}
	if res.Alerts != 0 {
		t.Fatalf("%d alerts on benign-only traffic:\n%s", res.Alerts, out.String())
	}
}

// TestDemoEmbedded: the zero-setup demo path (embedded broker, files only).
func TestDemoEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := DemoConfig()
	var out bytes.Buffer
	ths, _ := eval.ParseThresholds("recall:*=0.95,precision:*=0.9,leak-recall:*=0.99")
	res, err := Demo(ctx, &cfg, DemoOptions{Dir: t.TempDir(), Devices: 16, Seed: 3, Thresholds: ths}, &out, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if len(res.Failures) > 0 || res.Alerts == 0 {
		t.Fatalf("failures %v, %d alerts\n%s", res.Failures, res.Alerts, out.String())
	}
	if !strings.Contains(out.String(), "identifier_leak") {
		t.Fatalf("summary lacks identifier_leak:\n%s", out.String())
	}
}
