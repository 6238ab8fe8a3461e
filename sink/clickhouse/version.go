package clickhouse

import (
	"fmt"
	"strconv"
	"strings"
)

// Profile selects the DDL dialect.
type Profile int

const (
	// ProfilePortable works on old servers (Debian's 18.16): FixedString(16)
	// addresses, no codecs, no TTL, plain String instead of LowCardinality.
	ProfilePortable Profile = iota
	// ProfileModern uses IPv6, LowCardinality, codecs, TTL and
	// non-replicated insert deduplication (ClickHouse 22.1 and later).
	ProfileModern
)

func (p Profile) String() string {
	if p == ProfileModern {
		return "modern"
	}
	return "portable"
}

// ServerVersion is a parsed `SELECT version()` answer.
type ServerVersion struct{ Major, Minor, Patch int }

func (v ServerVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// ParseVersion parses "18.16.1", "24.8.4.13" or "25.3.1.2703-lts".
func ParseVersion(s string) (ServerVersion, error) {
	parts := strings.SplitN(strings.TrimSpace(s), ".", 4)
	if len(parts) < 2 {
		return ServerVersion{}, fmt.Errorf("parse server version %q: want major.minor[.patch]", s)
	}
	var n [3]int
	for i := 0; i < len(parts) && i < 3; i++ {
		digits := parts[i]
		if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = digits[:j]
		}
		v, err := strconv.Atoi(digits)
		if err != nil {
			return ServerVersion{}, fmt.Errorf("parse server version %q: %w", s, err)
		}
		n[i] = v
	}
	return ServerVersion{n[0], n[1], n[2]}, nil
}

// ProfileFor picks the DDL profile for a server version. 22.1 is the cut:
// every feature of the modern profile (IPv6 type, LowCardinality without
// settings, codecs, TTL, non_replicated_deduplication_window) is there.
func ProfileFor(v ServerVersion) Profile {
	if v.Major >= 22 {
		return ProfileModern
	}
	return ProfilePortable
}
