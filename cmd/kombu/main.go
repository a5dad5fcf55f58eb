// Command kombu inspects and operates Kombu/Celery queues on Redis: publish,
// consume, inspect, peek, restore, purge, bind, unbind, and send Celery
// tasks. It is built on the kombu-go library's public API.
//
// Install: go install github.com/kombu-go/kombu/cmd/kombu@latest
//
// Every subcommand takes --url (default $KOMBU_URL, else
// redis://127.0.0.1:6379/0) and Kombu transport options as --opt name=value.
// Errors are one line on stderr and a non-zero exit status: 1 for a
// failure, 2 for bad usage, 3 when consume's --timeout (or celery send's
// --wait) ran out first.
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

	"github.com/kombu-go/kombu"
	_ "github.com/kombu-go/kombu/memory"
	kredis "github.com/kombu-go/kombu/redis"
)

// exit codes
const (
	exitOK      = 0
	exitFail    = 1
	exitUsage   = 2
	exitTimeout = 3
)

// usageError marks a command-line mistake (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// errTimeout marks consume's --timeout or celery send's --wait running out
// (exit status 3).
var errTimeout = errors.New("timeout ran out")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

var commands = []command{
	{"publish", "publish messages to an exchange", runPublish},
	{"consume", "consume messages from a queue and print them as JSON lines", runConsume},
	{"inspect", "show queue lengths per priority, bindings and unacked messages", runInspect},
	{"peek", "print the next messages of a queue without removing them", runPeek},
	{"restore", "put back unacked messages whose visibility timeout has passed", runRestore},
	{"purge", "remove every waiting message of a queue", runPurge},
	{"bind", "bind a queue to an exchange", runBind},
	{"unbind", "remove a binding", runUnbind},
	{"celery", "Celery: send tasks and canvases, inspect and control workers, watch events (kombu celery --help)", runCelery},
}

// env is what every subcommand shares: where to write, and how to connect.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func main() {
	// go-redis logs dial failures to stderr by itself; errors reach the user
	// as one line from this command instead.
	kredis.RouteClientLogs(nil)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		var ue usageError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue), errors.Is(err, kombu.ErrBadURL):
			fmt.Fprintf(e.stderr, "kombu %s: %s (see kombu %s --help)\n", c.name, oneLine(err), c.name)
			return exitUsage
		case errors.Is(err, errTimeout):
			fmt.Fprintf(e.stderr, "kombu %s: %s\n", c.name, oneLine(err))
			return exitTimeout
		default:
			fmt.Fprintf(e.stderr, "kombu %s: %s\n", c.name, oneLine(err))
			return exitFail
		}
	}
	fmt.Fprintf(e.stderr, "kombu: unknown command %q (see kombu --help)\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: kombu <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --url (default $KOMBU_URL, else redis://127.0.0.1:6379/0) and --opt name=value.")
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// connFlags are the flags every subcommand has.
type connFlags struct {
	url  string
	opts multiFlag
}

func (c *connFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("KOMBU_URL")
	if def == "" {
		def = "redis://127.0.0.1:6379/0"
	}
	fs.StringVar(&c.url, "url", def, "broker URL (Kombu form)")
	fs.Var(&c.opts, "opt", "Kombu transport option `name=value` (repeatable)")
}

func (c *connFlags) dial(ctx context.Context) (*kombu.Connection, error) {
	opts := []kombu.Option{kombu.WithInferExchangeTypes()}
	for _, kv := range c.opts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Sprintf("--opt %q: want name=value", kv)}
		}
		opts = append(opts, kombu.WithTransportOption(k, v))
	}
	return kombu.Dial(ctx, c.url, opts...)
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// newFlags makes a subcommand's flag set. The flag package itself prints
// nothing: a parse error becomes one line (see run), and --help prints the
// usage on stdout (see parse).
func newFlags(e *env, name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("kombu "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "usage: kombu %s %s\n\n%s\n\nflags:\n", name, args, summary)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// parse parses flags, turning parse failures into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	// Allow flags after positional arguments (kombu publish BODY --count 2).
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") {
				if f := fs.Lookup(name); f != nil {
					if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !bf.IsBoolFlag() {
						if i+1 < len(args) {
							flags = append(flags, args[i+1])
							i++
						}
					}
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	// The flag package calls Usage on every parse error too: print it only
	// when --help was asked for.
	help := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(append(flags, append([]string{"--"}, pos...)...))
	fs.Usage = help
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help()
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

// noArgs refuses positional arguments where a command takes none.
func noArgs(fs *flag.FlagSet) error {
	if fs.NArg() != 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
