package transport_test

import (
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/virtual"
)

// TestParseURL covers the URL forms Kombu accepts for Redis (wire spec §2)
// and Sentinel, with the password redacted by String.
func TestParseURL(t *testing.T) {
	cases := []struct {
		raw      string
		want     transport.URL
		redacted string
	}{
		{"redis://", transport.URL{Scheme: "redis", Options: map[string]string{}}, "redis://"},
		{"redis://localhost", transport.URL{Scheme: "redis", Hosts: []transport.HostPort{{Host: "localhost"}}, Options: map[string]string{}}, "redis://localhost"},
		{"redis://h:6379/", transport.URL{Scheme: "redis", Hosts: []transport.HostPort{{Host: "h", Port: 6379}}, Options: map[string]string{}}, "redis://h:6379"},
		{"redis://:pw@h:6380/3?visibility_timeout=60",
			transport.URL{Scheme: "redis", Hosts: []transport.HostPort{{Host: "h", Port: 6380}}, Password: "pw", VirtualHost: "3", Options: map[string]string{"visibility_timeout": "60"}},
			"redis://:**@h:6380/3?visibility_timeout=60"},
		{"rediss://user:pass@host/0",
			transport.URL{Scheme: "rediss", Hosts: []transport.HostPort{{Host: "host"}}, Username: "user", Password: "pass", VirtualHost: "0", Options: map[string]string{}},
			"rediss://user:**@host/0"},
		{"redis://user@host",
			transport.URL{Scheme: "redis", Hosts: []transport.HostPort{{Host: "host"}}, Username: "user", Options: map[string]string{}},
			"redis://user@host"},
		{"redis://:p%40ss%3Aw%2Fd%23%20x@h/0",
			transport.URL{Scheme: "redis", Hosts: []transport.HostPort{{Host: "h"}}, Password: "p@ss:w/d# x", VirtualHost: "0", Options: map[string]string{}},
			"redis://:**@h/0"},
		{"redis://[::1]:6379/2", transport.URL{Scheme: "redis", Hosts: []transport.HostPort{{Host: "::1", Port: 6379}}, VirtualHost: "2", Options: map[string]string{}}, "redis://[::1]:6379/2"},
		{"sentinel://:pw@h1:26379;sentinel://h2:26380/0",
			transport.URL{Scheme: "sentinel", Hosts: []transport.HostPort{{Host: "h1", Port: 26379}, {Host: "h2", Port: 26380}}, Password: "pw", VirtualHost: "0", Options: map[string]string{}},
			"sentinel://:**@h1:26379;sentinel://:**@h2:26380/0"},
		{"sentinel://h1:26379?master_name=m; sentinel://h2:26380?a=1&a=2",
			transport.URL{Scheme: "sentinel", Hosts: []transport.HostPort{{Host: "h1", Port: 26379}, {Host: "h2", Port: 26380}}, Options: map[string]string{"master_name": "m", "a": "2"}},
			"sentinel://h1:26379;sentinel://h2:26380?a=2&master_name=m"},
		{"memory://", transport.URL{Scheme: "memory", Options: map[string]string{}}, "memory://"},
	}
	for _, c := range cases {
		t.Run(c.raw, func(t *testing.T) {
			u, err := transport.ParseURL(c.raw)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if !reflect.DeepEqual(*u, c.want) {
				t.Errorf("ParseURL = %+v\nwant %+v", *u, c.want)
			}
			if got := u.String(); got != c.redacted {
				t.Errorf("String() = %q, want %q", got, c.redacted)
			}
			if c.want.Password != "" && strings.Contains(u.String(), c.want.Password) {
				t.Errorf("String() leaks the password: %q", u.String())
			}
			// Unredacted parses back to the same URL.
			back, err := transport.ParseURL(u.Unredacted())
			if err != nil || !reflect.DeepEqual(back, u) {
				t.Errorf("ParseURL(Unredacted() = %q) = %+v, %v; want %+v", u.Unredacted(), back, err, u)
			}
		})
	}
}

