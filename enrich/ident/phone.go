package ident

import (
	"fmt"
	"strings"
)

// Phone numbers. Apps send a subscriber's number in whatever shape the
// platform API or the user typed: E.164 with or without '+', the national
// significant number, the national number with its trunk prefix (0 in most
// of the world, 1 in NANP, 8 in Russia), or with the 00 international prefix.
// To derive those from one E.164 inventory value we need the country calling
// code length (ITU-T E.164 codes are prefix-free: 1 to 3 digits) and the
// country's trunk prefix. The tables below cover every assigned code.

// twoDigitCodes are the assigned 2-digit country calling codes; the codes
// starting with 1 and 7 are 1 digit, every other assigned code is 3 digits.
var twoDigitCodes = map[string]bool{
	"20": true, "27": true, "30": true, "31": true, "32": true, "33": true, "34": true,
	"36": true, "39": true, "40": true, "41": true, "43": true, "44": true, "45": true,
	"46": true, "47": true, "48": true, "49": true, "51": true, "52": true, "53": true,
	"54": true, "55": true, "56": true, "57": true, "58": true, "60": true, "61": true,
	"62": true, "63": true, "64": true, "65": true, "66": true, "81": true, "82": true,
	"84": true, "86": true, "90": true, "91": true, "92": true, "93": true, "94": true,
	"95": true, "98": true,
}

// trunkPrefix maps calling codes whose national dialling prefix is not "0".
// An empty value means the country has no trunk prefix (the number is
// dialled nationally exactly as its national significant number, e.g. Spain,
// Italy whose fixed numbers keep their leading 0 inside the NSN, Denmark).
var trunkPrefix = map[string]string{
	"1": "1", "7": "8", "36": "06", "370": "8", "375": "8", "993": "8",
	// no trunk prefix
	"30": "", "34": "", "39": "", "45": "", "47": "", "52": "", "56": "", "298": "", "299": "",
	"350": "", "351": "", "352": "", "354": "", "356": "", "357": "", "371": "", "372": "",
	"376": "", "377": "", "378": "", "420": "", "423": "", "501": "", "502": "", "503": "",
	"504": "", "505": "", "506": "", "507": "", "509": "", "590": "", "594": "", "596": "",
	"597": "", "598": "", "852": "", "853": "", "65": "", "673": "", "674": "", "675": "",
	"676": "", "677": "", "678": "", "679": "", "680": "", "681": "", "682": "", "683": "",
	"685": "", "686": "", "687": "", "688": "", "689": "", "690": "", "691": "", "692": "",
	"960": "", "965": "", "968": "", "973": "", "974": "", "975": "", "800": "", "808": "",
	"870": "", "878": "", "881": "", "882": "", "883": "", "888": "", "979": "",
}

// Phone is an E.164 number split into its parts.
type Phone struct {
	CountryCode string // calling code digits, e.g. "91"
	National    string // national significant number, e.g. "9812345678"
	Trunk       string // national (trunk) prefix, e.g. "0"; "" if none
}

// E164 returns the number as +CCNSN.
func (p Phone) E164() string { return "+" + p.CountryCode + p.National }

// CountryCodeLen returns the length of the calling code at the start of the
// digit string d (international format without '+'), or 0 if d is too short.
func CountryCodeLen(d string) int {
	if len(d) < 1 {
		return 0
	}
	switch d[0] {
	case '1', '7':
		return 1
	case '0':
		return 0
	}
	if len(d) >= 2 && twoDigitCodes[d[:2]] {
		return 2
	}
	if len(d) >= 3 {
		return 3
	}
	return 0
}

// ParseE164 splits a number in international format ("+919812345678",
// "+91 98123-45678", "0091...") into calling code and national number.
// Spaces, dashes, dots and parentheses are ignored.
func ParseE164(s string) (Phone, error) {
	t := strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(t, "+"):
		t = t[1:]
	case strings.HasPrefix(t, "00"):
		t = t[2:]
	default:
		return Phone{}, fmt.Errorf("phone: want international format (+CC... or 00CC...)")
	}
	d, err := digitsWithSeparators(t, " -.()/")
	if err != nil {
		return Phone{}, fmt.Errorf("phone %w", err)
	}
	n := CountryCodeLen(d)
	if n == 0 {
		return Phone{}, fmt.Errorf("phone: no country calling code")
	}
	// E.164 allows at most 15 digits in total; national numbers are >= 4
	// digits in every plan.
	if len(d) > 15 || len(d)-n < 4 {
		return Phone{}, fmt.Errorf("phone: %d digits is not a valid E.164 length", len(d))
	}
	cc := d[:n]
	tr, ok := trunkPrefix[cc]
	if !ok {
		tr = "0"
	}
	return Phone{CountryCode: cc, National: d[n:], Trunk: tr}, nil
}
