package redis

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

// TestOpenURLOptions proves Open reads Kombu's option names from the URL
// query, the database from the path, accepts the core's options silently,
// and that the backend works with the result.
func TestOpenURLOptions(t *testing.T) {
	mr := miniredis.RunT(t)
	u := "redis://" + mr.Addr() + "/3?global_keyprefix=pfx:&sep=:&priority_steps=[0, 5]" +
		"&fanout_prefix=true&fanout_patterns=false&unacked_key=ua&unacked_index_key=ui&unacked_mutex_key=um" +
		"&unacked_mutex_expire=60&unacked_restore_limit=7&socket_timeout=2.5&socket_connect_timeout=1" +
		"&health_check_interval=10&max_connections=4&ack_emulation=true&restore_priority=base" +
		"&malformed_key=dlq&wait_connections=3" +
		"&visibility_timeout=60&polling_interval=0.5&deadletter_queue=x&queue_order_strategy=sorted&unacked_restore_interval=5"
	b, err := Open(bg, u)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	o := b.Options()
	want := DefaultOptions()
	want.KeyPrefix, want.Sep, want.PrioritySteps = "pfx:", ":", []int{0, 5}
	want.FanoutPatterns = false
	want.UnackedKey, want.UnackedIndexKey, want.UnackedMutexKey = "ua", "ui", "um"
	want.UnackedMutexExpire, want.UnackedRestoreLimit = time.Minute, 7
	want.HealthCheckInterval = 10 * time.Second
	want.RestorePriority, want.MalformedKey, want.WaitConnections = RestoreBase, "dlq", 3
	want.DB = 3
	o.Logger, o.Clock = nil, nil
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("options\n got %+v\nwant %+v", o, want)
	}
	if got := b.k.fanoutChannel("fx", "r1"); got != "pfx:/3.fx" {
		t.Fatalf("fanout channel %q", got)
	}
	if err := b.Put(bg, "q", 7, []byte("m")); err != nil {
		t.Fatal(err)
	}
	mr.Select(3)
	if !mr.Exists("pfx:q:5") {
		t.Fatalf("keys in db 3: %v", mr.Keys())
	}
	co := b.client.(*goredis.Client).Options()
	if co.PoolSize != 4 {
		t.Fatalf("pool size %d, want max_connections = 4", co.PoolSize)
	}
	if wo := b.wait.(*goredis.Client).Options(); wo.PoolSize != 3 || wo.MaxActiveConns != 3 || wo.DB != 3 || wo.Addr != co.Addr {
		t.Fatalf("wait pool %+v, want 3 connections to the same server and db", wo)
	}
	if co.ReadTimeout != 2500*time.Millisecond || co.DialTimeout != time.Second || co.MaxRetries > 0 {
		t.Fatalf("socket timeouts or retries not applied: %+v", co)
	}
}

// TestOpenURLForms proves the accepted spellings: fanout_prefix false and
// a custom string, priority_steps as "0,3,6,9", "[0, 3, 6, 9]" and a
// tuple, None for optional values, db from "", "/" and "/0".
func TestOpenURLForms(t *testing.T) {
	mr := miniredis.RunT(t)
	cases := []struct {
		query  string
		check  func(Options) bool
		prefix string
	}{
		{"fanout_prefix=false", func(o Options) bool { return o.FanoutPrefix == "" }, ""},
		{"fanout_prefix=/custom.", func(o Options) bool { return o.FanoutPrefix == "/custom." }, "/custom."},
		{"priority_steps=0,3,6,9", func(o Options) bool { return slices.Equal(o.PrioritySteps, []int{0, 3, 6, 9}) }, "/0."},
		{"priority_steps=[0,%203,%206,%209]", func(o Options) bool { return slices.Equal(o.PrioritySteps, []int{0, 3, 6, 9}) }, "/0."},
		{"priority_steps=(0,1)", func(o Options) bool { return slices.Equal(o.PrioritySteps, []int{0, 1}) }, "/0."},
		{"unacked_restore_limit=None&socket_timeout=None", func(o Options) bool { return o.UnackedRestoreLimit == 0 }, "/0."},
		{"restore_priority=own", func(o Options) bool { return o.RestorePriority == RestoreOwn }, "/0."},
	}
	for _, path := range []string{"", "/", "/0"} {
		for _, c := range cases {
			b, err := Open(bg, "redis://"+mr.Addr()+path+"?"+c.query)
			if err != nil {
				t.Fatalf("%s: %v", c.query, err)
			}
			if !c.check(b.Options()) || b.k.fanoutPrefix != c.prefix {
				t.Fatalf("%s: options %+v, fanout prefix %q", c.query, b.Options(), b.k.fanoutPrefix)
			}
			_ = b.Close()
		}
	}
}

