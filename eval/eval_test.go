package eval

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/schema"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

func TestEvaluate(t *testing.T) {
	truthJSON := `{"scenario":"leak","device":"d1","detectors":["identifier_leak"],"identifier_type":"imei","form":"raw","carrier":"http-get-query","observable":true,"proto":6,"src":"10.0.0.1","dst":"1.2.3.4","src_port":4000,"dst_port":80}
{"scenario":"leak","device":"d1","detectors":["identifier_leak"],"identifier_type":"imsi","form":"md5-hex-lower","carrier":"dns-label","observable":true,"proto":17,"src":"10.0.0.1","dst":"8.8.8.8","src_port":4001,"dst_port":53}
{"scenario":"leak","device":"d2","detectors":null,"identifier_type":"imei","form":"raw","carrier":"tls-payload","observable":false,"proto":6,"src":"10.0.0.2","dst":"1.2.3.4","src_port":4002,"dst_port":443}
{"scenario":"beacon","device":"d3","detectors":["beaconing"],"observable":true,"proto":6,"src":"10.0.0.3","dst":"5.6.7.8","src_port":4003,"dst_port":443}
`
	truth, err := ReadTruth(strings.NewReader(truthJSON))
	if err != nil {
		t.Fatal(err)
	}
	alerts := []*flowpb.Alert{
		{Detector: "identifier_leak", DeviceId: "d1"},
		{Detector: "identifier_leak", DeviceId: "d1"},
		{Detector: "identifier_leak", DeviceId: "d9"}, // false positive
	}
	ix := LeakIndex{}
	ix.Add(&flowpb.FlowRecord{SrcAddr: schema.AddrBytes(netip.MustParseAddr("10.0.0.1")), DstAddr: schema.AddrBytes(netip.MustParseAddr("1.2.3.4")),
		SrcPort: 4000, DstPort: 80, Protocol: 6,
		Enrichment: &flowpb.Enrichment{Matches: []*flowpb.IdentifierMatch{{DeviceId: "d1", IdentifierType: "imei"}}}})
	rep := Evaluate(truth, alerts, ix)
	got := map[string]Score{}
	for _, s := range rep.Detectors {
		got[s.Name] = s
	}
	if s := got["identifier_leak"]; s.TP != 1 || s.FP != 1 || s.FN != 0 || s.Precision != 0.5 || s.Recall != 1 {
		t.Errorf("identifier_leak: %+v", s)
	}
	if s := got["beaconing"]; s.TP != 0 || s.FN != 1 || s.Recall != 0 {
		t.Errorf("beaconing: %+v", s)
	}
	byType := map[string]Score{}
	for _, s := range rep.LeakByType {
		byType[s.Name] = s
	}
	if byType["imei"].Recall != 1 || byType["imsi"].Recall != 0 || rep.Unobserved != 1 {
		t.Errorf("by type %+v unobserved %d", byType, rep.Unobserved)
	}
	ths, err := ParseThresholds("recall:beaconing=0.95,leak-recall:*=0.99,precision:identifier_leak=0.4")
	if err != nil {
		t.Fatal(err)
	}
	fails := rep.Check(ths)
	if len(fails) != 4 { // beaconing recall; imsi type, md5 form, dns-label carrier
		t.Fatalf("fails: %q", fails)
	}
	if _, err := ParseThresholds("recall=1"); err == nil {
		t.Fatal("bad threshold accepted")
	}
}
