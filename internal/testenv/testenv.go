// Package testenv gives tests the outside world they need: a real
// redis-server and the Debian Python with Kombu and Celery.
//
// Under `make test` (which sets KOMBU_REQUIRE_INTEGRATION=1 and
// KOMBU_TEST_REDIS_URL), a missing dependency fails the test with a message
// saying how to install it. Under a plain `go test` without that variable,
// such tests are skipped with the same message.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Python is the interpreter interop tests run: Debian's, which has
// python3-kombu and python3-celery, not a pyenv one. Run it through
// PythonCommand, never directly: that isolates it from the repository's
// folders and selects the version set under test.
const Python = "/usr/bin/python3"

// The version set under test. make test runs the interop tests once with
// the system's packages (bookworm: Kombu 5.2.4, Celery 5.2.6, redis-py
// 4.3.4) and once more with KOMBU_PYSET=trixie and KOMBU_PYSET_PATH naming
// the unpacked trixie packages (Kombu 5.5.3, Celery 5.5.2, redis-py 6.1.0),
// which go first on sys.path.
const (
	pysetEnv     = "KOMBU_PYSET"
	pysetPathEnv = "KOMBU_PYSET_PATH"
)

// pyBoot runs under `python3 -I -c`: -I keeps the working directory, the
// script's directory and PYTHON* variables off sys.path (our Go folders
// celery/ and redis/ would otherwise import as namespace packages), so the
// set's path is added here, then the script (its own directory first, as
// Python does), the module (the working directory first, as -m does) or
// the code runs as __main__.
const pyBoot = `import os, runpy, sys
sys.path[:0] = [p for p in os.environ.get("` + pysetPathEnv + `", "").split(os.pathsep) if p]
a = sys.argv[1:]
if not a:
    sys.exit("pyboot: nothing to run")
if a[0] == "-m":
    sys.argv = [a[1]] + a[2:]
    sys.path.insert(0, os.getcwd())
    runpy.run_module(a[1], run_name="__main__", alter_sys=True)
elif a[0] == "-c":
    sys.argv = ["-c"] + a[2:]
    exec(compile(a[1], "<string>", "exec"), {"__name__": "__main__"})
else:
    sys.argv = a
    sys.path.insert(0, os.path.dirname(os.path.abspath(a[0])))
    runpy.run_path(a[0], run_name="__main__")
`

