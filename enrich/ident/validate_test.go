package ident_test

import (
	"bufio"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// TestDeviceIDVectors checks IMEI/IMSI/MAC/Luhn validation against
// python-stdnum's verdicts.
func TestDeviceIDVectors(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	f, err := os.Open(filepath.Join(dir, "identifiers", "stdnum-device-id-vectors.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	n := 0
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		kind, in, norm, valid := c[0], c[1], c[2], c[3] == "True"
		var gotNorm string
		var err error
		switch kind {
		case "imei":
			gotNorm, _, err = ident.NormalizeIMEI(in)
		case "imsi":
			gotNorm, err = ident.NormalizeIMSI(in)
		case "mac":
			var m [6]byte
			m, err = ident.ParseMAC(in)
			if err == nil {
				gotNorm = ident.FormatMAC(m, ':', false)
			}
		case "luhn":
			gotNorm = in
			if !ident.LuhnValid(in) {
				err = ident.ErrChecksum
			}
		default:
			continue // MEID: not an inventory type here
		}
		n++
		if valid && (err != nil || gotNorm != norm) {
			t.Errorf("%s %q: want valid %q, got %q, %v", kind, in, norm, gotNorm, err)
		}
		if !valid && err == nil {
			t.Errorf("%s %q: want invalid, accepted as %q", kind, in, gotNorm)
		}
	}
	if n < 20 {
		t.Fatalf("only %d vectors read", n)
	}
}

// TestPhoneVectors splits every libphonenumber example number's E.164 form
// and compares calling code and national number with the vector.
func TestPhoneVectors(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	f, err := os.Open(filepath.Join(dir, "identifiers", "libphonenumber-example-numbers.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows[1:] {
		cc, region, nsn, e164 := r[0], r[1], r[3], r[4]
		p, err := ident.ParseE164(e164)
		if err != nil {
			t.Errorf("%s %s: %v", region, e164, err)
			continue
		}
		if p.CountryCode != cc || p.National != nsn || p.E164() != e164 {
			t.Errorf("%s %s: got cc %s nsn %s, want cc %s nsn %s", region, e164, p.CountryCode, p.National, cc, nsn)
		}
		// Also accepted with separators and the 00 prefix.
		if q, err := ident.ParseE164("00" + cc + " " + nsn); err != nil || q != p {
			t.Errorf("%s 00-form: %v %v", region, q, err)
		}
	}
	if len(rows) < 1000 {
		t.Fatalf("only %d rows", len(rows))
	}
}

// TestOUIVendor: the example inventory's MAC prefix is Xiaomi's (a Redmi 1S),
// and every unicast OUI in the IEEE table yields a valid MAC.
func TestOUIVendor(t *testing.T) {
	dir := testenv.SharedTestdata(t)
	f, err := os.Open(filepath.Join(dir, "identifiers", "stdnum-oui.dat"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	found := false
	checked := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		prefixes, vendor, _ := strings.Cut(line, " o=")
		for _, p := range strings.Split(prefixes, ",") {
			if len(p) != 6 {
				continue // ranges and MA-M/MA-S blocks
			}
			m, err := ident.ParseMAC(p + "000001")
			group := strings.ContainsRune("13579BDF", rune(p[1]))
			if (err == nil) == group {
				t.Errorf("OUI %s: err %v, group bit %v", p, err, group)
			}
			checked++
			if p == "A45046" && strings.Contains(vendor, "Xiaomi") && err == nil && m[0] == 0xa4 {
				found = true
			}
		}
	}
	if !found || checked < 10000 {
		t.Errorf("xiaomi OUI found %v, %d OUIs checked", found, checked)
	}
}

func TestLuhnDigit(t *testing.T) {
	for _, imei := range []string{"356938035643809", "490154203237518", "354178036859789"} {
		if d := ident.LuhnDigit(imei[:14]); d != imei[14] {
			t.Errorf("%s: check digit %c", imei, d)
		}
	}
	// The brief's example IMEI has a wrong check digit (9 is right): it is
	// reported as a checksum problem but still normalised and indexed.
	d, kind, err := ident.NormalizeIMEI("865123456789018")
	if !errors.Is(err, ident.ErrChecksum) || d != "865123456789018" || kind != ident.IMEI15 {
		t.Errorf("bad-Luhn IMEI: %q %v %v", d, kind, err)
	}
}
