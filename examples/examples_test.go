package examples_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// programs are the tutorial programs, each with a line its default run
// must print.
var programs = []struct{ name, wantLine string }{
	{"hello", ` [x] Received "Hello World!"`},
	{"workqueue", ` worker-2 did `},
	{"pubsub", ` [subscriber-2] "log line 3"`},
	{"routing", ` [error-log] error:"Out of memory"`},
	{"topics", ` [kern.*]     got kern.disk.critical`},
	{"rpc", ` [.] Got fib(30) = 832040`},
}

// TestPrograms builds each program and runs it as a user would, with no
// flags but --url memory://, and then with a URL nobody serves. It proves
// the command-line contract: the default run ends by itself with exit
// status 0 and prints what flowed; a failure exits with status 1 and one
// line on stderr, prefixed with the program's name.
func TestPrograms(t *testing.T) {
	gotool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the programs with")
	}
	bin := t.TempDir()
	build := exec.Command(gotool, "build", "-o", bin+string(filepath.Separator))
	for _, p := range programs {
		build.Args = append(build.Args, "./"+p.name)
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runProgram(t, filepath.Join(bin, p.name), "--url", "memory://")
			if code != 0 || !strings.Contains(stdout, p.wantLine) {
				t.Errorf("exit status %d, stdout:\n%s\nstderr:\n%s\nwant status 0 and the line %q", code, stdout, stderr, p.wantLine)
			}
			_, stderr, code = runProgram(t, filepath.Join(bin, p.name), "--url", "nowhere://", "--timeout", "5s")
			if code != 1 || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, p.name+": ") {
				t.Errorf("with a bad URL: exit status %d, stderr %q; want 1 and one line %q", code, stderr, p.name+": ...")
			}
		})
	}
}

// runProgram runs a program for at most a minute and returns its output
// and exit status.
func runProgram(t *testing.T, path string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(cmd.Environ(), "KOMBU_URL=") // --url decides
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	start := time.Now()
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && ctx.Err() == nil:
		code = exit.ExitCode()
	default:
		t.Fatalf("%s %v: %v after %v", filepath.Base(path), args, err, time.Since(start))
	}
	return o.String(), e.String(), code
}
