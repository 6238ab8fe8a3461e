// Package sim simulates a phone test lab: devices with realistic identities,
// their benign traffic and labelled exfiltration scenarios, written as real
// packets (pcap) plus a ground-truth file. It knows nothing of how exfilwatch
// detects: forms and encodings are computed here independently, so the
// pipeline is checked against an outside view of what a leak looks like.
package sim

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// Device is one simulated phone with its identities in clear.
type Device struct {
	ID, Model, Group, OSVersion string
	MAC                         [6]byte
	IP                          netip.Addr
	IMEI, IMSI, ICCID, MSISDN   string
	AndroidID, AdID, Serial     string
	Email                       string
	CanaryContact, CanaryNumber string
	CanarySMS                   string
}

// Identifier is one (type, value) of a device, as listed in the inventory.
type Identifier struct{ Type, Value string }

// Identifiers lists the device's identifiers with their inventory type names.
func (d *Device) Identifiers() []Identifier {
	return []Identifier{
		{"imei", d.IMEI}, {"imsi", d.IMSI}, {"iccid", d.ICCID}, {"msisdn", d.MSISDN},
		{"wifi_mac", macString(d.MAC, ":", false)}, {"android_id", d.AndroidID},
		{"advertising_id", d.AdID}, {"serial", d.Serial}, {"email", d.Email},
		{"canary", d.CanaryContact}, {"canary", d.CanaryNumber}, {"canary", d.CanarySMS},
	}
}

// Lab is a set of devices behind one gateway.
type Lab struct {
	Devices   []*Device
	Subnet    netip.Prefix
	GatewayIP netip.Addr
	GWMAC     [6]byte
}

type model struct {
	name, os, tac, group string
	oui                  [3]byte
}

// Real-looking TACs and vendor OUIs (Xiaomi, Samsung, Google, ...); the TACs
// are examples of the format, not claims about a given model.
var models = []model{
	{"Redmi 1S", "4.4.4", "86512345", "india-retail", [3]byte{0xa4, 0x50, 0x46}},
	{"Redmi Note 12", "13", "86481205", "india-retail", [3]byte{0x64, 0xcc, 0x2e}},
	{"Galaxy A14", "14", "35467011", "eu-lab", [3]byte{0x8c, 0x77, 0x12}},
	{"Pixel 7", "14", "35312876", "eu-lab", [3]byte{0x3c, 0x28, 0x6d}},
	{"Moto G54", "13", "35958112", "latam", [3]byte{0x9c, 0xd9, 0x17}},
}

// NewLab generates n devices deterministically from seed.
func NewLab(n int, seed uint64) *Lab {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	lab := &Lab{
		Subnet:    netip.MustParsePrefix("10.20.0.0/16"),
		GatewayIP: netip.MustParseAddr("10.20.0.1"),
		GWMAC:     [6]byte{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01},
	}
	for i := 0; i < n; i++ {
		m := models[i%len(models)]
		d := &Device{
			ID:        fmt.Sprintf("lab-%04d", i+1),
			Model:     m.name,
			Group:     m.group,
			OSVersion: m.os,
			IP:        netip.AddrFrom4([4]byte{10, 20, byte((i + 10) / 250), byte((i+10)%250 + 2)}),
		}
		d.MAC = [6]byte{m.oui[0], m.oui[1], m.oui[2], byte(r.IntN(256)), byte(r.IntN(256)), byte(i)}
		d.IMEI = luhnComplete(m.tac + digits(r, 6))
		switch m.group {
		case "india-retail":
			d.IMSI = "40445" + digits(r, 10)
			d.ICCID = luhnComplete("899145" + digits(r, 12))
			d.MSISDN = "+9198" + digits(r, 8)
			d.CanaryNumber = "+9198000" + fmt.Sprintf("%05d", i+1)
		case "eu-lab":
			d.IMSI = "26201" + digits(r, 10)
			d.ICCID = luhnComplete("894901" + digits(r, 12))
			d.MSISDN = "+49151" + digits(r, 8)
			d.CanaryNumber = "+49151000" + fmt.Sprintf("%05d", i+1)
		default:
			d.IMSI = "72405" + digits(r, 10)
			d.ICCID = luhnComplete("895505" + digits(r, 12))
			d.MSISDN = "+5511" + digits(r, 9)
			d.CanaryNumber = "+55119000" + fmt.Sprintf("%05d", i+1)
		}
		d.AndroidID = hexDigits(r, 16)
		d.AdID = fmt.Sprintf("%s-%s-%s-%s-%s", hexDigits(r, 8), hexDigits(r, 4), hexDigits(r, 4), hexDigits(r, 4), hexDigits(r, 12))
		d.Serial = "R58" + strings.ToUpper(alnum(r, 8))
		d.Email = fmt.Sprintf("lab%04d.%s@example.com", i+1, alnum(r, 4))
		d.CanaryContact = fmt.Sprintf("Canary Contact %s %d", strings.ToUpper(alnum(r, 3)), i+1)
		d.CanarySMS = fmt.Sprintf("sms canary text %s %d", alnum(r, 6), i+1)
		lab.Devices = append(lab.Devices, d)
	}
	return lab
}

func digits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

func hexDigits(r *rand.Rand, n int) string {
	const h = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = h[r.IntN(16)]
	}
	return string(b)
}

func alnum(r *rand.Rand, n int) string {
	const a = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = a[r.IntN(len(a))]
	}
	return string(b)
}

// luhnComplete appends the Luhn check digit (IMEI, ICCID).
func luhnComplete(s string) string {
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if (len(s)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return s + string(rune('0'+(10-sum%10)%10))
}

func macString(m [6]byte, sep string, upper bool) string {
	f := "%02x"
	if upper {
		f = "%02X"
	}
	parts := make([]string, 6)
	for i, b := range m {
		parts[i] = fmt.Sprintf(f, b)
	}
	return strings.Join(parts, sep)
}

// WriteInventory writes the lab as an exfilwatch inventory YAML file.
func (l *Lab) WriteInventory(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# Generated by `exfilwatch simulate`: a simulated phone lab.\n")
	b.WriteString("devices:\n")
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	for _, d := range l.Devices {
		fmt.Fprintf(&b, "  - id: %s\n    model: %s\n    group: %s\n    os_version: %s\n", d.ID, q(d.Model), d.Group, q(d.OSVersion))
		fmt.Fprintf(&b, "    macs: [%s]\n    ips: [%s]\n    identifiers:\n", q(macString(d.MAC, ":", false)), q(d.IP.String()))
		fmt.Fprintf(&b, "      imei: [%s]\n      imsi: [%s]\n      iccid: [%s]\n      msisdn: [%s]\n", q(d.IMEI), q(d.IMSI), q(d.ICCID), q(d.MSISDN))
		fmt.Fprintf(&b, "      wifi_mac: [%s]\n      android_id: [%s]\n      advertising_id: [%s]\n", q(macString(d.MAC, ":", false)), q(d.AndroidID), q(d.AdID))
		fmt.Fprintf(&b, "      serial: [%s]\n      email: [%s]\n      canary: [%s, %s, %s]\n", q(d.Serial), q(d.Email), q(d.CanaryContact), q(d.CanaryNumber), q(d.CanarySMS))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
