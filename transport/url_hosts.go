package transport

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// splitHostList handles a comma-separated host list in one URL
// ("rediscluster://a:7000,b:7001/0?..."), which the HTTP URL rules cannot
// read: it returns rest with only the first host, and the other hosts.
// Without a comma, rest comes back as it is.
func splitHostList(rest string) (string, []HostPort, error) {
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		userinfo, hosts = authority[:at+1], authority[at+1:]
	}
	if !strings.Contains(hosts, ",") {
		return rest, nil, nil
	}
	list := strings.Split(hosts, ",")
	var extra []HostPort
	for _, h := range list[1:] {
		u, err := url.Parse("http://" + h)
		if err != nil || u.Hostname() == "" || u.User != nil || u.Path != "" {
			return "", nil, fmt.Errorf("%w: bad host %q in a host list", ErrBadURL, h)
		}
		hp := HostPort{Host: u.Hostname()}
		if ps := u.Port(); ps != "" {
			n, err := strconv.Atoi(ps)
			if err != nil {
				return "", nil, fmt.Errorf("%w: bad port %q", ErrBadURL, ps)
			}
			hp.Port = n
		}
		extra = append(extra, hp)
	}
	if list[0] == "" {
		return "", nil, fmt.Errorf("%w: empty host in a host list", ErrBadURL)
	}
	return userinfo + list[0] + tail, extra, nil
}
