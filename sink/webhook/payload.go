package webhook

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// GenericEvent is the default payload (format "generic"), following the
// Standard Webhooks event shape {type, timestamp, data}. Field names are a
// documented contract (docs/sink.md); fields are only ever added.
type GenericEvent struct {
	Type      string       `json:"type"`      // always "exfilwatch.alert"
	Timestamp string       `json:"timestamp"` // alert created_ns, RFC 3339 UTC
	Data      GenericAlert `json:"data"`
}

// GenericAlert is the alert inside a GenericEvent.
type GenericAlert struct {
	SchemaVersion uint32             `json:"schema_version"`
	ID            string             `json:"id"`
	DedupKey      string             `json:"dedup_key"`
	Detector      string             `json:"detector"`
	Severity      string             `json:"severity"` // info, low, medium, high, critical
	Device        GenericDevice      `json:"device"`
	Summary       string             `json:"summary"`
	Evidence      []GenericEvidence  `json:"evidence"`
	FirstSeen     string             `json:"first_seen"`   // RFC 3339 with nanoseconds
	LastSeen      string             `json:"last_seen"`    // RFC 3339 with nanoseconds
	WindowStart   string             `json:"window_start"` // RFC 3339 with nanoseconds
	Count         uint64             `json:"count"`
	Bytes         uint64             `json:"bytes"`
	Score         float64            `json:"score"`
	Destination   GenericDestination `json:"destination"`
	FlowIDs       []string           `json:"flow_ids"`
}

// GenericDevice names the lab device an alert is about.
type GenericDevice struct {
	ID    string `json:"id"`
	Model string `json:"model"`
	Group string `json:"group"`
}

// GenericEvidence is one key/value of evidence (never identifier plaintext).
type GenericEvidence struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// GenericDestination is the remote end.
type GenericDestination struct {
	Addr    string `json:"addr"` // textual IP, IPv4 unmapped; empty when unknown
	Port    uint32 `json:"port"`
	Host    string `json:"host"`
	Country string `json:"country"`
	ASN     uint32 `json:"asn"`
	Org     string `json:"org"`
}

func rfc3339(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// SeverityName is the lower-case severity (SEVERITY_HIGH -> "high").
func SeverityName(s flowpb.Severity) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SEVERITY_"))
}

func destAddr(d *flowpb.Destination) string {
	a := schema.Addr(d.GetAddr())
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Generic builds the generic payload of a.
func Generic(a *flowpb.Alert) GenericEvent {
	d := a.GetDestination()
	ev := make([]GenericEvidence, 0, len(a.GetEvidence()))
	for _, e := range a.GetEvidence() {
		ev = append(ev, GenericEvidence{Key: e.GetKey(), Value: e.GetValue()})
	}
	flows := a.GetFlowIds()
	if flows == nil {
		flows = []string{}
	}
	return GenericEvent{
		Type:      "exfilwatch.alert",
		Timestamp: rfc3339(a.GetCreatedNs()),
		Data: GenericAlert{
			SchemaVersion: a.GetSchemaVersion(), ID: a.GetId(), DedupKey: a.GetDedupKey(), Detector: a.GetDetector(),
			Severity: SeverityName(a.GetSeverity()),
			Device:   GenericDevice{ID: a.GetDeviceId(), Model: a.GetDeviceModel(), Group: a.GetDeviceGroup()},
			Summary:  a.GetSummary(), Evidence: ev,
			FirstSeen: rfc3339(a.GetFirstSeenNs()), LastSeen: rfc3339(a.GetLastSeenNs()), WindowStart: rfc3339(a.GetWindowStartNs()),
			Count: a.GetCount(), Bytes: a.GetBytes(), Score: a.GetScore(),
			Destination: GenericDestination{Addr: destAddr(d), Port: d.GetPort(), Host: d.GetHost(),
				Country: d.GetCountry(), ASN: d.GetAsn(), Org: d.GetOrg()},
			FlowIDs: flows,
		},
	}
}

// Slack limits: section text 3000 characters (longer is a 400), header 150.
const (
	slackSectionMax = 3000
	slackHeaderMax  = 150
)

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// slackEscape escapes the three characters Slack mrkdwn treats as markup.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// Slack builds an incoming-webhook message: a fallback text and blocks
// (header, a field section, the evidence, the alert id as context).
func Slack(a *flowpb.Alert) map[string]any {
	sev := strings.ToUpper(SeverityName(a.GetSeverity()))
	title := fmt.Sprintf("[%s] %s: %s", sev, a.GetDetector(), a.GetSummary())
	d := a.GetDestination()
	dest := d.GetHost()
	if dest == "" {
		dest = destAddr(d)
	}
	if d.GetPort() != 0 {
		dest += ":" + strconv.FormatUint(uint64(d.GetPort()), 10)
	}
	field := func(k, v string) map[string]any {
		return map[string]any{"type": "mrkdwn", "text": truncate("*"+k+"*\n"+slackEscape(v), 2000)}
	}
	fields := []any{
		field("Device", fmt.Sprintf("%s (%s, %s)", a.GetDeviceId(), a.GetDeviceModel(), a.GetDeviceGroup())),
		field("Destination", fmt.Sprintf("%s %s AS%d %s", dest, d.GetCountry(), d.GetAsn(), d.GetOrg())),
		field("Count", strconv.FormatUint(a.GetCount(), 10)),
		field("Score", strconv.FormatFloat(a.GetScore(), 'f', 3, 64)),
		field("First seen", rfc3339(a.GetFirstSeenNs())),
		field("Last seen", rfc3339(a.GetLastSeenNs())),
	}
	var ev strings.Builder
	for _, e := range a.GetEvidence() {
		fmt.Fprintf(&ev, "• *%s*: %s\n", slackEscape(e.GetKey()), slackEscape(e.GetValue()))
	}
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": truncate(title, slackHeaderMax)}},
		map[string]any{"type": "section", "fields": fields},
	}
	if ev.Len() > 0 {
		blocks = append(blocks, map[string]any{"type": "section",
			"text": map[string]any{"type": "mrkdwn", "text": truncate(ev.String(), slackSectionMax)}})
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []any{
		map[string]any{"type": "mrkdwn", "text": truncate("alert "+slackEscape(a.GetId())+" · dedup "+slackEscape(a.GetDedupKey()), slackSectionMax)},
	}})
	return map[string]any{"text": truncate(title, slackSectionMax), "blocks": blocks}
}

