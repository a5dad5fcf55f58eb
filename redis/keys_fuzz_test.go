package redis

import (
	"strings"
	"testing"

	"github.com/kombu-go/kombu/transport"
)

// FuzzBindingMember: a binding row whose fields hold none of sep's
// bytes is written as routing key + sep + pattern + sep + queue and read back
// unchanged; any stored member either splits into exactly three fields
// (and is written back identically) or is refused.
func FuzzBindingMember(f *testing.F) {
	f.Add("rk.direct", "", "q_direct", DefaultSep, "rk\x06\x16\x06\x16q")
	f.Add("a.*.#", `^a\..*?[^\.]\..*?$`, "q_topic1", DefaultSep, "a\x06\x16b\x06\x16c\x06\x16d")
	f.Add("", "", "w1@host.celery.pidbox", DefaultSep, "")
	f.Add("x", "y", "z", "|", "x|y|z")
	f.Fuzz(func(t *testing.T, rk, pattern, queue, sep, stored string) {
		if sep == "" {
			return
		}
		o := DefaultOptions()
		o.Sep = sep
		k, err := newKeys(&o, 0)
		if err != nil {
			t.Fatalf("newKeys: %v", err)
		}
		row := transport.BindingRow{RoutingKey: rk, Pattern: pattern, Queue: queue}
		m := k.bindingMember(row)
		// Unambiguous when no field holds any of sep's bytes (Kombu's
		// plain split has the same limit). Bytes, not runes: the fields
		// and sep may be invalid UTF-8, and "\xeb" + "\x85\x85" joins into
		// a valid rune that strings.ContainsAny would not see as "\xeb".
		if !containsAnyByte(rk+pattern+queue, sep) {
			back, ok := k.parseMember(m)
			if !ok || back != row {
				t.Fatalf("member %q parsed to %+v (%v), want %+v", m, back, ok, row)
			}
		}
		if got, ok := k.parseMember(stored); ok {
			if again := k.bindingMember(got); again != stored {
				t.Fatalf("member %q parsed to %+v, written back as %q", stored, got, again)
			}
			if strings.Count(stored, sep) != 2 {
				t.Fatalf("member %q with %d separators accepted", stored, strings.Count(stored, sep))
			}
		}
	})
}

// containsAnyByte reports whether s holds any byte of set.
func containsAnyByte(s, set string) bool {
	for i := 0; i < len(set); i++ {
		if strings.IndexByte(s, set[i]) >= 0 {
			return true
		}
	}
	return false
}
