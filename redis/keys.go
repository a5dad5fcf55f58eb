package redis

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/kombu-go/kombu/transport"
)

// This file is the only place that builds Redis key and channel names (wire
// spec §1, §5, §6.3, §7.2, §10). Every name the backend writes is P (the
// global_keyprefix) followed by Kombu's name; members, hash fields and
// everything inside JSON are never prefixed.
//
// Exceptions, by necessity: scripts/publish.lua and publish_batch.lua route
// inside Redis and build the list names of the queues they find as
// ARGV[prefix] .. queue .. ARGV[suffix], with both pieces supplied by
// keys.prefix and keys.listSuffix below; scripts/get.lua builds a
// consumer's lists the same way from keys.stepSuffixes (so that a consumer
// of many queues does not send every list name with every call). The
// formula stays the one written here (queueKey).

// bindingPrefix is what the key of an exchange's binding table has between
// P and the exchange's name.
const bindingPrefix = "_kombu.binding."

// keys builds the names of one backend's keys.
type keys struct {
	prefix  string // P, global_keyprefix
	sep     string
	sharded bool // ClusterLayout sharded: a queue's keys are P+"{"+queue+"}"+... (sharded.go)
	steps   []int

	unacked, unackedIndex, unackedMutex string // with P
	malformed                           string // with P

	fanoutPrefix   string // keyprefix_fanout with {db} filled in, without P
	fanoutPatterns bool

	suffixes []string // stepSuffix of each step, lowest first

	prefixArg, sepArg any // prefix and sep boxed once, for script arguments

	guard string // with a hash tag: a key no one writes, declared by the publish scripts (cluster.go)
}

func newKeys(o *Options, db int) (keys, error) {
	fp, err := formatFanoutPrefix(o.FanoutPrefix, db)
	if err != nil {
		return keys{}, err
	}
	tag, err := HashTagPrefix(o.HashTag)
	if err != nil {
		return keys{}, err
	}
	prefix := tag + o.KeyPrefix // P: {hash_tag}global_keyprefix (cluster.go)
	suffixes := make([]string, len(o.PrioritySteps))
	for i, st := range o.PrioritySteps {
		suffixes[i] = stepSuffix(st, o.Sep)
	}
	return keys{
		sharded:        o.ClusterLayout == LayoutSharded,
		suffixes:       suffixes,
		prefix:         prefix,
		sep:            o.Sep,
		prefixArg:      prefix,
		sepArg:         o.Sep,
		steps:          append([]int(nil), o.PrioritySteps...),
		unacked:        prefix + o.UnackedKey,
		unackedIndex:   prefix + o.UnackedIndexKey,
		unackedMutex:   prefix + o.UnackedMutexKey,
		malformed:      prefix + o.MalformedKey,
		fanoutPrefix:   fp,
		fanoutPatterns: o.FanoutPatterns,
		guard:          slotGuard(tag, prefix),
	}, nil
}

