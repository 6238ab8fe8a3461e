// Package inventory loads the lab's device inventory (YAML), attributes flows
// to devices by MAC address, static IP or DHCP lease, and hands the devices'
// identifiers to enrich/ident for hashing. The file is polled and swapped
// atomically on change; a bad device entry is reported with its line number
// and skipped so one typo never takes the rest of the lab out of service.
package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
)

// Device is one inventory entry as attribution needs it. Identifiers are not
// kept here: they live in Snapshot.Identifiers until handed to the index
// builder, then the snapshot drops them.
type Device struct {
	ID        string
	Model     string
	Group     string
	OSVersion string
	MACs      [][6]byte
	IPs       []netip.Addr
	Line      int // line of the entry in the inventory file
}

// Problem is a bad inventory entry or value, with its line number.
// Warnings are loaded anyway (e.g. an IMEI failing its Luhn check: the
// device really sends that value); errors cause the device to be skipped.
type Problem struct {
	Line    int
	Device  string
	Warning bool
	Msg     string
}

func (p Problem) Error() string {
	kind := "skipped"
	if p.Warning {
		kind = "warning"
	}
	if p.Device != "" {
		return fmt.Sprintf("line %d: device %s: %s (%s)", p.Line, p.Device, p.Msg, kind)
	}
	return fmt.Sprintf("line %d: %s (%s)", p.Line, p.Msg, kind)
}

// Snapshot is one parsed inventory, immutable once published.
type Snapshot struct {
	Devices  []*Device
	Problems []Problem
	// Identifiers of all loaded devices, in plaintext. Inventory clears it
	// after passing it to its OnLoad callback.
	Identifiers []ident.Identifier

	byMAC map[[6]byte]*attr
	byIP  map[netip.Addr]*attr
}

// attr is what Attribute copies into a flowpb.Device, prepared once so
// attribution is a map probe plus string header copies (no allocation).
type attr struct {
	id, model, group, osVersion string
}

type rawDevice struct {
	ID          string              `yaml:"id"`
	Model       string              `yaml:"model"`
	Group       string              `yaml:"group"`
	OSVersion   string              `yaml:"os_version"`
	MACs        []string            `yaml:"macs"`
	IPs         []string            `yaml:"ips"`
	Identifiers map[string][]string `yaml:"identifiers"`
}

// ErrNoDevices is returned when the file has no devices key at all.
var ErrNoDevices = errors.New("no top-level devices list")

// Parse parses inventory YAML. It fails only if the document itself is
// unusable; bad entries end up in Snapshot.Problems.
func Parse(data []byte) (*Snapshot, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, fmt.Errorf("parse inventory: %w", err)
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("parse inventory: %w", ErrNoDevices)
	}
	var list *yaml.Node
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "devices" {
			list = m.Content[i+1]
		}
	}
	if list == nil || (list.Kind != yaml.SequenceNode && !(list.Kind == yaml.ScalarNode && list.Tag == "!!null")) {
		return nil, fmt.Errorf("parse inventory: %w", ErrNoDevices)
	}
	s := &Snapshot{byMAC: map[[6]byte]*attr{}, byIP: map[netip.Addr]*attr{}}
	seen := map[string]int{}
	for _, n := range list.Content {
		s.addDevice(n, seen)
	}
	sort.SliceStable(s.Problems, func(i, j int) bool { return s.Problems[i].Line < s.Problems[j].Line })
	return s, nil
}

func (s *Snapshot) addDevice(n *yaml.Node, seen map[string]int) {
	var rd rawDevice
	if err := n.Decode(&rd); err != nil {
		s.Problems = append(s.Problems, Problem{Line: n.Line, Msg: "malformed entry: " + firstLine(err.Error())})
		return
	}
	bad := func(line int, format string, args ...any) {
		s.Problems = append(s.Problems, Problem{Line: line, Device: rd.ID, Msg: fmt.Sprintf(format, args...)})
	}
	if rd.ID == "" {
		bad(n.Line, "id: required")
		return
	}
	if first, dup := seen[rd.ID]; dup {
		bad(n.Line, "id: duplicate of the entry at line %d", first)
		return
	}
	d := &Device{ID: rd.ID, Model: rd.Model, Group: rd.Group, OSVersion: rd.OSVersion, Line: n.Line}
	ok := true
	for i, v := range rd.MACs {
		mac, err := ident.ParseMAC(strings.TrimSpace(v))
		if err != nil {
			bad(seqLine(n, "macs", i), "macs[%d]: %v", i, err)
			ok = false
			continue
		}
		if o, taken := s.byMAC[mac]; taken {
			bad(seqLine(n, "macs", i), "macs[%d]: already assigned to device %s", i, o.id)
			ok = false
		}
		d.MACs = append(d.MACs, mac)
	}
	for i, v := range rd.IPs {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			bad(seqLine(n, "ips", i), "ips[%d]: not an IP address", i)
			ok = false
			continue
		}
		a = a.Unmap()
		if o, taken := s.byIP[a]; taken {
			bad(seqLine(n, "ips", i), "ips[%d]: already assigned to device %s", i, o.id)
			ok = false
		}
		d.IPs = append(d.IPs, a)
	}
	var ids []ident.Identifier
	idNode := child(n, "identifiers")
	for key, vals := range rd.Identifiers {
		t, known := ident.ParseType(key)
		kn := child(idNode, key)
		line := n.Line
		if kn != nil {
			line = kn.Line
		}
		if !known {
			bad(line, "identifiers.%s: unknown type (want one of %s)", key, strings.Join(ident.TypeNames(), ", "))
			ok = false
			continue
		}
		for i, v := range vals {
			vl := line
			if kn != nil && i < len(kn.Content) {
				vl = kn.Content[i].Line
			}
			// Messages never quote the value: identifiers stay out of logs.
			if err := ident.Validate(t, v); err != nil {
				if errors.Is(err, ident.ErrChecksum) {
					s.Problems = append(s.Problems, Problem{Line: vl, Device: rd.ID, Warning: true,
						Msg: fmt.Sprintf("identifiers.%s[%d]: %v; loaded anyway", key, i, err)})
				} else {
					bad(vl, "identifiers.%s[%d]: %v", key, i, err)
					ok = false
					continue
				}
			}
			ids = append(ids, ident.Identifier{Device: rd.ID, Type: t, Value: v})
		}
	}
	if !ok {
		return
	}
	seen[rd.ID] = n.Line
	a := &attr{id: d.ID, model: d.Model, group: d.Group, osVersion: d.OSVersion}
	for _, m := range d.MACs {
		s.byMAC[m] = a
	}
	for _, ip := range d.IPs {
		s.byIP[ip] = a
	}
	s.Devices = append(s.Devices, d)
	s.Identifiers = append(s.Identifiers, ids...)
}

// child returns the value node of key in mapping node n.
func child(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func seqLine(n *yaml.Node, key string, i int) int {
	if c := child(n, key); c != nil {
		if i < len(c.Content) {
			return c.Content[i].Line
		}
		return c.Line
	}
	return n.Line
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Load reads and parses the inventory file at path.
func Load(path string) (*Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
