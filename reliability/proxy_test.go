package reliability

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/kombu-go/kombu"
)

// proxy forwards TCP connections from a loopback port to target. Drop
// closes every connection it carries; Stall stops forwarding (existing and
// new connections stay open, bytes are held) until Resume; Blackhole stalls
// the connections open now for good (a peer that vanished without a FIN or
// RST) while new connections work.
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]chan struct{} // -> the connection's own gate
	gate    chan struct{}              // closed while forwarding; replaced while stalled
	holes   []chan struct{}            // blackholed gates, opened only by close
	closed  bool
	wg      sync.WaitGroup
	dropped int
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]chan struct{}{}, gate: make(chan struct{})}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		own := make(chan struct{})
		close(own)
		p.conns[c], p.conns[up] = own, own
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies src to dst, holding each chunk while the proxy is stalled.
func (p *proxy) pipe(src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			gate, own := p.gate, p.conns[src]
			p.mu.Unlock()
			<-gate
			if own != nil {
				<-own
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Drop closes every connection through the proxy (both sides).
func (p *proxy) Drop() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		c.Close()
	}
	p.dropped += n
	return n
}

// Stall stops forwarding bytes, without closing anything.
func (p *proxy) Stall() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
	return len(p.conns) / 2
}

// Blackhole stops forwarding on every connection open now, for good.
func (p *proxy) Blackhole() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	hole := make(chan struct{})
	p.holes = append(p.holes, hole)
	for c := range p.conns {
		p.conns[c] = hole
	}
	return len(p.conns) / 2
}

// Resume forwards again, including the bytes held during the stall.
func (p *proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Resume()
	p.mu.Lock()
	for _, h := range p.holes {
		close(h)
	}
	p.holes = nil
	p.mu.Unlock()
	p.ln.Close()
	p.Drop()
	p.wg.Wait()
}

// TestTCPFaults runs producers (WithRetry), list consumers and a fanout
// consumer through a TCP proxy that drops every connection and stalls them
// (a peer that stops answering without closing: what a dead NAT entry or a
// pulled cable looks like), with socket_timeout=1 and
// health_check_interval=1. After each fault, a fresh message is consumed
// again within a bounded time (a blackhole, which nothing resumes, is
// noticed only by socket timeouts and health checks), and at the end every publish that returned
// nil was handled. Fanout is at-most-once (as in Kombu): messages broadcast
// while the subscription is cut are not counted; the test checks that the
// subscription comes back.
func TestTCPFaults(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	px := newProxy(t, srv.Addr())
	const prefix, queue = "proxy:", "pq"
	url := "redis://" + px.Addr() + "/0?global_keyprefix=" + prefix +
		"&socket_timeout=1&socket_connect_timeout=1&health_check_interval=1" +
		"&visibility_timeout=10&unacked_restore_interval=1&unacked_mutex_expire=3"

	l := newLedger()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	waitConsumers := runConsumers(t, ctx, url, queue, 2, l)

	// Fanout consumer: counts broadcasts per probe tag.
	fanEx := kombu.Exchange{Name: "pfan", Type: kombu.Fanout}
	fanConn, err := kombu.Dial(bg, url)
	if err != nil {
		t.Fatal(err)
	}
	defer fanConn.Close()
	var fanMu sync.Mutex
	fanGot := map[string]bool{}
	ready := make(chan struct{})
	fanDone := make(chan struct{})
	go func() {
		defer close(fanDone)
		c := fanConn.Consumer([]kombu.Queue{{Name: "pfanq", Exchange: fanEx}},
			kombu.WithReady(func() { close(ready) }), kombu.WithErrorHandler(func(error) {}))
		_ = c.Consume(ctx, func(ctx context.Context, m *kombu.Message) error {
			fanMu.Lock()
			fanGot[m.DeliveryTag] = true
			fanMu.Unlock()
			return nil
		})
	}()
	<-ready

	stop := make(chan struct{})
	waitProducers := runProducers(t, url, queue, "p", 2, l, stop)

	// A probe publisher straight to the server: it measures how long the
	// consumers behind the proxy take to take a fresh message again.
	direct, err := kombu.Dial(bg, srv.URL(0)+"?global_keyprefix="+prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	directFan := direct.Producer(kombu.WithExchange(fanEx))
	probeN := 0
	recovery := func(what string) (list, fan time.Duration) {
		t.Helper()
		probeN++
		tag := fmt.Sprintf("probe-%d", probeN)
		start := time.Now()
		if _, err := direct.Producer(kombu.WithRoutingKey(queue)).Publish(bg, "probe", kombu.WithDeliveryTag(tag)); err != nil {
			t.Fatal(err)
		}
		l.published(tag, nil)
		waitFor(t, 30*time.Second, "consumers to take a message after "+what, func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.handled[tag] > 0
		})
		list = time.Since(start)
		// Fanout: broadcast every 100 ms until one arrives.
		start = time.Now()
		for i := 0; ; i++ {
			ftag := fmt.Sprintf("fan-%d-%d", probeN, i)
			if _, err := directFan.Publish(bg, "probe", kombu.WithDeliveryTag(ftag)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			fanMu.Lock()
			ok := fanGot[ftag]
			fanMu.Unlock()
			if ok {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("fanout subscription did not come back within 30 s after %s", what)
			}
		}
		fan = time.Since(start)
		t.Logf("after %s: list consumers took a new message in %v, fanout in %v", what, list.Round(time.Millisecond), fan.Round(time.Millisecond))
		return list, fan
	}

	var worstList, worstFan time.Duration
	note := func(a, b time.Duration) {
		worstList, worstFan = max(worstList, a), max(worstFan, b)
	}
	time.Sleep(500 * time.Millisecond)
	drops, stalls, conns := 0, 0, 0
	for i := 0; i < 2; i++ {
		conns += px.Drop()
		drops++
		note(recovery("drop"))
	}
	for i := 0; i < 2; i++ {
		conns += px.Stall()
		stalls++
		time.Sleep(3 * time.Second) // longer than socket_timeout
		px.Resume()
		note(recovery("stall"))
	}
	holes := 0
	for i := 0; i < 2; i++ {
		conns += px.Blackhole()
		holes++
		note(recovery("blackhole"))
	}
	close(stop)
	waitProducers()
	waitFor(t, 30*time.Second, "every sent message to be handled", func() bool { return l.missing() == 0 })
	cancel()
	waitConsumers()
	<-fanDone

	sent, handled, lost, dups := l.tally()
	failed, ferr := l.failures()
	addFault(t, faultRow{
		Fault:    "TCP proxy: drop all connections / stall 3 s / blackhole",
		Injected: fmt.Sprintf("%d drops, %d stalls, %d blackholes (%d connections hit)", drops, stalls, holes, conns),
		Sent:     sent, Handled: handled, Lost: lost, Dups: dups,
		InFlight: "-",
		Notes: fmt.Sprintf("recovery (fresh message consumed) within %v for lists, %v for fanout; %d publishes gave up",
			worstList.Round(100*time.Millisecond), worstFan.Round(100*time.Millisecond), failed),
	})
	if lost != 0 {
		t.Errorf("%d sent messages lost", lost)
	}
	if failed != 0 {
		t.Errorf("%d publishes failed despite WithRetry: %v", failed, ferr)
	}
	if worstList > 15*time.Second {
		t.Errorf("list consumers took %v to recover", worstList)
	}
}