// formatFanoutPrefix fills in a fanout prefix the way Python's
// str.format(db=n) does for the only field Kombu passes: "{db}" becomes the
// database number, "{{" and "}}" become single braces; any other brace is
// an error (Python would raise KeyError or ValueError).
func formatFanoutPrefix(p string, db int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '{' && strings.HasPrefix(p[i:], "{{"):
			b.WriteByte('{')
			i++
		case c == '}' && strings.HasPrefix(p[i:], "}}"):
			b.WriteByte('}')
			i++
		case c == '{' && strings.HasPrefix(p[i:], "{db}"):
			b.WriteString(strconv.Itoa(db))
			i += len("{db}") - 1
		case c == '{' || c == '}':
			return "", fmt.Errorf("fanout_prefix %q: only the {db} field is known (write {{ and }} for literal braces)", p)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// listSuffix returns what follows the queue name in the list for priority:
// "" for step 0, else sep + step (PriorityKey's rule).
func (k *keys) listSuffix(priority int) string {
	return stepSuffix(transport.PriorityStep(priority, k.steps), k.sep)
}

func stepSuffix(step int, sep string) string {
	if step == 0 {
		return ""
	}
	return sep + strconv.Itoa(step)
}

// queueKey is P + the list of queue for priority: P+queue, or
// P+queue+sep+step (wire spec §7.2).
func (k *keys) queueKey(queue string, priority int) string {
	return k.queueBase(queue) + k.listSuffix(priority)
}

// stepKey is P + the list of queue for one priority step.
func (k *keys) stepKey(queue string, step int) string {
	return k.queueBase(queue) + stepSuffix(step, k.sep)
}

// queueBase is what a queue's list names start with: P+queue, or in the
// sharded cluster layout P+"{"+queue+"}", so that all of them hash to the
// queue's slot (sharded.go).
func (k *keys) queueBase(queue string) string {
	if k.sharded {
		return k.prefix + "{" + queue + "}"
	}
	return k.prefix + queue
}

// queueKeys are all priority lists of queue, lowest step first.
func (k *keys) queueKeys(queue string) []string {
	out := make([]string, len(k.steps))
	for i, s := range k.steps {
		out[i] = k.stepKey(queue, s)
	}
	return out
}

// consumeKeys are the lists a consumer of queues takes from, step-major
// (every queue's lowest step first, wire spec §7.3), and for each list the
// queue it belongs to.
func (k *keys) consumeKeys(queues []string) (lists []string, owners []string) {
	lists = make([]string, 0, len(queues)*len(k.steps))
	owners = make([]string, 0, cap(lists))
	for _, s := range k.steps {
		for _, q := range queues {
			lists = append(lists, k.stepKey(q, s))
			owners = append(owners, q)
		}
	}
	return lists, owners
}

// stepSuffixes are the list suffixes of the priority steps, lowest step
// first: what scripts/get.lua appends to P+queue to name a queue's lists.
func (k *keys) stepSuffixes() []string { return k.suffixes }

// consumeLists are the lists of consumeKeys without their owners: step-major,
// each step's lists in queue order (the lists a waiting Fetch watches).
func (k *keys) consumeLists(queues []string) []string {
	lists := make([]string, 0, len(queues)*len(k.steps))
	for _, s := range k.steps {
		for _, q := range queues {
			lists = append(lists, k.stepKey(q, s))
		}
	}
	return lists
}

// receiptKey is P + "kombu-go.get." + nonce: the receipt one Get call
// leaves so that its retries return the same messages (scripts/get.lua).
// It expires after 10 s, or is deleted by a later take once the reply
// arrived.
func (k *keys) receiptKey(nonce string) string {
	return k.prefix + "kombu-go.get." + nonce
}

// bindingKey is P + "_kombu.binding." + exchange (wire spec §5).
func (k *keys) bindingKey(exchange string) string {
	return k.prefix + bindingPrefix + exchange
}

// bindingMember is the SET member of a binding row: routing key, pattern
// and queue joined with sep (never prefixed).
func (k *keys) bindingMember(row transport.BindingRow) string {
	return row.RoutingKey + k.sep + row.Pattern + k.sep + row.Queue
}

// parseMember splits a binding member into its row. A member that does not
// have exactly three parts (a name containing sep, or a foreign value) is
// reported as not ok; Kombu would crash on it.
func (k *keys) parseMember(m string) (transport.BindingRow, bool) {
	parts := strings.Split(m, k.sep)
	if len(parts) != 3 {
		return transport.BindingRow{}, false
	}
	return transport.BindingRow{RoutingKey: parts[0], Pattern: parts[1], Queue: parts[2]}, true
}

// fanoutChannel is the pub/sub channel a fanout publish goes to:
// P + keyprefix_fanout + exchange, then "/" + routingKey when routingKey is
// not empty and fanout_patterns is on (wire spec §6.3).
func (k *keys) fanoutChannel(exchange, routingKey string) string {
	if routingKey != "" && k.fanoutPatterns {
		return k.prefix + k.fanoutPrefix + exchange + "/" + routingKey
	}
	return k.prefix + k.fanoutPrefix + exchange
}

// fanoutPattern is the PSUBSCRIBE pattern of a fanout binding: the channel
// formula applied to the binding key with every "#" replaced by "*".
func (k *keys) fanoutPattern(exchange, bindingKey string) string {
	return k.fanoutChannel(exchange, strings.ReplaceAll(bindingKey, "#", "*"))
}

// fanoutExchange recovers the exchange from a received channel name, as
// Kombu's _receive_one does: remove P; if the name starts with "/", drop
// everything up to and including the first "."; the exchange is what comes
// before the first "/".
func (k *keys) fanoutExchange(channel string) string {
	channel = strings.TrimPrefix(channel, k.prefix)
	if strings.HasPrefix(channel, "/") {
		_, rest, _ := strings.Cut(channel, ".")
		channel = rest
	}
	ex, _, _ := strings.Cut(channel, "/")
	return ex
}
