package transport

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// URL is a parsed Kombu broker URL such as
// "redis://user:secret@host:6379/2?visibility_timeout=600" or, for Sentinel,
// several URLs joined with ";".
//
// Its query parameters carry transport options by their Kombu names; each
// backend validates them strictly (an unknown option is an error, as in
// go-redis's ParseURL).
type URL struct {
	// Scheme selects the backend ("redis", "rediss", "sentinel", "memory").
	Scheme string
	// Hosts are host:port pairs, several for Sentinel. Port 0 means the
	// backend's default.
	Hosts []HostPort
	// Username and Password are the credentials, unescaped.
	Username, Password string
	// VirtualHost is the path without its leading slash (Kombu's
	// virtual_host; the database number on Redis).
	VirtualHost string
	// Options are the query parameters, merged over every part of a
	// multi-URL.
	Options map[string]string
}

// HostPort is one host of a URL.
type HostPort struct {
	Host string
	Port int
}

// String returns "host:port" (port omitted when zero).
func (h HostPort) String() string {
	if h.Port == 0 {
		if strings.Contains(h.Host, ":") {
			return "[" + h.Host + "]" // IPv6
		}
		return h.Host
	}
	return net.JoinHostPort(h.Host, strconv.Itoa(h.Port))
}

// ParseURL parses a Kombu broker URL the way kombu.utils.url.url_to_parts
// does: the part after "scheme://" is read with HTTP URL rules, the path
// (without its leading slash) is the virtual host, and credentials are
// unescaped. Several URLs joined by ";" (Sentinel) give several hosts; the
// credentials, path and options of the first one that has them apply.
func ParseURL(raw string) (*URL, error) {
	parts := strings.Split(raw, ";")
	out := &URL{Options: map[string]string{}}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok || !validScheme(scheme) {
			return nil, fmt.Errorf("%w: %q has no scheme://", ErrBadURL, Redact(raw))
		}
		if i == 0 || out.Scheme == "" {
			out.Scheme = scheme
		} else if scheme != out.Scheme {
			return nil, fmt.Errorf("%w: mixed schemes %q and %q", ErrBadURL, out.Scheme, scheme)
		}
		rest, more, err := splitHostList(rest) // url_hosts.go
		if err != nil {
			return nil, err
		}
		u, err := url.Parse("http://" + rest)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrBadURL, redactErr(err, raw))
		}
		if h := u.Hostname(); h != "" {
			hp := HostPort{Host: h}
			if ps := u.Port(); ps != "" {
				n, err := strconv.Atoi(ps)
				if err != nil {
					return nil, fmt.Errorf("%w: bad port %q", ErrBadURL, ps)
				}
				hp.Port = n
			}
			out.Hosts = append(out.Hosts, hp)
		}
		out.Hosts = append(out.Hosts, more...)
		if u.User != nil && out.Username == "" && out.Password == "" {
			out.Username = u.User.Username()
			out.Password, _ = u.User.Password()
		}
		if path := strings.TrimPrefix(u.Path, "/"); path != "" && out.VirtualHost == "" {
			out.VirtualHost = path
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("%w: bad query: %v", ErrBadURL, err)
		}
		for k, v := range q {
			if len(v) > 0 {
				out.Options[k] = v[len(v)-1]
			}
		}
	}
	if out.Scheme == "" {
		return nil, fmt.Errorf("%w: empty URL", ErrBadURL)
	}
	return out, nil
}

// validScheme reports whether s is a URI scheme (RFC 3986: a letter, then
// letters, digits, "+", "-" or "."), so that text before a misplaced
// "://" (credentials, say) is never taken for one.
func validScheme(s string) bool {
	for i, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// String returns the URL with its password masked, safe to log.
func (u *URL) String() string {
	// Redact again: credentials typed where the parser saw a path (a third
	// slash: "redis:///u:pw@h") are masked too.
	return Redact(u.format(true))
}

// Unredacted returns the URL with its password in clear text.
func (u *URL) Unredacted() string { return u.format(false) }

func (u *URL) format(redact bool) string {
	var b strings.Builder
	hosts := u.Hosts
	if len(hosts) == 0 {
		hosts = []HostPort{{}}
	}
	for i, h := range hosts {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(u.Scheme)
		b.WriteString("://")
		if u.Username != "" || u.Password != "" {
			// Userinfo escaping: a ":" or "@" in the user name must not
			// move the password's boundary.
			ui := url.User(u.Username)
			switch {
			case u.Password == "":
			case redact:
				ui = nil
			default:
				ui = url.UserPassword(u.Username, u.Password)
			}
			if ui == nil {
				b.WriteString(url.User(u.Username).String() + ":**")
			} else {
				b.WriteString(ui.String())
			}
			b.WriteString("@")
		}
		b.WriteString(h.String())
		if i == len(hosts)-1 {
			if u.VirtualHost != "" {
				b.WriteString("/")
				b.WriteString(url.PathEscape(u.VirtualHost))
			}
			if len(u.Options) > 0 {
				keys := make([]string, 0, len(u.Options))
				for k := range u.Options {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				q := url.Values{}
				for _, k := range keys {
					q.Set(k, u.Options[k])
				}
				b.WriteString("?")
				b.WriteString(q.Encode())
			}
		}
	}
	return b.String()
}

// Redact masks the password of every URL in a (possibly ";"-joined) raw
// broker URL string, for logs and errors. It never fails and needs no
// valid URL: in each part, the credentials before the last "@" (back to
// the "://" if it comes before any "@", else to the start of the part)
// keep only the user name. So "redis://u:secret@h" becomes
// "redis://u:**@h", a password holding ";", "/" or "@" is masked whole,
// and "redis:/u:secret@h" becomes "redis:**@h".
func Redact(raw string) string {
	var parts []string
	for i, p := range strings.Split(raw, ";") {
		scheme, at := strings.Index(p, "://"), strings.IndexByte(p, '@')
		if i > 0 && (scheme < 0 || 0 <= at && at < scheme) {
			// Not a URL of its own: the rest of the previous one (a
			// password holding ";").
			parts[len(parts)-1] += ";" + p
			continue
		}
		parts = append(parts, p)
	}
	for i, p := range parts {
		at := strings.LastIndex(p, "@")
		if at < 0 {
			continue
		}
		start := 0
		if j := strings.Index(p, "://"); j >= 0 && j < strings.IndexByte(p, '@') {
			start = j + 3
		}
		if user, _, has := strings.Cut(p[start:at], ":"); has {
			parts[i] = p[:start] + user + ":**" + p[at:]
		}
	}
	return strings.Join(parts, ";")
}

func redactErr(err error, raw string) string {
	msg := err.Error()
	if u, e := url.Parse(raw); e == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "**")
		}
	}
	return Redact(msg)
}
