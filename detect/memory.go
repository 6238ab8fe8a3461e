package detect

import "unsafe"

// Approximate per-entry overheads of Go maps (bucket slot, tophash, growth
// slack) used by StateBytes; exactness is not the point, trends are.
const (
	mapEntryOverhead = 16
	ptrSize          = int(unsafe.Sizeof(uintptr(0)))
)

// StateBytes returns an approximate count of bytes held by detector state:
// devices, their baselines, beacon pairs and DNS sets, model sets and open
// alerts. It walks the state (O(state)), so the stage calls it on Flush.
func (e *Engine) StateBytes() int64 {
	var n int
	n += e.devices.bytes()
	e.devices.each(func(_ uint64, d *device) { n += len(d.id) + deviceBytes(d) })
	for _, d := range e.anon {
		n += 16 + mapEntryOverhead + ptrSize + deviceBytes(d)
	}
	for m, s := range e.models {
		n += len(m) + mapEntryOverhead + int(unsafe.Sizeof(*s)) +
			len(s.countries)*(2+mapEntryOverhead) + len(s.asns)*(4+mapEntryOverhead)
	}
	for k, oa := range e.open {
		n += len(k) + mapEntryOverhead + int(unsafe.Sizeof(*oa)) + 512 // alert message, roughly
	}
	for k, v := range e.suffixCache {
		n += len(k) + len(v) + 32 + mapEntryOverhead
	}
	return int64(n)
}

func deviceBytes(d *device) int {
	n := int(unsafe.Sizeof(*d))
	n += d.volume.bytes() + d.pairs.bytes() + d.dns.bytes()
	d.volume.each(func(_ uint64, v *volState) {
		n += int(unsafe.Sizeof(*v)) + len(v.key.country) + len(v.key.org)
	})
	d.pairs.each(func(_ uint64, p *pair) { n += int(unsafe.Sizeof(*p)) + 8*cap(p.ring) })
	d.dns.each(func(_ uint64, s *dnsState) { n += int(unsafe.Sizeof(*s)) + len(s.domain) + 4*cap(s.set) })
	return n
}

// DeviceCount returns the number of devices with state.
func (e *Engine) DeviceCount() int { return e.devices.len() + len(e.anon) }
