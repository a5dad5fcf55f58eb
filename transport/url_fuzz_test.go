package transport

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// FuzzParseURL: ParseURL never panics and fails only with ErrBadURL; the
// password leaves no trace: changing it changes neither String() nor
// Redact's output, ParseURL's errors do not show it, String() parses back
// with the password masked and Unredacted() with it intact.
func FuzzParseURL(f *testing.F) {
	f.Add("user", "s3cret", "redis://%s@localhost:6379/2?visibility_timeout=600")
	f.Add("", "pw", "rediss://%s@h:1/0?ssl_cert_reqs=CERT_REQUIRED")
	f.Add("u", "p;w@d", "sentinel://%s@h1:26379;sentinel://h2:26379/0?master_name=m")
	f.Add("alice", "x%zz", "redis://%s@[::1]:6379")
	f.Add("a", "b", "redis://%s@host:port/x")
	f.Add("a:b", "c@d", "redis://%s@h/0;redis://x")
	f.Add("u", "p,w", "rediscluster://%s@a:7000,b,c:7002/0?hash_tag=x")
	f.Fuzz(func(t *testing.T, user, pass, tmpl string) {
		// Credentials where a URL has them, right after a "://" (typos are
		// covered by TestRedactTypos).
		at := strings.Index(tmpl, "://%s@")
		if strings.Count(tmpl, "%s") != 1 || at < 0 || at != strings.Index(tmpl, "://") || strings.ContainsAny(tmpl[:at], "?#/;") {
			return
		}
		build := func(pw string) string {
			return strings.Replace(tmpl, "%s", url.UserPassword(user, pw).String(), 1)
		}
		raw := build(pass)
		u, err := ParseURL(raw)
		if err != nil && !errors.Is(err, ErrBadURL) {
			t.Fatalf("error does not match ErrBadURL: %v", err)
		}
		// The same URL with another password. A ";" in the password makes
		// another URL list, so compare only without one.
		other := "Q"
		if pass == other {
			other = "R"
		}
		if strings.Contains(url.UserPassword("", pass).String(), ";") || pass == "" {
			return
		}
		raw2 := build(other)
		if r1, r2 := Redact(raw), Redact(raw2); r1 != r2 {
			t.Fatalf("Redact depends on the password: %q vs %q", r1, r2)
		}
		u2, err2 := ParseURL(raw2)
		if (err == nil) != (err2 == nil) {
			return // the password changed the URL's structure
		}
		if err != nil {
			// Errors may mask more than the password (every occurrence of
			// it), so look for a distinctive password only.
			esc := url.UserPassword("", pass).String()[1:]
			distinct := len(pass) >= 4 && !strings.Contains(raw2, pass) && !strings.Contains(raw2, esc) &&
				!strings.Contains(err2.Error(), pass) && !strings.Contains(err2.Error(), esc)
			if distinct && (strings.Contains(err.Error(), pass) || strings.Contains(err.Error(), esc)) {
				t.Fatalf("ParseURL's error shows the password %q: %v", pass, err)
			}
			return
		}
		if s1, s2 := u.String(), u2.String(); s1 != s2 {
			t.Fatalf("String() depends on the password: %q vs %q", s1, s2)
		}
		if u.Password == "" {
			return
		}
		if back, err := ParseURL(u.String()); err == nil && back.Password != "**" {
			t.Fatalf("String() %q parses to password %q, want **", u.String(), back.Password)
		}
		if back, err := ParseURL(u.Unredacted()); err != nil || back.Password != u.Password || back.Username != u.Username {
			t.Fatalf("Unredacted() %q parses to %+v, %v; want user %q password %q", u.Unredacted(), back, err, u.Username, u.Password)
		}
	})
}