// AlertmanagerAlert is one element of the Alertmanager v2 POST
// /api/v2/alerts body (postableAlert).
type AlertmanagerAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     string            `json:"startsAt,omitempty"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// Alertmanager builds the v2 alerts array for a (one alert per request, so
// each alert settles on its own). Labels identify the alert (Alertmanager
// groups and deduplicates on them); everything else is an annotation.
func Alertmanager(a *flowpb.Alert, generatorURL string) []AlertmanagerAlert {
	d := a.GetDestination()
	dest := d.GetHost()
	if dest == "" {
		dest = destAddr(d)
	}
	labels := map[string]string{
		"alertname":    "exfilwatch_" + a.GetDetector(),
		"severity":     SeverityName(a.GetSeverity()),
		"detector":     a.GetDetector(),
		"device_id":    a.GetDeviceId(),
		"device_model": a.GetDeviceModel(),
		"device_group": a.GetDeviceGroup(),
		"destination":  dest,
		"dst_country":  d.GetCountry(),
		"dedup_key":    a.GetDedupKey(),
	}
	for k, v := range labels {
		if v == "" {
			delete(labels, k) // Alertmanager treats empty labels as absent
		}
	}
	ann := map[string]string{
		"summary":     a.GetSummary(),
		"alert_id":    a.GetId(),
		"count":       strconv.FormatUint(a.GetCount(), 10),
		"bytes":       strconv.FormatUint(a.GetBytes(), 10),
		"score":       strconv.FormatFloat(a.GetScore(), 'f', 3, 64),
		"last_seen":   rfc3339(a.GetLastSeenNs()),
		"destination": fmt.Sprintf("%s %s:%d AS%d %s", dest, destAddr(d), d.GetPort(), d.GetAsn(), d.GetOrg()),
	}
	if len(a.GetFlowIds()) > 0 {
		ann["flow_ids"] = strings.Join(a.GetFlowIds(), ",")
	}
	for _, e := range a.GetEvidence() {
		ann["evidence_"+e.GetKey()] = e.GetValue()
	}
	return []AlertmanagerAlert{{
		Labels: labels, Annotations: ann,
		StartsAt: time.Unix(0, a.GetFirstSeenNs()).UTC().Format(time.RFC3339Nano), GeneratorURL: generatorURL,
	}}
}

// Body encodes a in an endpoint's format.
func Body(format string, a *flowpb.Alert, generatorURL string) ([]byte, error) {
	var v any
	switch format {
	case FormatSlack:
		v = Slack(a)
	case FormatAlertmanager:
		v = Alertmanager(a, generatorURL)
	default:
		v = Generic(a)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload of alert %s: %w", format, a.GetId(), err)
	}
	return b, nil
}
