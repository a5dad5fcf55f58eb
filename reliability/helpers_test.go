package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/testenv"
)

var bg = context.Background()

// helperDir holds the helper binaries built for this test run.
var helperDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kombu-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	helperDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	printReport()
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
	buildOut  []byte
)

// chaosConsumer builds ./internal/chaosconsumer once (without -race, so a
// race-instrumented test run still kills a realistic consumer) and returns
// its path.
func chaosConsumer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(helperDir, "chaosconsumer")
	buildOnce.Do(func() {
		gotool, err := exec.LookPath("go")
		if err != nil {
			gotool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(gotool, "build", "-o", bin, "./internal/chaosconsumer")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./internal/chaosconsumer: %v\n%s", buildErr, buildOut)
	}
	return bin
}

// startRedis starts a private redis-server for a test (see testenv: under
// make test a missing redis-server fails the test with an install hint).
func startRedis(t *testing.T, args ...string) *testenv.Server {
	t.Helper()
	return testenv.StartRedis(t, args...)
}

func client(t *testing.T, s *testenv.Server) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls cond every 20 ms until it is true or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// faultRow is one row of the fault table.
type faultRow struct {
	Fault, Injected           string
	Sent, Handled, Lost, Dups int
	InFlight                  string
	Notes                     string
}

var (
	reportMu sync.Mutex
	faults   []faultRow
	inputs   [][3]string // input, where it ended, error
)

func addFault(t *testing.T, r faultRow) {
	t.Helper()
	t.Logf("FAULT | %s | %s | sent %d | handled %d | lost %d | duplicated %d | in flight %s | %s",
		r.Fault, r.Injected, r.Sent, r.Handled, r.Lost, r.Dups, r.InFlight, r.Notes)
	reportMu.Lock()
	defer reportMu.Unlock()
	faults = append(faults, r)
}

func addInput(t *testing.T, input, where, errType string) {
	t.Helper()
	t.Logf("INPUT | %s | %s | %s", input, where, errType)
	reportMu.Lock()
	defer reportMu.Unlock()
	inputs = append(inputs, [3]string{input, where, errType})
}

// printReport prints the tables collected (shown by go test -v) and
// appends them to $KOMBU_RELIABILITY_REPORT if set.
func printReport() {
	reportMu.Lock()
	defer reportMu.Unlock()
	if len(faults) == 0 && len(inputs) == 0 {
		return
	}
	var b strings.Builder
	if len(faults) > 0 {
		b.WriteString("| fault | injected | sent | handled | lost | duplicated | in flight at faults | notes |\n|---|---|---|---|---|---|---|---|\n")
		for _, r := range faults {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %s |\n", r.Fault, r.Injected, r.Sent, r.Handled, r.Lost, r.Dups, r.InFlight, r.Notes)
		}
	}
	if len(inputs) > 0 {
		b.WriteString("\n| bad input | where the message ended | error the handler saw |\n|---|---|---|\n")
		for _, r := range inputs {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
		}
	}
	if testing.Verbose() {
		fmt.Print("\n" + b.String())
	}
	if p := os.Getenv("KOMBU_RELIABILITY_REPORT"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.WriteString(b.String())
			_ = f.Close()
		}
	}
}
