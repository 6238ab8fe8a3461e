package detect

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"golang.org/x/net/publicsuffix"
)

// identifierLeak raises one alert per identifier match, deduplicated per
// device, destination, identifier type and owning device: an app that sends
// the IMEI in five encodings to one host is one incident for an analyst, not
// five. Further forms and repeats update the open alert's count (and its
// severity, when a worse form such as cleartext raw shows up).
//
// Severity starts from the identifier type's base (type_severity) and moves:
// one level down for one-way hashes (md5/sha*/hmac forms: the receiver
// must already know the value to link it), one level up when the flow was
// cleartext, one up when the destination violates the group's policy.
func (e *Engine) identifierLeak(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	denied := e.violates(d, rec) != ""
	for _, m := range rec.Enrichment.Matches {
		sev, ok := e.typeSev[m.IdentifierType]
		if !ok {
			sev = e.defSev
		}
		hashed := isHashForm(m.Form)
		clear := matchCleartext(rec, m)
		if hashed {
			sev--
		}
		if clear {
			sev++
		}
		if denied {
			sev++
		}
		sev = clampSev(sev)
		e.key(detIdentifierLeak, d)
		e.appendDest(rec)
		e.keyPart(m.IdentifierType)
		e.keyPart(m.DeviceId)
		score := float64(sev) / float64(flowpb.Severity_SEVERITY_CRITICAL)
		if e.bump(detIdentifierLeak, ts, rec, 0, sev, score, emit) {
			continue
		}
		dst := destination(rec)
		transport := "tls"
		if clear {
			transport = "cleartext"
		}
		evidence := []*flowpb.Evidence{
			ev("identifier_type", m.IdentifierType),
			ev("form", m.Form),
			ev("field", m.Field),
			ev("owner_device", m.DeviceId),
			ev("layers", strconv.FormatUint(uint64(m.Layers), 10)),
			ev("transport", transport),
		}
		if denied {
			evidence = append(evidence, ev("policy", "denied destination"))
		}
		summary := fmt.Sprintf("%s of %s (%s) sent in %s to %s", m.IdentifierType, m.DeviceId, m.Form, m.Field, destLabel(dst))
		e.raise(detIdentifierLeak, d, ts, ts, ts+int64(e.cfg.Suppression), dst, rec, rec.BytesOut, sev, score, summary, evidence, emit)
	}
}

// cleartextLeak is its own detector (not only a severity bump) so that
// cleartext identifier leaks can be enabled, routed and counted on their own:
// they are visible to every on-path observer, not just the receiver. One
// alert per device, destination and identifier type per suppression window.
func (e *Engine) cleartextLeak(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	for _, m := range rec.Enrichment.Matches {
		if !matchCleartext(rec, m) {
			continue
		}
		sev, ok := e.typeSev[m.IdentifierType]
		if !ok {
			sev = e.defSev
		}
		sev = clampSev(sev + 1)
		e.key(detCleartext, d)
		e.appendDest(rec)
		e.keyPart(m.IdentifierType)
		if e.bump(detCleartext, ts, rec, 0, sev, 0, emit) {
			continue
		}
		dst := destination(rec)
		evidence := []*flowpb.Evidence{
			ev("identifier_type", m.IdentifierType),
			ev("form", m.Form),
			ev("field", m.Field),
			ev("owner_device", m.DeviceId),
		}
		summary := fmt.Sprintf("%s of %s crossed the network in cleartext (%s) to %s", m.IdentifierType, m.DeviceId, m.Field, destLabel(dst))
		e.raise(detCleartext, d, ts, ts, ts+int64(e.cfg.Suppression), dst, rec, rec.BytesOut, sev, 0, summary, evidence, emit)
	}
}

// matchCleartext reports whether the identifier was readable on the wire:
// enrich says the flow had no TLS/QUIC, or the match sits in a field that is
// never encrypted (DNS queries, the TLS SNI).
func matchCleartext(rec *flowpb.FlowRecord, m *flowpb.IdentifierMatch) bool {
	if m.Cleartext || rec.Enrichment.Cleartext {
		return true
	}
	return strings.HasPrefix(m.Field, "dns.") || m.Field == "tls.sni"
}

// isHashForm reports whether a form names a one-way digest. Forms compose
// left to right ("digits/sha1-hex-upper"), so the last step decides.
func isHashForm(form string) bool {
	if i := strings.LastIndexByte(form, '/'); i >= 0 {
		form = form[i+1:]
	}
	return strings.HasPrefix(form, "md5") || strings.HasPrefix(form, "sha") || strings.HasPrefix(form, "hmac")
}

func clampSev(s flowpb.Severity) flowpb.Severity {
	return min(max(s, flowpb.Severity_SEVERITY_LOW), flowpb.Severity_SEVERITY_CRITICAL)
}

// appendDest appends the destination part of a dedup key: the registrable
// domain of the host name when there is one, else the ASN, else the address.
func (e *Engine) appendDest(rec *flowpb.FlowRecord) {
	if h := host(rec); h != "" {
		e.keyPart(e.registrable(h))
		return
	}
	if asn := rec.GetEnrichment().GetDstGeo().GetAsn(); asn != 0 {
		e.keyUint("AS", uint64(asn))
		return
	}
	e.keyBuf = append(e.keyBuf, '|')
	e.keyBuf = schemaAddr(rec.DstAddr).AppendTo(e.keyBuf)
}

// registrable returns the eTLD+1 of name, or name itself when it has none
// (an IP literal, a bare suffix, a malformed name). It does not allocate for
// well-formed names.
func registrable(name string) string {
	if ownKey(name) {
		return name
	}
	r, err := publicsuffix.EffectiveTLDPlusOne(name)
	if err != nil {
		return name
	}
	return r
}

// ownKey reports names that are their own registrable key: malformed names,
// single labels, IP literals (no TLD ends in a digit) and IPv6 addresses.
func ownKey(name string) bool {
	if len(name) == 0 || name[0] == '.' || name[len(name)-1] == '.' || strings.Contains(name, "..") || strings.IndexByte(name, '.') < 0 {
		return true
	}
	c := name[len(name)-1]
	return (c >= '0' && c <= '9') || strings.IndexByte(name, ':') >= 0
}

func destLabel(d *flowpb.Destination) string {
	s := d.Host
	if s == "" {
		s = addrString(d.Addr)
	}
	if d.Country != "" || d.Asn != 0 {
		s += fmt.Sprintf(" (%s AS%d %s)", d.Country, d.Asn, d.Org)
	}
	return s
}
