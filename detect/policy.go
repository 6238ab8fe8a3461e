package detect

import (
	"fmt"
	"strconv"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// compiledPolicy is a GroupPolicy as sets for per-record lookups.
type compiledPolicy struct {
	denyCC, allowCC   map[string]struct{}
	denyASN, allowASN map[uint32]struct{}
}

func compilePolicy(p GroupPolicy) *compiledPolicy {
	c := &compiledPolicy{}
	set := func(l []string) map[string]struct{} {
		if len(l) == 0 {
			return nil
		}
		m := make(map[string]struct{}, len(l))
		for _, s := range l {
			m[s] = struct{}{}
		}
		return m
	}
	asns := func(l []uint32) map[uint32]struct{} {
		if len(l) == 0 {
			return nil
		}
		m := make(map[uint32]struct{}, len(l))
		for _, a := range l {
			m[a] = struct{}{}
		}
		return m
	}
	c.denyCC, c.allowCC = set(p.DenyCountries), set(p.AllowCountries)
	c.denyASN, c.allowASN = asns(p.DenyASNs), asns(p.AllowASNs)
	return c
}

// Violation kinds returned by violates; also the rule part of dedup keys.
const (
	ruleDenyCountry  = "deny_country"
	ruleAllowCountry = "not_allowed_country"
	ruleDenyASN      = "deny_asn"
	ruleAllowASN     = "not_allowed_asn"
)

// violates returns the rule a record's public destination breaks for the
// device's group ("" if none). Unknown countries (empty) and ASNs (0) are
// never violations: the policy only judges what GeoIP could place.
func (e *Engine) violates(d *device, rec *flowpb.FlowRecord) string {
	if len(e.policies) == 0 {
		return ""
	}
	p := e.policies[d.group]
	if p == nil {
		p = e.policies["*"]
		if p == nil {
			return ""
		}
	}
	g := rec.GetEnrichment().GetDstGeo()
	if !isRemote(g.GetAddrClass()) {
		return ""
	}
	if cc := g.GetCountry(); cc != "" {
		if _, ok := p.denyCC[cc]; ok {
			return ruleDenyCountry
		}
		if p.allowCC != nil {
			if _, ok := p.allowCC[cc]; !ok {
				return ruleAllowCountry
			}
		}
	}
	if asn := g.GetAsn(); asn != 0 {
		if _, ok := p.denyASN[asn]; ok {
			return ruleDenyASN
		}
		if p.allowASN != nil {
			if _, ok := p.allowASN[asn]; !ok {
				return ruleAllowASN
			}
		}
	}
	return ""
}

// destinationPolicy raises one alert per device, violated destination
// (country or ASN, whichever the rule is about) and policy window; the alert's
// count and bytes total the flows of that window (final figures in the update
// emitted when the window closes).
func (e *Engine) destinationPolicy(d *device, rec *flowpb.FlowRecord, ts int64, emit func(*flowpb.Alert)) {
	rule := e.violates(d, rec)
	if rule == "" {
		return
	}
	g := rec.Enrichment.DstGeo
	e.key(detPolicy, d)
	e.keyPart(rule)
	var what string
	if rule == ruleDenyCountry || rule == ruleAllowCountry {
		e.keyPart(g.Country)
		what = "country " + g.Country
	} else {
		e.keyUint("AS", uint64(g.Asn))
		what = "AS" + strconv.FormatUint(uint64(g.Asn), 10)
	}
	if e.bump(detPolicy, ts, rec, rec.BytesOut, flowpb.Severity_SEVERITY_HIGH, 0, emit) {
		return
	}
	ws := windowStart(ts, e.cfg.Policy.Window)
	dst := destination(rec)
	group := d.group
	if e.policies[group] == nil {
		group = "*"
	}
	evidence := []*flowpb.Evidence{
		ev("rule", rule),
		ev("policy_group", group),
		ev("country", g.Country),
		ev("asn", strconv.FormatUint(uint64(g.Asn), 10)),
		ev("org", g.Org),
		ev("window", e.cfg.Policy.Window.String()),
	}
	summary := fmt.Sprintf("device group %q talked to %s (%s), forbidden by %s", d.group, what, destLabel(dst), rule)
	e.raise(detPolicy, d, ts, ws, ws+int64(e.cfg.Policy.Window), dst, rec, rec.BytesOut, flowpb.Severity_SEVERITY_HIGH, 0, summary, evidence, emit)
}
