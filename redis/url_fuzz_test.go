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
// matching transport.ErrBadURL, and neither its errors nor the URL's
// String() show the password.
func FuzzParseURL(f *testing.F) {
	f.Add("alice", "s3cret", "redis://%s@localhost:6379/2?global_keyprefix=p:&priority_steps=[0,3,6,9]&socket_timeout=1.5")
	f.Add("", "pw12", "rediss://%s@h/0?ssl_cert_reqs=CERT_NONE&health_check_interval=25")
	f.Add("u", "pass", "sentinel://%s@h1;sentinel://h2/1?master_name=m&fanout_prefix=/{{db}}.")
	f.Add("u", "pass", "redis://%s@h/x?unknown=1")
	f.Add("u", "secretpw", "redis://%s@h/0?max_connections=0&wait_connections=-1&restore_priority=own")
	f.Fuzz(func(t *testing.T, user, pass, tmpl string) {
		if strings.Count(tmpl, "%s") != 1 || !strings.Contains(tmpl, "%s@") {
			return
		}
		raw := strings.Replace(tmpl, "%s", url.UserPassword(user, pass).String(), 1)
		secret := len(pass) >= 4 && !strings.Contains(strings.Replace(tmpl, "%s", user, 1), pass) && !strings.Contains(user, pass)
		esc := url.UserPassword("", pass).String()[1:]
		leaks := func(s string) bool { return secret && (strings.Contains(s, pass) || strings.Contains(s, esc)) }
		u, err := transport.ParseURL(raw)
		if err != nil {
			return // FuzzParseURL in package transport covers this
		}
		if leaks(u.String()) {
			t.Fatalf("String() %q shows the password", u.String())
		}
		o := DefaultOptions()
		cc := connConfig{poolSize: DefaultMaxConnections}
		err = applyURLOptions(&o, &cc, u.Options)
		if err == nil {
			_, err = parseDB(u.VirtualHost)
		}
		if err != nil {
			if !errors.Is(err, transport.ErrBadURL) {
				t.Fatalf("error does not match ErrBadURL: %v", err)
			}
			if leaks(err.Error()) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		if _, err := newKeys(&o, 0); err != nil {
			t.Fatalf("options accepted but keys refused: %v", err)
		}
	})
}
