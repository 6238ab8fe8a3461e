package sim

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Destination is a remote service the lab talks to.
type Destination struct {
	Host    string
	IP      netip.Addr
	Country string
	City    string
	Lat     float64
	Lon     float64
	ASN     uint32
	Org     string
}

// Destinations used by the simulation. The simulator writes a GeoIP database
// (WriteGeoDB) that places each at its country and ASN.
var (
	benignDests = []Destination{
		{"www.google.com", netip.MustParseAddr("142.250.74.36"), "US", "Mountain View", 37.4, -122.1, 15169, "Google LLC"},
		{"graph.facebook.com", netip.MustParseAddr("157.240.1.35"), "IE", "Dublin", 53.3, -6.2, 32934, "Meta Platforms"},
		{"api.weather-svc.net", netip.MustParseAddr("52.58.10.20"), "DE", "Frankfurt", 50.1, 8.7, 16509, "Amazon.com"},
		{"cdn.sg-content.com", netip.MustParseAddr("128.199.10.10"), "SG", "Singapore", 1.3, 103.8, 14061, "DigitalOcean"},
		{"update.nl-mirror.org", netip.MustParseAddr("185.10.10.10"), "NL", "Amsterdam", 52.4, 4.9, 60781, "LeaseWeb"},
	}
	resolver   = Destination{"dns.google", netip.MustParseAddr("8.8.8.8"), "US", "Mountain View", 37.4, -122.1, 15169, "Google LLC"}
	collector  = Destination{"api.adtrack-sg.com", netip.MustParseAddr("128.199.20.20"), "SG", "Singapore", 1.3, 103.8, 14061, "DigitalOcean"}
	beaconDest = Destination{"c2.beacon-nl.net", netip.MustParseAddr("185.10.10.99"), "NL", "Amsterdam", 52.4, 4.9, 60781, "LeaseWeb"}
	bulkDest   = Destination{"upload.cn-storage.com", netip.MustParseAddr("36.110.10.10"), "CN", "Beijing", 39.9, 116.4, 4134, "Chinanet"}
	newDest    = Destination{"api.ru-metrics.ru", netip.MustParseAddr("95.213.10.10"), "RU", "Moscow", 55.8, 37.6, 49505, "Selectel"}
	tunnelZone = "t.tunnel-nl.net"
)

// AllDestinations lists every destination (for the GeoIP database).
func AllDestinations() []Destination {
	return append(append([]Destination(nil), benignDests...), resolver, collector, beaconDest, bulkDest, newDest)
}

// Truth is one labelled event of the ground truth: what happened, on which
// flow, and which detectors should report it.
type Truth struct {
	Scenario       string   `json:"scenario"`
	Device         string   `json:"device"`
	Detectors      []string `json:"detectors"`
	IdentifierType string   `json:"identifier_type,omitempty"`
	Form           string   `json:"form,omitempty"`
	Carrier        string   `json:"carrier,omitempty"`
	Observable     bool     `json:"observable"`
	Cleartext      bool     `json:"cleartext"`
	Proto          uint8    `json:"proto"`
	Src            string   `json:"src"`
	Dst            string   `json:"dst"`
	SrcPort        uint16   `json:"src_port"`
	DstPort        uint16   `json:"dst_port"`
	TimeNs         int64    `json:"time_ns"`
}

// Options controls a simulation.
type Options struct {
	Devices    int
	Seed       uint64
	Start      time.Time
	Duration   time.Duration // record time the corpus spans (compressed into the pcap's timestamps)
	Learning   time.Duration // initial period in which every model meets every benign destination
	BenignOnly bool          // background traffic only: no scenario, empty ground truth
	Background int           // benign flows per device after learning
}

// DefaultOptions: 50 devices over 12 h of record time.
func DefaultOptions() Options {
	return Options{Devices: 50, Seed: 1, Start: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC),
		Duration: 12 * time.Hour, Learning: time.Hour, Background: 20}
}

// Corpus is a generated lab, its traffic and ground truth.
type Corpus struct {
	Lab    *Lab
	Truth  []Truth
	wire   *wire
	r      *rand.Rand
	opts   Options
	port   uint16
	dnsID  uint16
	Frames int
}

// Generate builds the corpus in memory.
func Generate(o Options) *Corpus {
	c := &Corpus{Lab: NewLab(o.Devices, o.Seed), r: rand.New(rand.NewPCG(o.Seed, 7)), opts: o, port: 40000}
	c.wire = newWire(c.Lab.GWMAC)
	c.background()
	if !o.BenignOnly && len(c.Lab.Devices) >= 8 {
		c.leaks()
		c.beacon(c.Lab.Devices[1])
		c.dnsTunnel(c.Lab.Devices[2])
		c.bulkUpload(c.Lab.Devices[5]) // india-retail
		c.firstSeen(c.Lab.Devices[7])
	}
	sort.SliceStable(c.Truth, func(i, j int) bool { return c.Truth[i].TimeNs < c.Truth[j].TimeNs })
	return c
}

