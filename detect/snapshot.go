package detect

import (
	"bufio"
	"encoding/gob"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/exfilwatch/exfilwatch/schema/flowpb"
	"github.com/zeebo/xxh3"
	"google.golang.org/protobuf/proto"
)

// snapshotMagic starts every snapshot; the number is the format version.
const snapshotMagic = "exfilwatch-detect-snapshot 1\n"

// The snap* types mirror the engine state with exported fields for gob, so
// the in-memory layout can change without breaking the file format.
type snapshot struct {
	Watermark, DataMin int64
	// NextSweep and each device's RefreshAt make a restored engine sweep and
	// re-read attributes at the same records as one that never stopped (0 in
	// older snapshots: derived from the watermark, as before).
	NextSweep int64
	Devices   []snapDevice
	Models    []snapModel
	Open      []snapAlert
}

type snapDevice struct {
	ID, Model, Group    string
	Addr                [16]byte
	LastSeen, RefreshAt int64
	Volume              []snapVol
	Pairs               []snapPair
	DNS                 []snapDNS
}

type snapVol struct {
	Country, Org          string
	WinStart, LastSeen    int64
	Bytes                 uint64
	Mean, Variance, Limit float64
	Windows               int
}

type snapPair struct {
	Addr                [16]byte
	Host                string
	TS, Sizes           []uint32
	Head                int
	Bins, BinDur        [24]uint32
	BinIdx              [24]int32
	LastTs              uint32
	SumConns, SumSecs   uint32
	LastSeen, NextScore int64
	Dirty               bool
	FlowFirst, FlowEnd  int64
	DstAddr             [16]byte
	Port, ASN           uint32
	Country, Org        string
}

type snapDNS struct {
	Domain                                      string
	WinStart, LastSeen                          int64
	Set                                         []uint32
	Distinct, Chars, Queries, Encoded, MaxLabel int
}

type snapModel struct {
	Model     string
	Start     int64
	Countries []uint16
	ASNs      []uint32
}

type snapAlert struct {
	Key     string
	Alert   []byte // protobuf
	Det     uint8
	CloseAt int64
	Dirty   bool
}

// Snapshot writes all detector state to w: device baselines, beacon pairs,
// DNS windows, model destination sets and open (suppressing) alerts. Only the
// Prometheus counters and configuration are not included.
func (e *Engine) Snapshot(w io.Writer) error {
	s := snapshot{Watermark: e.watermark, DataMin: e.dataMin, NextSweep: e.nextSweep}
	e.devices.each(func(_ uint64, d *device) { s.Devices = append(s.Devices, snapDev(d)) })
	for _, d := range e.anon {
		s.Devices = append(s.Devices, snapDev(d))
	}
	for name, m := range e.models {
		sm := snapModel{Model: name, Start: m.start}
		for c := range m.countries {
			sm.Countries = append(sm.Countries, c)
		}
		for a := range m.asns {
			sm.ASNs = append(sm.ASNs, a)
		}
		slices.Sort(sm.Countries)
		slices.Sort(sm.ASNs)
		s.Models = append(s.Models, sm)
	}
	for k, oa := range e.open {
		b, err := proto.Marshal(oa.alert)
		if err != nil {
			return fmt.Errorf("detect: snapshot alert %s: %w", k, err)
		}
		s.Open = append(s.Open, snapAlert{Key: k, Alert: b, Det: uint8(oa.det), CloseAt: oa.closeAt, Dirty: oa.dirty})
	}
	// Deterministic output for identical state.
	sort.Slice(s.Devices, func(i, j int) bool {
		if s.Devices[i].ID != s.Devices[j].ID {
			return s.Devices[i].ID < s.Devices[j].ID
		}
		return string(s.Devices[i].Addr[:]) < string(s.Devices[j].Addr[:])
	})
	sort.Slice(s.Models, func(i, j int) bool { return s.Models[i].Model < s.Models[j].Model })
	sort.Slice(s.Open, func(i, j int) bool { return s.Open[i].Key < s.Open[j].Key })

	bw := bufio.NewWriter(w)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("detect: write snapshot: %w", err)
	}
	if err := gob.NewEncoder(bw).Encode(&s); err != nil {
		return fmt.Errorf("detect: encode snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("detect: write snapshot: %w", err)
	}
	return nil
}

func snapDev(d *device) snapDevice {
	sd := snapDevice{ID: d.id, Model: d.model, Group: d.group, Addr: d.addr, LastSeen: d.lastSeen, RefreshAt: d.refreshAt}
	d.volume.each(func(_ uint64, v *volState) {
		sd.Volume = append(sd.Volume, snapVol{Country: v.key.country, Org: v.key.org, WinStart: v.winStart, LastSeen: v.lastSeen,
			Bytes: v.bytes, Mean: v.mean, Variance: v.variance, Limit: v.limit, Windows: v.windows})
	})
	d.pairs.each(func(_ uint64, p *pair) {
		k := p.key()
		sp := snapPair{Addr: k.addr, Host: k.host, Head: p.head, LastTs: p.lastTs, SumConns: p.sumConns, SumSecs: p.sumSecs, LastSeen: p.lastSeen,
			NextScore: p.nextScore, Dirty: p.dirty, FlowFirst: p.flowFirst, FlowEnd: p.flowEnd,
			DstAddr: p.addr, Port: p.port, ASN: p.asn, Country: p.country, Org: p.org}
		for _, c := range p.ring {
			sp.TS = append(sp.TS, c.ts)
			sp.Sizes = append(sp.Sizes, c.size)
		}
		for i, s := range p.slots {
			sp.BinIdx[i], sp.Bins[i], sp.BinDur[i] = s.idx, s.conns, s.secs
		}
		sd.Pairs = append(sd.Pairs, sp)
	})
	d.dns.each(func(_ uint64, s *dnsState) {
		sd.DNS = append(sd.DNS, snapDNS{Domain: s.domain, WinStart: s.winStart, LastSeen: s.lastSeen, Set: s.set,
			Distinct: s.distinct, Chars: s.chars, Queries: s.queries, Encoded: s.encoded, MaxLabel: s.maxLabel})
	})
	sort.Slice(sd.Volume, func(i, j int) bool {
		a, b := sd.Volume[i], sd.Volume[j]
		return a.Country < b.Country || (a.Country == b.Country && a.Org < b.Org)
	})
	sort.Slice(sd.Pairs, func(i, j int) bool {
		a, b := sd.Pairs[i], sd.Pairs[j]
		return a.Host < b.Host || (a.Host == b.Host && string(a.Addr[:]) < string(b.Addr[:]))
	})
	sort.Slice(sd.DNS, func(i, j int) bool { return sd.DNS[i].Domain < sd.DNS[j].Domain })
	return sd
}

