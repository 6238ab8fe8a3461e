package ident_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
)

func TestMatchStream(t *testing.T) {
	idx := buildLab(t)
	body := `{"imei":"865123456789018"}`
	req := "POST /v1/collect?m=A4%3A50%3A46%3A12%3A34%3A56 HTTP/1.1\r\nHost: api.example.net\r\n" +
		"X-Aaid: 38400000-8cf0-11bd-b23e-10b96e40000d\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	var out bytes.Buffer
	if err := ident.MatchStream(&out, idx, strings.NewReader(req)); err != nil {
		t.Fatal(err)
	}
	type m struct {
		Device, Type, Form, Field string
	}
	var got []m
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var j map[string]any
		if err := json.Unmarshal(sc.Bytes(), &j); err != nil {
			t.Fatalf("not JSON: %s", sc.Text())
		}
		got = append(got, m{j["device_id"].(string), j["identifier_type"].(string), j["form"].(string), j["field"].(string)})
		if strings.Contains(sc.Text(), "865123456789018") || strings.Contains(sc.Text(), "38400000") {
			t.Errorf("output carries an identifier: %s", sc.Text())
		}
	}
	want := []m{
		{"lab-0007", "wifi_mac", "colon-upper", "http.path"},
		{"lab-0007", "advertising_id", "lower", "http.header.x-aaid"},
		{"lab-0007", "imei", "digits", "http.body"},
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("missing %v in %v", w, got)
		}
	}

	out.Reset()
	if err := ident.MatchStream(&out, idx, strings.NewReader("sms from +447700900123: hi")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"identifier_type":"canary","form":"e164","field":"input"`) {
		t.Errorf("text input: %s", out.String())
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestConfigValidate(t *testing.T) {
	c := ident.DefaultConfig()
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "secret: ") {
		t.Errorf("no secret: %v", err)
	}
	c.Secret = "short"
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "secret: ") {
		t.Errorf("short secret: %v", err)
	}
	c.Secret = testSecret
	c.MaxLayers = 9
	c.AccessPoints = []ident.AccessPoint{{Name: "ap", BSSID: "ff:ff:ff:ff:ff:ff"}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "max_layers: ") || !strings.Contains(err.Error(), "access_points[0].bssid: ") {
		t.Errorf("bad values: %v", err)
	}
	c = ident.DefaultConfig()
	c.Secret = testSecret
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}