func (c *Corpus) nextPort() uint16 {
	c.port++
	if c.port > 60000 {
		c.port = 40001
	}
	return c.port
}

func (c *Corpus) dev(d *Device) endpoint {
	return endpoint{mac: d.MAC, ip: d.IP, port: c.nextPort()}
}

func (c *Corpus) remote(dst Destination, port uint16) endpoint {
	return endpoint{mac: c.Lab.GWMAC, ip: dst.IP, port: port}
}

func (c *Corpus) randTime(from, to time.Duration) time.Time {
	return c.opts.Start.Add(from + time.Duration(c.r.Int64N(int64(to-from))))
}

func (c *Corpus) rtt() time.Duration { return time.Duration(20+c.r.IntN(80)) * time.Millisecond }

// lookup writes a DNS A query and answer for host, just before t.
func (c *Corpus) lookup(t time.Time, d *Device, host string, ans netip.Addr) {
	c.dnsID++
	q := dnsQuery(c.dnsID, host, 1)
	c.wire.udpExchange(t.Add(-30*time.Millisecond), c.dev(d), c.remote(resolver, 53), q, dnsAnswer(q, ans, 0), 10*time.Millisecond)
}

func (c *Corpus) tlsFlow(t time.Time, d *Device, dst Destination, sni string, upload, download int) (endpoint, endpoint) {
	ch := clientHello(sni, []string{"h2", "http/1.1"})
	req := append(ch, c.opaque(upload)...)
	src, srv := c.dev(d), c.remote(dst, 443)
	c.wire.tcpSession(t, src, srv, req, download, c.rtt())
	return src, srv
}

func (c *Corpus) opaque(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(c.r.IntN(256))
	}
	// Shape as TLS application-data records so it looks like TLS on the wire.
	for off := 0; off+5 < len(b); off += 5 + 1200 {
		l := min(1200, len(b)-off-5)
		b[off], b[off+1], b[off+2], b[off+3], b[off+4] = 23, 3, 3, byte(l>>8), byte(l)
	}
	return b
}

