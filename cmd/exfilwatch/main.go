// Command exfilwatch is the single binary of the exfilwatch pipeline. Each
// subcommand runs one stage (so stages scale out independently through Kafka
// consumer groups) or a tool around them. This package only wires packages
// together: flags, configuration, signals and exit codes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/exfilwatch/exfilwatch/config"
)

// Exit codes: 1 for a runtime failure, 2 for bad usage or configuration.
const (
	exitFail  = 1
	exitUsage = 2
)

// usageError marks errors caused by the command line or configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	commands[name] = command{summary, run}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "exfilwatch: unknown command %q (see exfilwatch --help)\n", args[0])
		return exitUsage
	}
	err := cmd.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case isUsage(err):
		fmt.Fprintf(stderr, "exfilwatch %s: %s\n", args[0], oneLine(err.Error()))
		return exitUsage
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return 0 // interrupted: a clean shutdown already happened
	default:
		fmt.Fprintf(stderr, "exfilwatch %s: %s\n", args[0], oneLine(err.Error()))
		return exitFail
	}
}

func isUsage(err error) bool {
	var ue usageError
	var ce *config.Error
	return errors.As(err, &ue) || errors.As(err, &ce)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printUsage(w io.Writer) {
	fmt.Fprintf(w, "exfilwatch: which lab device sent what, to whom, where, and was it an identifier it should not send.\n\nUsage: exfilwatch <command> [flags]   (exfilwatch <command> --help lists every flag)\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

// newFlagSet returns a FlagSet that reports errors instead of exiting and
// prints a usage header plus every flag on --help.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: exfilwatch %s\n\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args; a bad flag is a usage error (exit 2), --help is not an error.
func parse(fs *flag.FlagSet, args []string) error {
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {} // a bad flag is reported in one line by run, not with the whole usage
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return flag.ErrHelp
	}
	if err != nil {
		return usageError{err}
	}
	return nil
}
