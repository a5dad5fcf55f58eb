package reliability

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
)

// TestCredentialsRedacted: the password of a broker URL never appears
// where kombu-go prints or logs the URL: Dial's errors (wrong password,
// unreachable server, bad option), Connection.URL, the library's logs
// while it consumes, retries and fails, and the kombu command's error
// lines.
func TestCredentialsRedacted(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	rc := client(t, srv)
	const pw = "Sup3r-S3cret-pw"
	if err := rc.Do(bg, "ACL", "SETUSER", "bob", "on", ">"+pw, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	check := func(where, s string) {
		t.Helper()
		if strings.Contains(s, pw) || strings.Contains(s, "wrong-"+pw) {
			t.Errorf("%s shows the password: %s", where, s)
		}
	}
	good := "redis://bob:" + pw + "@" + srv.Addr() + "/0?global_keyprefix=red:"
	bad := []string{
		"redis://bob:wrong-" + pw + "@" + srv.Addr() + "/0",                   // wrong password
		"redis://bob:" + pw + "@127.0.0.1:1/0",                                // nothing listens
		"redis://bob:" + pw + "@" + srv.Addr() + "/0?no_such_option=1",        // bad option
		"redis://bob:" + pw + "@" + srv.Addr() + "/x",                         // bad database
		"redis:/bob:" + pw + "@" + srv.Addr() + "/0",                          // scheme typo
		"sentinel://bob:" + pw + "@127.0.0.1:1/0?master_name=m",               // no sentinel
		"rediss://bob:" + pw + "@" + srv.Addr() + "/0?ssl_ca_certs=/nonexist", // bad TLS file
	}
	for _, u := range bad {
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		_, err := kombu.Dial(ctx, u, kombu.WithLogger(logger))
		cancel()
		if err == nil {
			t.Fatalf("Dial succeeded: %s", strings.ReplaceAll(u, pw, "**"))
		}
		check("Dial error", err.Error())
		t.Logf("Dial error: %v", err)
	}
	conn, err := kombu.Dial(bg, good, kombu.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	check("Connection.URL", conn.URL())
	if !strings.Contains(conn.URL(), "bob:**@") {
		t.Errorf("Connection.URL() = %q", conn.URL())
	}
	// Work that logs: publish, consume, a server restart under it.
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() {
		done <- conn.Consumer([]kombu.Queue{{Name: "rq"}}).Consume(ctx, func(context.Context, *kombu.Message) error { return nil })
	}()
	p := conn.Producer(kombu.WithRoutingKey("rq"))
	if _, err := p.Publish(bg, "x"); err != nil {
		t.Fatal(err)
	}
	srv.Restart() // the ACL user is gone now: every reconnect fails AUTH
	time.Sleep(1500 * time.Millisecond)
	_, err = p.Publish(bg, "x", kombu.WithRetry(kombu.RetryPolicy{MaxRetries: 2, IntervalStart: 50 * time.Millisecond}))
	if err == nil {
		t.Fatal("publish after the user vanished succeeded")
	}
	check("Publish error", err.Error())
	cancel()
	<-done
	conn.Close()
	check("logs", logs.String())
	if logs.Len() == 0 {
		t.Error("nothing was logged; the check proved nothing")
	}

	// The kombu command prints Dial's error on stderr.
	gotool, err := exec.LookPath("go")
	if err != nil {
		gotool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "kombu")
	if out, err := exec.Command(gotool, "build", "-o", bin, "../cmd/kombu").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kombu: %v\n%s", err, out)
	}
	for _, u := range bad[:3] {
		cmd := exec.Command(bin, "ping", "--url", u)
		cmd.Env = append(os.Environ(), "KOMBU_URL=")
		out, _ := cmd.CombinedOutput()
		check("kombu ping output", string(out))
		if len(out) == 0 {
			t.Errorf("kombu ping printed nothing for a failing URL")
		}
	}
}