func (c *Corpus) httpRequest(method, host, target string, hdr [][2]string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Dalvik/2.1.0 (Linux; U; Android 13; Lab Build)\r\n", method, target, host)
	for _, h := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// background: every device meets every benign destination during learning,
// then random benign TLS, QUIC and HTTP flows at random (aperiodic) times.
func (c *Corpus) background() {
	o := c.opts
	for _, d := range c.Lab.Devices {
		for _, dst := range benignDests {
			t := c.randTime(0, o.Learning)
			c.lookup(t, d, dst.Host, dst.IP)
			c.tlsFlow(t, d, dst, dst.Host, 200+c.r.IntN(800), 2000+c.r.IntN(20000))
		}
		// The first-seen scenario's destinations are new to every model only
		// because nobody meets them in the background.
		for i := 0; i < o.Background; i++ {
			dst := benignDests[c.r.IntN(len(benignDests))]
			t := c.randTime(o.Learning, o.Duration)
			c.lookup(t, d, dst.Host, dst.IP)
			switch c.r.IntN(3) {
			case 0:
				c.tlsFlow(t, d, dst, dst.Host, 300+c.r.IntN(1500), 1000+c.r.IntN(50000))
			case 1:
				dcid := []byte(fmt.Sprintf("%08x", c.r.Uint32()))
				pkt := quicInitial(dcid, []byte("simscid0"), quicClientHello(dst.Host, []string{"h3"}))
				c.wire.udpExchange(t, c.dev(d), c.remote(dst, 443), pkt, c.opaque(1200), c.rtt())
			default:
				target := fmt.Sprintf("/static/%s.js?v=%d&session=%s", hexDigits(c.r, 8), c.r.IntN(100), hexDigits(c.r, 32))
				req := c.httpRequest("GET", dst.Host, target, [][2]string{{"Accept", "*/*"}, {"Cookie", "sid=" + hexDigits(c.r, 40)}}, nil)
				c.wire.tcpSession(t, c.dev(d), c.remote(dst, 80), req, 1000+c.r.IntN(8000), c.rtt())
			}
		}
	}
}

var httpCarriers = []string{"http-get-query", "http-post-form", "http-json", "http-json-gzip", "http-header"}
var nameCarriers = []string{"dns-label", "tls-sni", "quic-sni"}

// leaks: every (identifier type, form, carrier) the gateway can observe, each
// on its own flow from a leaking device to an ad collector, plus one leak per
// type hidden inside TLS, which no gateway can observe.
func (c *Corpus) leaks() {
	o := c.opts
	var leakers []*Device
	for i, d := range c.Lab.Devices {
		if i%3 == 0 {
			leakers = append(leakers, d)
		}
	}
	// Apps leak at launch and on events: each leaking device leaks in a few
	// short app sessions, not at random times all day (which would look
	// like a beacon).
	sessions := map[string][]time.Time{}
	for _, d := range leakers {
		for i := 0; i < 3; i++ {
			sessions[d.ID] = append(sessions[d.ID], c.randTime(o.Learning, o.Duration-time.Hour))
		}
	}
	leakTime := func(d *Device) time.Time {
		s := sessions[d.ID][c.r.IntN(3)]
		return s.Add(time.Duration(c.r.Int64N(int64(10 * time.Minute))))
	}
	k := 0
	for ti := range leakers[0].Identifiers() {
		for _, carrier := range append(append([]string{}, httpCarriers...), nameCarriers...) {
			// Rotate devices so every device's forms are exercised.
			d := leakers[k%len(leakers)]
			k++
			id := d.Identifiers()[ti]
			for _, f := range Forms(id.Type, id.Value) {
				if strings.HasPrefix(carrier, "dns") || strings.HasSuffix(carrier, "sni") {
					if !f.DNSSafe {
						continue
					}
				}
				c.leakFlow(leakTime(d), d, id.Type, f, carrier)
			}
		}
	}
	for ti, id := range leakers[1].Identifiers() {
		if ti > 2 {
			break
		}
		d := leakers[1]
		t := c.randTime(o.Learning, o.Duration)
		src, srv := c.tlsFlow(t, d, collector, collector.Host, 900, 3000)
		c.Truth = append(c.Truth, c.truth("leak", d, nil, src, srv, 6, t, func(tr *Truth) {
			tr.IdentifierType, tr.Form, tr.Carrier, tr.Observable = id.Type, "raw", "tls-payload", false
		}))
	}
}

func (c *Corpus) truth(scn string, d *Device, det []string, src, dst endpoint, proto uint8, t time.Time, f func(*Truth)) Truth {
	tr := Truth{Scenario: scn, Device: d.ID, Detectors: det, Observable: true, Proto: proto,
		Src: src.ip.String(), Dst: dst.ip.String(), SrcPort: src.port, DstPort: dst.port, TimeNs: t.UnixNano()}
	if f != nil {
		f(&tr)
	}
	return tr
}

func (c *Corpus) leakFlow(t time.Time, d *Device, typ string, f Form, carrier string) {
	host := collector.Host
	var src, srv endpoint
	var proto uint8 = 6
	// The identifier itself travels in clear in every observable carrier:
	// HTTP without TLS, DNS names, and the SNI of TLS and QUIC.
	cleartext := true
	switch carrier {
	case "http-get-query":
		target := "/v1/collect?app=com.example.game&uid=" + url.QueryEscape(f.Value) + "&ts=" + fmt.Sprint(t.Unix())
		src, srv = c.dev(d), c.remote(collector, 80)
		c.wire.tcpSession(t, src, srv, c.httpRequest("GET", host, target, nil, nil), 300, c.rtt())
	case "http-post-form":
		body := []byte("event=launch&dev=" + url.QueryEscape(f.Value) + "&v=2")
		src, srv = c.dev(d), c.remote(collector, 80)
		c.wire.tcpSession(t, src, srv, c.httpRequest("POST", host, "/v1/report", [][2]string{{"Content-Type", "application/x-www-form-urlencoded"}}, body), 300, c.rtt())
	case "http-json", "http-json-gzip":
		js, _ := json.Marshal(map[string]any{"event": "open", "device": map[string]string{"id": f.Value, "os": "android"}, "seq": c.r.IntN(1000)})
		hdr := [][2]string{{"Content-Type", "application/json"}}
		if carrier == "http-json-gzip" {
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(js)
			zw.Close()
			js = gz.Bytes()
			hdr = append(hdr, [2]string{"Content-Encoding", "gzip"})
		}
		src, srv = c.dev(d), c.remote(collector, 80)
		c.wire.tcpSession(t, src, srv, c.httpRequest("POST", host, "/v2/events", hdr, js), 300, c.rtt())
	case "http-header":
		src, srv = c.dev(d), c.remote(collector, 80)
		c.wire.tcpSession(t, src, srv, c.httpRequest("GET", host, "/v1/ping", [][2]string{{"X-Device-Id", f.Value}}, nil), 300, c.rtt())
	case "dns-label":
		name := f.Value + ".id." + host
		c.dnsID++
		q := dnsQuery(c.dnsID, name, 1)
		src, srv = c.dev(d), c.remote(resolver, 53)
		proto = 17
		c.wire.udpExchange(t, src, srv, q, dnsAnswer(q, collector.IP, 0), 10*time.Millisecond)
	case "tls-sni":
		src, srv = c.tlsFlow(t, d, collector, f.Value+"."+host, 400, 2000)
	case "quic-sni":
		pkt := quicInitial([]byte(fmt.Sprintf("%08x", c.r.Uint32())), []byte("simscid0"), quicClientHello(f.Value+"."+host, []string{"h3"}))
		src, srv = c.dev(d), c.remote(collector, 443)
		proto = 17
		c.wire.udpExchange(t, src, srv, pkt, c.opaque(1200), c.rtt())
	}
	c.Truth = append(c.Truth, c.truth("leak", d, []string{"identifier_leak", "identifiers_over_cleartext"}, src, srv, proto, t, func(tr *Truth) {
		tr.IdentifierType, tr.Form, tr.Carrier, tr.Cleartext = typ, f.Name, carrier, cleartext
	}))
}

// beacon: a TLS check-in every 5 minutes with 3% jitter and near-constant size.
func (c *Corpus) beacon(d *Device) {
	o := c.opts
	first := o.Start.Add(o.Learning)
	var src, srv endpoint
	for t := first; t.Before(o.Start.Add(o.Duration)); {
		src, srv = c.tlsFlow(t, d, beaconDest, beaconDest.Host, 480+c.r.IntN(8), 900+c.r.IntN(8))
		jitter := time.Duration((c.r.Float64()*2 - 1) * 0.03 * float64(5*time.Minute))
		t = t.Add(5*time.Minute + jitter)
	}
	c.Truth = append(c.Truth, c.truth("beacon", d, []string{"beaconing"}, src, srv, 6, first, nil))
}

// dnsTunnel: 400 TXT queries with random base32 subdomains in one zone.
func (c *Corpus) dnsTunnel(d *Device) {
	o := c.opts
	const b32 = "abcdefghijklmnopqrstuvwxyz234567"
	start := o.Start.Add(o.Learning + time.Hour)
	var src, srv endpoint
	for i := 0; i < 400; i++ {
		lbl := make([]byte, 50)
		for j := range lbl {
			lbl[j] = b32[c.r.IntN(32)]
		}
		c.dnsID++
		t := start.Add(time.Duration(i) * 9 * time.Second)
		q := dnsQuery(c.dnsID, string(lbl)+"."+tunnelZone, 16)
		src, srv = c.dev(d), c.remote(resolver, 53)
		c.wire.udpExchange(t, src, srv, q, dnsAnswer(q, netip.Addr{}, 0), 15*time.Millisecond)
	}
	c.Truth = append(c.Truth, c.truth("dns_tunnel", d, []string{"dns_tunnel"}, src, srv, 17, start, nil))
}

// bulkUpload: small hourly uploads to a denied country, then a large one.
func (c *Corpus) bulkUpload(d *Device) {
	o := c.opts
	var src, srv endpoint
	var t time.Time
	// Starts an hour after the learning phase: a model's own learning period
	// begins with its first flow, which may come late in the phase.
	for h := 0; h < 8; h++ {
		t = o.Start.Add(o.Learning + time.Duration(h+1)*time.Hour + time.Duration(c.r.IntN(600))*time.Second)
		c.lookup(t, d, bulkDest.Host, bulkDest.IP)
		c.tlsFlow(t, d, bulkDest, bulkDest.Host, 20_000+c.r.IntN(2000), 4000)
	}
	t = t.Add(time.Hour)
	src, srv = c.tlsFlow(t, d, bulkDest, bulkDest.Host, 8_000_000, 6000)
	c.Truth = append(c.Truth, c.truth("bulk_upload", d, []string{"destination_policy", "upload_volume", "first_seen_destination"}, src, srv, 6, t, nil))
}

// firstSeen: one device contacts a country and ASN its model never met.
func (c *Corpus) firstSeen(d *Device) {
	t := c.opts.Start.Add(c.opts.Learning + 5*time.Hour)
	c.lookup(t, d, newDest.Host, newDest.IP)
	src, srv := c.tlsFlow(t, d, newDest, newDest.Host, 700, 3000)
	c.Truth = append(c.Truth, c.truth("first_seen", d, []string{"first_seen_destination"}, src, srv, 6, t, nil))
}
