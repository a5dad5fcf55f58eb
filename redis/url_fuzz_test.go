package redis

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/kombu-go/kombu/transport"
)

// FuzzParseURL: the Redis backend's reading of a Kombu URL (scheme, the
// database path, every option) never panics, fails only with an error
// matching transport.ErrBadURL, and the password leaves no trace: the same
// URL with another password gives the same String() and the same verdict,
// and an error shows a distinctive password nowhere. (Comparing with
// another password, not searching for it: " 0000" as user name is written
// "%200000", which holds the password "0000" without leaking it.)
func FuzzParseURL(f *testing.F) {
	f.Add("alice", "s3cret", "redis://%s@localhost:6379/2?global_keyprefix=p:&priority_steps=[0,3,6,9]&socket_timeout=1.5")
	f.Add("", "pw12", "rediss://%s@h/0?ssl_cert_reqs=CERT_NONE&health_check_interval=25")
	f.Add("u", "pass", "sentinel://%s@h1;sentinel://h2/1?master_name=m&fanout_prefix=/{{db}}.")
	f.Add("u", "pass", "redis://%s@h/x?unknown=1")
	f.Add("u", "secretpw", "redis://%s@h/0?max_connections=0&wait_connections=-1&restore_priority=own")
	f.Fuzz(func(t *testing.T, user, pass, tmpl string) {
		// Credentials where a URL has them, right after the first "://"
		// (elsewhere, in a query for instance, they are not credentials).
		at := strings.Index(tmpl, "://%s@")
		if strings.Count(tmpl, "%s") != 1 || at < 0 || at != strings.Index(tmpl, "://") || strings.ContainsAny(tmpl[:at], "?#/;") || pass == "" {
			return
		}
		build := func(pw string) string {
			return strings.Replace(tmpl, "%s", url.UserPassword(user, pw).String(), 1)
		}
		other := "Q"
		if pass == other {
			other = "R"
		}
		if strings.Contains(url.UserPassword("", pass).String(), ";") {
			return // a ";" in the password makes another URL list
		}
		check := func(raw string) (string, error) {
			u, err := transport.ParseURL(raw)
			if err != nil {
				return "", nil // FuzzParseURL in package transport covers this
			}
			o := DefaultOptions()
			cc := connConfig{poolSize: DefaultMaxConnections}
			err = applyURLOptions(&o, &cc, u.Options)
			if err == nil {
				_, err = parseDB(u.VirtualHost)
			}
			if err == nil {
				if _, kerr := newKeys(&o, 0); kerr != nil {
					t.Fatalf("options accepted but keys refused: %v", kerr)
				}
			}
			return u.String(), err
		}
		s1, err1 := check(build(pass))
		s2, err2 := check(build(other))
		if s1 != s2 {
			t.Fatalf("String() depends on the password: %q vs %q", s1, s2)
		}
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("the password changes the verdict: %v vs %v", err1, err2)
		}
		if err1 == nil {
			return
		}
		if !errors.Is(err1, transport.ErrBadURL) {
			t.Fatalf("error does not match ErrBadURL: %v", err1)
		}
		esc := url.UserPassword("", pass).String()[1:]
		distinct := len(pass) >= 4 && !strings.Contains(build(other), pass) && !strings.Contains(build(other), esc) &&
			!strings.Contains(err2.Error(), pass) && !strings.Contains(err2.Error(), esc)
		if distinct && (strings.Contains(err1.Error(), pass) || strings.Contains(err1.Error(), esc)) {
			t.Fatalf("error shows the password %q: %v", pass, err1)
		}
	})
}
