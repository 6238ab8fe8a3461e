package ident

import "unsafe"

// stringBytes views s as bytes without copying. The scanner never writes to
// its input, so this is safe and keeps per-record scanning allocation-free.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
