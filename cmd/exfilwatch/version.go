package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/exfilwatch/exfilwatch/schema"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	register("version", "print the version, schema version and build information", func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet("version", "version", stderr)
		if err := parse(fs, args); err != nil {
			return err
		}
		goVer := "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			goVer = bi.GoVersion
		}
		fmt.Fprintf(stdout, "exfilwatch %s (flow schema v%d, %s)\n", version, schema.Version, goVer)
		return nil
	})
}
