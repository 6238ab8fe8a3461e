package bpf

// The C sources in c/ are compiled by bpf2go with Debian's clang; the
// generated flow_bpfel.go and flow_bpfel.o are committed so that building
// exfilwatch needs no clang. Run `go generate ./bpf/...` after changing c/.
//
// -mcpu=v3 enables the atomic fetch-and-or/add instructions (Linux >= 5.12).
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -mcpu=v3" -target bpfel -type flow_key -type flow_stats -type event_hdr -type counter -type if_slot flow c/flow.c -- -I./c
