package transport

import (
	"errors"
	"reflect"
	"testing"
)

// TestParseURLHostList proves a comma-separated host list in one URL
// (Redis Cluster seeds) gives one HostPort per host, in order, with the
// credentials, virtual host and options of the URL, and that an empty or
// malformed host in the list is ErrBadURL.
func TestParseURLHostList(t *testing.T) {
	u, err := ParseURL("rediscluster://u:p%40ss@a:7000,b,c:7002/0?hash_tag=x")
	if err != nil {
		t.Fatal(err)
	}
	want := []HostPort{{Host: "a", Port: 7000}, {Host: "b"}, {Host: "c", Port: 7002}}
	if !reflect.DeepEqual(u.Hosts, want) || u.Username != "u" || u.Password != "p@ss" || u.VirtualHost != "0" || u.Options["hash_tag"] != "x" {
		t.Fatalf("parsed %+v", u)
	}
	for _, bad := range []string{"rediscluster://a:1,,b:2", "rediscluster://,b:2", "rediscluster://a:1,b:x"} {
		if _, err := ParseURL(bad); !errors.Is(err, ErrBadURL) {
			t.Errorf("ParseURL(%q) = %v, want ErrBadURL", bad, err)
		}
	}
}