// PythonCommand returns a command running Debian's python3 on args (a
// script and its arguments, "-m" module ..., or "-c" code ...), isolated
// from the repository's folders and with the version set under test
// (KOMBU_PYSET_PATH) first on sys.path. The caller sets Dir, Stdin and so
// on; Env, if set, should start from os.Environ().
func PythonCommand(ctx context.Context, args ...string) *exec.Cmd {
	if ctx == nil {
		ctx = context.Background()
	}
	cmd := exec.CommandContext(ctx, Python, append([]string{"-I", "-B", "-c", pyBoot}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	return cmd
}

// PythonSet names the version set under test: "bookworm" (the system's
// packages) unless KOMBU_PYSET says otherwise.
func PythonSet() string {
	if s := os.Getenv(pysetEnv); s != "" {
		return s
	}
	return "bookworm"
}

var pyVersions struct {
	once sync.Once
	line string
	err  error
}

// PythonVersions returns "kombu=X celery=Y redis-py=Z" as the set under
// test imports them (a module that does not import is shown as "-").
func PythonVersions() (string, error) {
	pyVersions.once.Do(func() {
		code := `import importlib
out = []
for name, mod in (("kombu", "kombu"), ("celery", "celery"), ("redis-py", "redis")):
    try:
        v = importlib.import_module(mod).__version__
    except Exception:
        v = "-"
    out.append(name + "=" + v)
print(" ".join(out))`
		out, err := PythonCommand(context.Background(), "-c", code).Output()
		pyVersions.line, pyVersions.err = strings.TrimSpace(string(out)), err
	})
	return pyVersions.line, pyVersions.err
}

// Required reports whether missing dependencies must fail tests.
func Required() bool { return os.Getenv("KOMBU_REQUIRE_INTEGRATION") != "" }

// Missing fails (under make test) or skips the test with a clear message.
func Missing(t testing.TB, what, fix string) {
	t.Helper()
	msg := fmt.Sprintf("%s is missing: %s (make test installs it)", what, fix)
	if Required() {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipped because KOMBU_REQUIRE_INTEGRATION is not set")
}

// RedisURL returns the URL of the shared test redis-server started by make
// test (KOMBU_TEST_REDIS_URL). Tests sharing it must isolate themselves by
// fresh names or a fresh global_keyprefix (see Prefix), never by flushing.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("KOMBU_TEST_REDIS_URL")
	if u == "" {
		Missing(t, "a test redis-server (KOMBU_TEST_REDIS_URL)", "run `make test`, which starts one")
	}
	return u
}

// Prefix returns a fresh key prefix for one test.
func Prefix() string { return "t" + strings.ReplaceAll(uuid.NewString()[:13], "-", "") + ":" }

// PySetMarker starts the log line RequirePython writes in each test that
// runs Python; make test counts those tests per version set.
const PySetMarker = "testenv: python set "

// RequirePython checks that Debian's python3, with the version set under
// test, can import the given modules (for example "kombu", "celery",
// "redis"), logs which set the test runs against (make test counts the
// tests per set by that line) and returns the interpreter's path. Run
// Python through PythonCommand.
func RequirePython(t testing.TB, modules ...string) string {
	t.Helper()
	if _, err := os.Stat(Python); err != nil {
		Missing(t, Python, "apt-get install python3")
	}
	if len(modules) > 0 {
		code := "import " + strings.Join(modules, ", ") + "\nfor m in (" + strings.Join(modules, ", ") + ",): getattr(m, '__version__', None) or getattr(m, 'VERSION')"
		if out, err := PythonCommand(context.Background(), "-c", code).CombinedOutput(); err != nil {
			pkgs := make([]string, len(modules))
			for i, m := range modules {
				pkgs[i] = "python3-" + m
			}
			fix := "apt-get install " + strings.Join(pkgs, " ")
			if p := os.Getenv(pysetPathEnv); p != "" {
				fix = "the " + PythonSet() + " set under " + p + " is incomplete: run scripts/pysets.sh"
			}
			Missing(t, "Python modules "+strings.Join(modules, ", ")+" ("+strings.TrimSpace(string(out))+")", fix)
		}
	}
	v, err := PythonVersions()
	if err != nil {
		t.Fatalf("python versions: %v", err)
	}
	t.Logf("%s%s %s", PySetMarker, PythonSet(), v)
	return Python
}

// RunPython runs a Python script file with arguments and environment
// additions, returning stdout; it fails the test with stderr on error.
func RunPython(t testing.TB, ctx context.Context, script string, env []string, args ...string) []byte {
	t.Helper()
	cmd := PythonCommand(ctx, append([]string{script}, args...)...)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python %s %v: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(script), args, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Server is a private redis-server for tests that must restart or
// reconfigure it.
type Server struct {
	t    testing.TB
	Port int
	Dir  string
	args []string
	cmd  *exec.Cmd
}

// StartRedis starts a private redis-server on a free loopback port with
// extra arguments (for example "--appendonly", "yes") and stops it when the
// test ends.
func StartRedis(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server", "apt-get install redis-server")
	}
	_ = bin
	s := &Server{t: t, Port: FreePort(t), Dir: t.TempDir(), args: args}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL returns redis://127.0.0.1:port/db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://127.0.0.1:%d/%d", s.Port, db) }

// Addr returns 127.0.0.1:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start starts the server (again) and waits until it answers.
func (s *Server) Start() {
	s.t.Helper()
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "", "--dir", s.Dir}, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Write([]byte("PING\r\n"))
			buf := make([]byte, 64)
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "+PONG") {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on port %d did not answer within 10s", s.Port)
}

// Stop kills the server (SIGKILL: an abrupt crash) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
	s.cmd = nil
}

// Restart stops and starts the server on the same port and directory.
func (s *Server) Restart() {
	s.Stop()
	s.Start()
}

// LockedBuffer collects a subprocess's output while the test reads it: a
// bytes.Buffer safe for concurrent use.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail returns at most the last n bytes written, after "...\n" when cut.
func (l *LockedBuffer) Tail(n int) string {
	s := l.String()
	if len(s) > n {
		s = "...\n" + s[len(s)-n:]
	}
	return s
}

// CeleryWorker describes a Python Celery worker for StartCeleryWorker.
type CeleryWorker struct {
	Python string // unused: the interpreter is PythonCommand's
	Dir    string // where the tasks module is
	Queue  string // the queue it consumes (-Q)
	Node   string // node name prefix: the node is Node-<random>@%h
	// Events starts it with -E and heartbeats (else --without-heartbeat).
	Events bool
	// Mingle lets it sync with the other workers at start (else
	// --without-mingle).
	Mingle bool
	// Pool is the execution pool (--pool): "solo" when empty; "prefork"
	// runs one child process (-c 1).
	Pool string
	Env  []string // added to the environment
	// LogAfter, if positive, also logs the worker's output when it ran
	// longer than this (a slow run worth a look); it is always logged when
	// the test failed.
	LogAfter time.Duration
}

// StartCeleryWorker starts `celery -A tasks worker --pool=solo` in a
// process group of its own. When the test ends it is sent SIGTERM (a warm
// shutdown), SIGKILL after 10 s, and its output is logged if the test
// failed.
func StartCeleryWorker(t testing.TB, w CeleryWorker) {
	t.Helper()
	pool := w.Pool
	if pool == "" {
		pool = "solo"
	}
	args := []string{"-m", "celery", "-A", "tasks", "worker", "--pool=" + pool, "-c", "1", "-Q", w.Queue,
		"--without-gossip", "-l", "info", "-n", w.Node + "-" + uuid.NewString()[:8] + "@%h"}
	if !w.Mingle {
		args = append(args, "--without-mingle")
	}
	if w.Events {
		args = append(args, "-E")
	} else {
		args = append(args, "--without-heartbeat")
	}
	cmd := PythonCommand(context.Background(), args...)
	cmd.Dir = w.Dir
	cmd.Env = append(cmd.Env, w.Env...)
	out := &LockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start celery worker: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	started := time.Now()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM) // warm shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() || (w.LogAfter > 0 && time.Since(started) > w.LogAfter) {
			t.Logf("celery worker output (started %s):\n%s", started.Format("15:04:05.000"), out.String())
		}
	})
}

// PythonVersionAtLeast reports whether the version set under test imports
// module (a name PythonVersions lists: "kombu", "celery", "redis-py") at
// version min or later ("5.4", "5.3.0"), for tests of behaviour that
// changed between Kombu or Celery releases.
func PythonVersionAtLeast(t testing.TB, module, min string) bool {
	t.Helper()
	line, err := PythonVersions()
	if err != nil {
		t.Fatalf("python versions: %v", err)
	}
	for _, f := range strings.Fields(line) {
		name, v, _ := strings.Cut(f, "=")
		if name != module {
			continue
		}
		have, want := strings.Split(v, "."), strings.Split(min, ".")
		for i := range want {
			h, w := 0, 0
			if i < len(have) {
				h, _ = strconv.Atoi(have[i])
			}
			w, _ = strconv.Atoi(want[i])
			if h != w {
				return h > w
			}
		}
		return true
	}
	t.Fatalf("python versions %q do not name %s", line, module)
	return false
}
