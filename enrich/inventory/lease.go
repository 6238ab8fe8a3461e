package inventory

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/exfilwatch/exfilwatch/enrich/ident"
)

// Leases maps a leased IP address to the client's MAC address. Devices
// without a static IP in the inventory are found through it: IP -> MAC ->
// device.
type Leases map[netip.Addr][6]byte

// ParseDnsmasqLeases parses a dnsmasq lease file ("<expiry> <mac> <ip>
// <hostname> <client-id>" per line; expiry 0 means infinite). Expired leases
// and DHCPv6 lines (no MAC) are skipped.
func ParseDnsmasqLeases(data []byte, now time.Time, out Leases) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] == "duid" {
			continue
		}
		exp, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return fmt.Errorf("line %d: bad expiry", line)
		}
		if exp != 0 && time.Unix(exp, 0).Before(now) {
			continue
		}
		mac, err := ident.ParseMAC(f[1])
		if err != nil {
			continue // DHCPv6 lease: IAID instead of a MAC
		}
		ip, err := netip.ParseAddr(f[2])
		if err != nil {
			return fmt.Errorf("line %d: bad address", line)
		}
		out[ip.Unmap()] = mac
	}
	return sc.Err()
}

// ParseDhcpdLeases parses an ISC dhcpd leases file. Later entries for an
// address override earlier ones (dhcpd appends); leases whose binding state
// is not active or whose end time has passed are dropped.
func ParseDhcpdLeases(data []byte, now time.Time, out Leases) error {
	type cur struct {
		ip      netip.Addr
		mac     [6]byte
		hasMAC  bool
		active  bool
		expired bool
	}
	var c *cur
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		switch {
		case strings.HasPrefix(t, "lease ") && strings.HasSuffix(t, "{"):
			ip, err := netip.ParseAddr(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(t, "lease "), "{")))
			if err != nil {
				return fmt.Errorf("line %d: bad lease address", line)
			}
			c = &cur{ip: ip.Unmap(), active: true}
		case c == nil:
		case t == "}":
			if c.hasMAC {
				if c.active && !c.expired {
					out[c.ip] = c.mac
				} else {
					delete(out, c.ip)
				}
			}
			c = nil
		case strings.HasPrefix(t, "hardware ethernet "):
			if mac, err := ident.ParseMAC(strings.TrimSuffix(strings.TrimPrefix(t, "hardware ethernet "), ";")); err == nil {
				c.mac, c.hasMAC = mac, true
			}
		case strings.HasPrefix(t, "binding state "):
			c.active = strings.TrimSuffix(strings.TrimPrefix(t, "binding state "), ";") == "active"
		case strings.HasPrefix(t, "ends "):
			v := strings.TrimSuffix(strings.TrimPrefix(t, "ends "), ";")
			if v == "never" {
				continue
			}
			// "ends 4 2026/11/19 22:00:00" (UTC) or "ends epoch 1763589600; # ..."
			var end time.Time
			if f := strings.Fields(v); len(f) >= 2 && f[0] == "epoch" {
				if sec, err := strconv.ParseInt(strings.TrimSuffix(f[1], ";"), 10, 64); err == nil {
					end = time.Unix(sec, 0)
				}
			} else if len(f) == 3 {
				end, _ = time.Parse("2006/01/02 15:04:05", f[1]+" "+f[2])
			}
			c.expired = !end.IsZero() && end.Before(now)
		}
	}
	return sc.Err()
}
