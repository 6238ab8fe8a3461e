package inventory

import (
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// TestExampleInventory: the shipped example loads cleanly and its
// identifiers build an index that finds the Redmi 1S leak pattern (IMEI and
// phone number to a vendor host, F-Secure 2014).
func TestExampleInventory(t *testing.T) {
	s, err := Load("../../deploy/inventory.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Problems) != 0 || len(s.Devices) != 2 {
		t.Fatalf("devices %d, problems %v", len(s.Devices), s.Problems)
	}
	cfg := ident.DefaultConfig()
	cfg.Secret = "example-secret-0123456789"
	idx, errs, err := ident.BuildIndex(cfg, s.Identifiers)
	if err != nil || len(errs) != 0 {
		t.Fatal(err, errs)
	}
	rec := &flowpb.FlowRecord{Http: &flowpb.HTTPInfo{Method: "POST", Host: "api.account.xiaomi.com",
		Path: "/pass/v3/register?imei=865123456789019&phone=919812345678&contact=%2B919800000007"}}
	idx.NewScanner().ScanRecord(rec)
	got := map[string]bool{}
	for _, m := range rec.Enrichment.Matches {
		if m.DeviceId != "lab-0007" {
			t.Errorf("wrong device %s", m.DeviceId)
		}
		got[m.IdentifierType+"/"+m.Form] = true
	}
	for _, w := range []string{"imei/digits", "msisdn/e164-noplus", "canary/e164"} {
		if !got[w] {
			t.Errorf("missing %s in %v", w, got)
		}
	}
}
