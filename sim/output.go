package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Files names what WriteDir produced.
type Files struct {
	Inventory, Pcap, Truth, CityDB, ASNDB string
	Frames, TruthRows                     int
}

// WriteDir writes the corpus into dir: inventory.yaml, lab.pcap, truth.jsonl
// and a GeoIP City and ASN database placing every destination.
func (c *Corpus) WriteDir(dir string) (Files, error) {
	f := Files{
		Inventory: filepath.Join(dir, "inventory.yaml"),
		Pcap:      filepath.Join(dir, "lab.pcap"),
		Truth:     filepath.Join(dir, "truth.jsonl"),
		CityDB:    filepath.Join(dir, "sim-city.mmdb"),
		ASNDB:     filepath.Join(dir, "sim-asn.mmdb"),
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, fmt.Errorf("simulate: %w", err)
	}
	write := func(path string, fn func(io.Writer) error) error {
		out, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
		if err := fn(out); err != nil {
			out.Close()
			return fmt.Errorf("simulate: write %s: %w", path, err)
		}
		return out.Close()
	}
	if err := write(f.Inventory, c.Lab.WriteInventory); err != nil {
		return f, err
	}
	if err := write(f.Pcap, func(w io.Writer) (err error) { f.Frames, err = c.wire.writePcap(w); return err }); err != nil {
		return f, err
	}
	if err := write(f.Truth, c.WriteTruth); err != nil {
		return f, err
	}
	f.TruthRows = len(c.Truth)
	if err := write(f.CityDB, func(w io.Writer) error { return WriteGeoDB(w, false) }); err != nil {
		return f, err
	}
	if err := write(f.ASNDB, func(w io.Writer) error { return WriteGeoDB(w, true) }); err != nil {
		return f, err
	}
	return f, nil
}

// WriteTruth writes the ground truth as JSON lines.
func (c *Corpus) WriteTruth(w io.Writer) error {
	enc := json.NewEncoder(w)
	for i := range c.Truth {
		if err := enc.Encode(&c.Truth[i]); err != nil {
			return err
		}
	}
	return nil
}

// WriteGeoDB writes a MaxMind-format database placing each destination's /24
// (GeoIP2-City layout, or GeoLite2-ASN layout when asn is true).
func WriteGeoDB(w io.Writer, asn bool) error {
	typ := "GeoIP2-City"
	if asn {
		typ = "GeoLite2-ASN"
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: typ, RecordSize: 28, IPVersion: 6,
		Description: map[string]string{"en": "exfilwatch simulated lab destinations"}})
	if err != nil {
		return err
	}
	for _, d := range AllDestinations() {
		_, nw, err := net.ParseCIDR(d.IP.String() + "/24")
		if err != nil {
			return err
		}
		var rec mmdbtype.Map
		if asn {
			rec = mmdbtype.Map{
				"autonomous_system_number":       mmdbtype.Uint32(d.ASN),
				"autonomous_system_organization": mmdbtype.String(d.Org),
			}
		} else {
			rec = mmdbtype.Map{
				"country":  mmdbtype.Map{"iso_code": mmdbtype.String(d.Country), "names": mmdbtype.Map{"en": mmdbtype.String(d.Country)}},
				"city":     mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(d.City)}},
				"location": mmdbtype.Map{"latitude": mmdbtype.Float64(d.Lat), "longitude": mmdbtype.Float64(d.Lon)},
			}
		}
		if err := tree.Insert(nw, rec); err != nil {
			return err
		}
	}
	_, err = tree.WriteTo(w)
	return err
}