// TestOpenURLErrors proves bad URLs fail with an error matching
// transport.ErrBadURL (before any connection): unknown options,
// ack_emulation=false, bad values, a non-integer database, sentinel
// without master_name, ssl options on redis://.
func TestOpenURLErrors(t *testing.T) {
	mr := miniredis.RunT(t)
	base := "redis://" + mr.Addr()
	for _, u := range []string{
		base + "?no_such_option=1",
		base + "?ack_emulation=false",
		base + "?ack_emulation=maybe",
		base + "?priority_steps=a,b",
		base + "?priority_steps=[]",
		base + "?priority_steps=3,0",
		base + "?priority_steps=0,-3",
		base + "?sep=",
		base + "?fanout_patterns=sometimes",
		base + "?fanout_prefix=/{x}.",
		base + "?unacked_mutex_expire=soon",
		base + "?unacked_mutex_expire=0",
		base + "?unacked_restore_limit=-1",
		base + "?max_connections=0",
		base + "?restore_priority=middle",
		base + "?wait_connections=-2",
		base + "?socket_timeout=-1",
		base + "?ssl_cert_reqs=sometimes",
		base + "?ssl_cert_reqs=required",
		base + "?unacked_key=",
		base + "/db3",
		base + "/-1",
		"sentinel://" + mr.Addr(),
		"rediss://" + mr.Addr() + "?ssl_ca_certs=/nonexistent/ca.pem",
		"rediss://" + mr.Addr() + "?ssl_keyfile=/nonexistent/key.pem",
		"memcached://" + mr.Addr(),
	} {
		u := u
		b, err := Open(bg, u)
		if err == nil {
			_ = b.Close()
			t.Errorf("%s: no error", u)
			continue
		}
		if !errors.Is(err, transport.ErrBadURL) {
			t.Errorf("%s: %v does not match ErrBadURL", u, err)
		}
	}
	_, err := Open(bg, base+"?ack_emulation=false")
	if err == nil || !strings.Contains(err.Error(), "ack_emulation=false is not supported") {
		t.Fatalf("ack_emulation error is not clear: %v", err)
	}
}

// TestOpenUnreachable proves Open reports a server it cannot reach, with
// the password masked.
func TestOpenUnreachable(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	mr.Close()
	_, err := Open(bg, "redis://user:secret@"+addr+"/0?socket_connect_timeout=1")
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("err %v", err)
	}
}

// TestCertReqs proves the ssl_cert_reqs spellings and what they mean for
// the TLS configuration.
func TestCertReqs(t *testing.T) {
	for in, want := range map[string]string{
		"CERT_REQUIRED": "required", "required": "required", "CERT_OPTIONAL": "optional",
		"optional": "optional", "CERT_NONE": "none", "none": "none", "ssl.CERT_NONE": "none",
	} {
		got, err := parseCertReqs(in)
		if err != nil || got != want {
			t.Fatalf("%s: %q %v", in, got, err)
		}
	}
	for reqs, insecure := range map[string]bool{"none": true, "optional": false, "required": false} {
		c, err := (&connConfig{certReqs: reqs}).tlsConfig()
		if err != nil || c.InsecureSkipVerify != insecure {
			t.Fatalf("%s: %+v %v", reqs, c, err)
		}
	}
}

// TestRegisteredSchemes proves the package registers redis, rediss and
// sentinel with the transport registry.
func TestRegisteredSchemes(t *testing.T) {
	s := transport.Schemes()
	for _, want := range []string{"redis", "rediss", "sentinel"} {
		if !slices.Contains(s, want) {
			t.Fatalf("schemes %v lack %q", s, want)
		}
	}
	b, _, err := transport.OpenURL(bg, "redis://"+miniredis.RunT(t).Addr())
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
}

// TestNewOptionErrors proves New validates options (ErrBadOption) and never
// accepts a nil client.
func TestNewOptionErrors(t *testing.T) {
	e := newMiniEnv(t)
	for name, opt := range map[string]Option{
		"empty sep":      WithSep(""),
		"no steps":       WithPrioritySteps(),
		"unsorted steps": WithPrioritySteps(0, 6, 3),
		"restore":        WithRestorePriority("sideways"),
		"mutex expire":   WithUnackedMutexExpire(0),
		"fanout format":  WithFanoutPrefix("/{dbx}."),
		"malformed key":  WithMalformedKey(""),
		"wait conns":     WithWaitConnections(-1),
	} {
		if _, err := New(e.client, opt); !errors.Is(err, ErrBadOption) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := New(nil); !errors.Is(err, ErrBadOption) {
		t.Fatal(err)
	}
}

// TestNewReadsClientDB proves the fanout prefix uses the database of a
// *redis.Client handed to New, and WithDB overrides it.
func TestNewReadsClientDB(t *testing.T) {
	e := newMiniEnv(t)
	c5 := goredis.NewClient(&goredis.Options{Addr: e.mr.Addr(), DB: 5})
	defer c5.Close()
	b, err := New(c5)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.k.fanoutChannel("fx", ""); got != "/5.fx" {
		t.Fatalf("%q", got)
	}
	b, _ = New(e.client, WithDB(7))
	if got := b.k.fanoutChannel("fx", ""); got != "/7.fx" {
		t.Fatalf("%q", got)
	}
}