// Restore replaces the engine's state with a snapshot written by Snapshot.
// State that does not fit the current configuration (more timestamps than
// max_timestamps, a DNS set larger than max_tracked allows) is reset.
func (e *Engine) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return fmt.Errorf("detect: read snapshot header: %w", err)
	}
	if string(magic) != snapshotMagic {
		return fmt.Errorf("detect: not a detect snapshot (header %q)", magic)
	}
	var s snapshot
	if err := gob.NewDecoder(br).Decode(&s); err != nil {
		return fmt.Errorf("detect: decode snapshot: %w", err)
	}
	var devices table[device]
	anon := map[[16]byte]*device{}
	for _, sd := range s.Devices {
		d := &device{id: sd.ID, model: sd.Model, group: sd.Group, addr: sd.Addr, lastSeen: sd.LastSeen, refreshAt: sd.RefreshAt}
		for _, v := range sd.Volume {
			k := volKey{v.Country, v.Org}
			d.volume.put(k.hash(), &volState{key: k, winStart: v.WinStart, lastSeen: v.LastSeen, bytes: v.Bytes,
				mean: v.Mean, variance: v.Variance, limit: v.Limit, windows: v.Windows})
		}
		for _, sp := range sd.Pairs {
			p := &pair{head: sp.Head,
				lastTs: sp.LastTs, sumConns: sp.SumConns, sumSecs: sp.SumSecs, lastSeen: sp.LastSeen, nextScore: sp.NextScore, dirty: sp.Dirty,
				flowFirst: sp.FlowFirst, flowEnd: sp.FlowEnd, addr: sp.DstAddr, port: sp.Port, host: sp.Host,
				asn: sp.ASN, country: sp.Country, org: sp.Org}
			for i := range p.slots {
				p.slots[i] = binSlot{idx: sp.BinIdx[i], conns: sp.Bins[i], secs: sp.BinDur[i]}
			}
			if len(sp.TS) != len(sp.Sizes) || len(sp.TS) > e.cfg.Beacon.MaxTimestamps || p.head < 0 || p.head >= max(len(sp.TS), 1) {
				p.head = 0
			} else if len(sp.TS) > 0 {
				p.ring = make([]conn, len(sp.TS), cap(sp.TS))
				for i := range sp.TS {
					p.ring[i] = conn{sp.TS[i], sp.Sizes[i]}
				}
			}
			d.pairs.put(pairKey{addr: sp.Addr, host: sp.Host}.hash(), p)
		}
		for _, sn := range sd.DNS {
			st := &dnsState{domain: sn.Domain, winStart: sn.WinStart, lastSeen: sn.LastSeen, set: sn.Set, distinct: sn.Distinct,
				chars: sn.Chars, queries: sn.Queries, encoded: sn.Encoded, maxLabel: sn.MaxLabel}
			if n := len(st.set); n&(n-1) != 0 || st.distinct > e.cfg.DNS.MaxTracked || 2*st.distinct > n {
				st.reset(st.winStart)
				st.set = nil
			}
			d.dns.put(xxh3.HashString(sn.Domain), st)
		}
		if d.id != "" {
			devices.put(hashID(d.id), d)
		} else {
			anon[d.addr] = d
		}
	}
	models := map[string]*modelState{}
	for _, sm := range s.Models {
		m := &modelState{start: sm.Start, countries: make(map[uint16]struct{}, len(sm.Countries)), asns: make(map[uint32]struct{}, len(sm.ASNs))}
		for _, c := range sm.Countries {
			m.countries[c] = struct{}{}
		}
		for _, a := range sm.ASNs {
			m.asns[a] = struct{}{}
		}
		models[sm.Model] = m
	}
	open := map[string]*openAlert{}
	for _, sa := range s.Open {
		a := &flowpb.Alert{}
		if err := proto.Unmarshal(sa.Alert, a); err != nil {
			return fmt.Errorf("detect: snapshot alert %s: %w", sa.Key, err)
		}
		if sa.Det >= uint8(numDetectors) {
			return fmt.Errorf("detect: snapshot alert %s: unknown detector %d", sa.Key, sa.Det)
		}
		open[sa.Key] = &openAlert{alert: a, det: detector(sa.Det), closeAt: sa.CloseAt, dirty: sa.Dirty}
	}
	e.devices, e.anon, e.models, e.open = devices, anon, models, open
	e.recountPrevalence()
	e.watermark, e.dataMin = s.Watermark, s.DataMin
	e.nextSweep = s.NextSweep
	if e.nextSweep == 0 {
		e.nextSweep = e.watermark + sweepEvery
	}
	return nil
}