// TestParseURLErrors checks bad URLs fail with ErrBadURL without putting
// the password in the error.
func TestParseURLErrors(t *testing.T) {
	for _, raw := range []string{
		"", ";", "localhost:6379", "://h", "redis://:secret@h:notaport/0",
		"redis://:secret@h:99999999999999999999/0", "redis://h;sentinel://h2", "redis://:secret@h/0?%zz=1",
		"redis://:secret@h%zz/0",
	} {
		u, err := transport.ParseURL(raw)
		if !errors.Is(err, transport.ErrBadURL) {
			t.Errorf("ParseURL(%q) = %+v, %v; want ErrBadURL", raw, u, err)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error leaks the password: %v", raw, err)
		}
	}
}

// TestRedact checks Redact never fails and masks every password.
func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"redis://u:secret@h:6379/0", "redis://u:**@h:6379/0"},
		{"redis://:secret@h", "redis://:**@h"},
		{"redis://u@h", "redis://u@h"},
		{"redis://h/0", "redis://h/0"},
		{"redis://:sec@ret@h", "redis://:**@h"},
		{"sentinel://:a@h1;sentinel://:b@h2", "sentinel://:**@h1;sentinel://:**@h2"},
		{"not a url", "not a url"},
		{"", ""},
		{"x://", "x://"},
		{"junk :secret@ junk", "junk :**@ junk"}, // no "://" (a typo): masked all the same
		{"redis://u:pw@", "redis://u:**@"},
	}
	for _, c := range cases {
		if got := transport.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestApplyURLOptions checks the core's Kombu options are parsed strictly,
// removed from the map, and the others left for the backend.
func TestApplyURLOptions(t *testing.T) {
	m := map[string]string{
		"visibility_timeout":       "60",
		"polling_interval":         "0.25",
		"unacked_restore_interval": "1m30s",
		"deadletter_queue":         "dead",
		"queue_order_strategy":     "sorted",
		"sep":                      ":",
	}
	var o virtual.Options
	if err := o.ApplyURLOptions(m); err != nil {
		t.Fatal(err)
	}
	if o.VisibilityTimeout != time.Minute || o.PollingInterval != 250*time.Millisecond || o.RestoreInterval != 90*time.Second ||
		o.DeadLetterQueue != "dead" || o.QueueOrder != virtual.SortedOrder {
		t.Errorf("options = %+v", o)
	}
	if !maps.Equal(m, map[string]string{"sep": ":"}) {
		t.Errorf("left for the backend: %v", m)
	}
	for _, v := range []string{"round_robin", "priority", "sorted"} {
		var o virtual.Options
		if err := o.ApplyURLOptions(map[string]string{"queue_order_strategy": v}); err != nil || string(o.QueueOrder) != v {
			t.Errorf("queue_order_strategy=%s: %v, %v", v, o.QueueOrder, err)
		}
	}
	for name, v := range map[string]string{
		"visibility_timeout":       "-1",
		"polling_interval":         "soon",
		"unacked_restore_interval": "-5s",
		"queue_order_strategy":     "random",
	} {
		var o virtual.Options
		if err := o.ApplyURLOptions(map[string]string{name: v}); !errors.Is(err, transport.ErrBadURL) {
			t.Errorf("%s=%s: %v, want ErrBadURL", name, v, err)
		}
	}
}

// TestParseSeconds checks Kombu's float seconds and Go durations, and
// refuses what is not a usable duration.
func TestParseSeconds(t *testing.T) {
	good := map[string]time.Duration{
		"0": 0, "1": time.Second, "1.5": 1500 * time.Millisecond, "3600": time.Hour, "0.001": time.Millisecond,
		"1e3": 1000 * time.Second, "250ms": 250 * time.Millisecond, "1h30m": 90 * time.Minute,
	}
	for in, want := range good {
		if got, err := transport.ParseSeconds(in); err != nil || got != want {
			t.Errorf("ParseSeconds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "-1s", "NaN", "nan", "inf", "+Inf", "-inf", "1e300", "9999999999999"} {
		if got, err := transport.ParseSeconds(in); err == nil {
			t.Errorf("ParseSeconds(%q) = %v, nil; want an error", in, got)
		}
	}
}
