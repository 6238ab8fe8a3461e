//go:build !amd64

package ident

const hasMaskAsm = false

func classMasks(data []byte, out []uint64, _ bool) { classMasksGo(data, out) }
