package interop

// Helper processes: the test binary re-executes itself with helperEnv set
// (see TestMain) to play a Go peer that the test can kill with SIGKILL.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/kombu-go/kombu"
	"github.com/kombu-go/kombu/internal/testenv"
)

// Environment of the helper process.
const (
	helperURLEnv   = "KOMBU_INTEROP_URL"
	helperQueueEnv = "KOMBU_INTEROP_QUEUE"
	// helperPrefetchEnv is the consumer's prefetch (default 1).
	helperPrefetchEnv = "KOMBU_INTEROP_PREFETCH"
)

// runHelper runs one helper mode and returns the exit code.
//
// "consume-hang": consume the queue with manual acks, print the first
// message as a JSON line {"tag", "redelivered"}, then hang in the handler
// without acking until killed. With a prefetch above 1 the consumer takes
// (and records as unacked) more messages while the handler hangs.
func runHelper(mode string) int {
	switch mode {
	case "consume-hang":
		ctx := context.Background()
		conn, err := kombu.Dial(ctx, os.Getenv(helperURLEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper: dial:", err)
			return 2
		}
		q := kombu.Queue{Name: os.Getenv(helperQueueEnv)}
		prefetch, _ := strconv.Atoi(os.Getenv(helperPrefetchEnv))
		err = conn.Consumer([]kombu.Queue{q}, kombu.WithManualAck(), kombu.WithPrefetch(max(prefetch, 1))).
			Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
				line, _ := json.Marshal(map[string]any{"tag": m.DeliveryTag, "redelivered": m.Redelivered})
				os.Stdout.Write(append(line, '\n'))
				select {} // never ack: wait to be killed
			})
		fmt.Fprintln(os.Stderr, "helper: consume:", err)
		return 2
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
	return 2
}

// helperLine is what a consume-hang helper prints.
type helperLine struct {
	Tag         string `json:"tag"`
	Redelivered bool   `json:"redelivered"`
}

// startHangingGoConsumer starts a consume-hang helper on queue with the
// given prefetch and returns the first message it took and a function that
// kills it with SIGKILL.
func (e *env) startHangingGoConsumer(queue string, prefetch int, opts ...string) (helperLine, func()) {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=consume-hang", helperURLEnv+"="+e.goURL(opts...), helperQueueEnv+"="+queue,
		helperPrefetchEnv+"="+strconv.Itoa(prefetch))
	stderr := &testenv.LockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start helper: %v", err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill() // SIGKILL: no deferred cleanup, no restore
			_ = cmd.Wait()
		}
	}
	e.t.Cleanup(kill)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got helperLine
	select {
	case l, ok := <-lines:
		if !ok {
			kill()
			e.t.Fatalf("Go helper ended without a message:\n%s", stderr)
		}
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			e.t.Fatalf("Go helper printed %q: %v", l, err)
		}
	case <-time.After(20 * time.Second):
		kill()
		e.t.Fatalf("Go helper took no message within 20s:\n%s", stderr)
	}
	return got, kill
}
