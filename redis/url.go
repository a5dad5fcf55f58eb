package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/transport"
)

// Default ports, as Kombu's.
const (
	DefaultPort         = 6379
	DefaultSentinelPort = 26379
	// DefaultMaxConnections is Kombu's max_connections: the pool size for
	// ordinary commands. Blocking waits have a pool of their own
	// (wait_connections).
	DefaultMaxConnections = 10
)

func init() {
	opener := transport.OpenerFunc(func(ctx context.Context, u *transport.URL) (transport.Backend, error) {
		return OpenURL(ctx, u)
	})
	for _, scheme := range []string{"redis", "rediss", "sentinel", ClusterScheme} {
		transport.Register(scheme, opener)
	}
}

// Open parses a Kombu Redis URL and opens a Backend that owns its client:
//
//	redis://[user:password@]host[:port][/db][?option=value&...]
//	rediss://... (TLS)
//	sentinel://host:26379;sentinel://host2:26379/db?master_name=mymaster
//
// Query options use Kombu's transport option names (see OpenURL). opts are
// applied after the URL's options.
func Open(ctx context.Context, rawURL string, opts ...Option) (*Backend, error) {
	u, err := transport.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return OpenURL(ctx, u, opts...)
}

// connConfig is what a URL says about the connection itself.
type connConfig struct {
	poolSize       int
	readTimeout    time.Duration // socket_timeout
	connectTimeout time.Duration // socket_connect_timeout
	masterName     string
	tls            bool
	certReqs       string
	caCerts        string
	certFile       string
	keyFile        string
}

// OpenURL opens a Backend from a parsed URL, owning its client (Close
// closes it); it pings the server and loads the scripts before returning.
//
// Options, by Kombu name: global_keyprefix, sep, priority_steps ("0,3,6,9"
// or "[0, 3, 6, 9]"), fanout_prefix (true, false or a prefix string),
// fanout_patterns, unacked_key, unacked_index_key, unacked_mutex_key,
// unacked_mutex_expire, unacked_restore_limit, ack_emulation (true only),
// socket_timeout, socket_connect_timeout, health_check_interval,
// max_connections, master_name (sentinel), ssl_cert_reqs, ssl_ca_certs,
// ssl_certfile, ssl_keyfile. kombu-go's own: restore_priority (own or
// base), malformed_key, wait_connections, publish_wait_replicas,
// publish_wait_timeout, auto_pipeline (true by default; see
// Options.NoAutoPipeline). rediscluster:// URLs also take hash_tag (Kombu
// PR 2204's name; see the package documentation's Redis Cluster section)
// and cluster_layout (compatible, the default, or sharded). The transport core's options
// (transport.CoreOptionNames) are accepted and ignored here. Durations
// are seconds. Anything else is an error matching transport.ErrBadURL.
func OpenURL(ctx context.Context, u *transport.URL, opts ...Option) (*Backend, error) {
	if u.Scheme == ClusterScheme {
		return openCluster(ctx, u, opts...) // cluster.go
	}
	o := DefaultOptions()
	cc := connConfig{poolSize: DefaultMaxConnections}
	switch u.Scheme {
	case "redis", "rediss", "sentinel":
	default:
		return nil, fmt.Errorf("%w: scheme %q is not redis, rediss or sentinel", transport.ErrBadURL, u.Scheme)
	}
	if err := applyURLOptions(&o, &cc, u.Options); err != nil {
		return nil, err
	}
	if err := notClusterForm(u, o); err != nil { // cluster.go
		return nil, err
	}
	switch {
	case u.Scheme == "rediss":
		cc.tls = true
	case u.Scheme == "redis" && cc.tls:
		return nil, fmt.Errorf("%w: ssl_* options need a rediss:// URL", transport.ErrBadURL)
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	db, err := parseDB(u.VirtualHost)
	if err != nil {
		return nil, err
	}
	if o.DB < 0 {
		o.DB = db
	}
	var tlsConf *tls.Config
	if cc.tls {
		if tlsConf, err = cc.tlsConfig(); err != nil {
			return nil, err
		}
		if u.Scheme == "rediss" && len(u.Hosts) > 0 {
			tlsConf.ServerName = u.Hosts[0].Host
		}
	}
	pool := cc.poolSize
	var client goredis.UniversalClient
	if u.Scheme == "sentinel" {
		if cc.masterName == "" {
			return nil, fmt.Errorf("%w: sentinel:// needs the master_name option", transport.ErrBadURL)
		}
		addrs := hostPorts(u, DefaultSentinelPort)
		client = goredis.NewFailoverClient(&goredis.FailoverOptions{
			MasterName:    cc.masterName,
			SentinelAddrs: addrs,
			Username:      u.Username,
			Password:      u.Password,
			DB:            db,
			PoolSize:      pool,
			DialTimeout:   cc.connectTimeout,
			ReadTimeout:   cc.readTimeout,
			WriteTimeout:  cc.readTimeout,
			TLSConfig:     tlsConf,
			MaxRetries:    -1,
			Protocol:      2,
		})
	} else {
		addrs := hostPorts(u, DefaultPort)
		if len(addrs) > 1 {
			return nil, fmt.Errorf("%w: %s:// takes one host", transport.ErrBadURL, u.Scheme)
		}
		client = goredis.NewClient(&goredis.Options{
			Addr:         addrs[0],
			Username:     u.Username,
			Password:     u.Password,
			DB:           db,
			PoolSize:     pool,
			DialTimeout:  cc.connectTimeout,
			ReadTimeout:  cc.readTimeout,
			WriteTimeout: cc.readTimeout,
			TLSConfig:    tlsConf,
			// Kombu (redis-py) never resends a command; a resent LPUSH whose
			// reply was lost would publish twice.
			MaxRetries: -1,
			Protocol:   2,
		})
	}
	return openOwned(ctx, client, o, u)
}

func hostPorts(u *transport.URL, defPort int) []string {
	if len(u.Hosts) == 0 {
		return []string{"127.0.0.1:" + strconv.Itoa(defPort)}
	}
	out := make([]string, len(u.Hosts))
	for i, h := range u.Hosts {
		if h.Port == 0 {
			h.Port = defPort
		}
		if h.Host == "" {
			h.Host = "127.0.0.1"
		}
		out[i] = h.String()
	}
	return out
}

// parseDB reads the database number from the virtual host as Kombu's
// _prepare_virtual_host does: "" and "/" are 0, one leading "/" is
// dropped, anything else must be an integer.
func parseDB(vhost string) (int, error) {
	v := strings.TrimPrefix(vhost, "/")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: database is an integer from 0, not %q", transport.ErrBadURL, transport.Redact(vhost))
	}
	return n, nil
}

// applyURLOptions sets o and cc from Kombu-named options.
func applyURLOptions(o *Options, cc *connConfig, m map[string]string) error {
	bad := func(name, v string, err error) error {
		if err != nil {
			return fmt.Errorf("%w: option %s=%q: %w", transport.ErrBadURL, name, v, err)
		}
		return fmt.Errorf("%w: option %s=%q", transport.ErrBadURL, name, v)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, name := range names {
		v := m[name]
		var err error
		switch name {
		case "global_keyprefix":
			o.KeyPrefix = v
		case "hash_tag":
			o.HashTag = v
		case "cluster_layout":
			o.ClusterLayout = ClusterLayout(strings.ToLower(strings.TrimSpace(v)))
		case "sep":
			o.Sep = v
		case "priority_steps":
			o.PrioritySteps, err = parseSteps(v)
		case "fanout_prefix":
			if on, ok := parseBool(v); ok {
				o.FanoutPrefix = ""
				if on {
					o.FanoutPrefix = DefaultFanoutPrefix
				}
			} else {
				o.FanoutPrefix = v
			}
		case "auto_pipeline":
			on, ok := parseBool(v)
			if !ok {
				return bad(name, v, nil)
			}
			o.NoAutoPipeline = !on
		case "fanout_patterns":
			on, ok := parseBool(v)
			if !ok {
				return bad(name, v, nil)
			}
			o.FanoutPatterns = on
		case "unacked_key":
			o.UnackedKey = v
		case "unacked_index_key":
			o.UnackedIndexKey = v
		case "unacked_mutex_key":
			o.UnackedMutexKey = v
		case "malformed_key":
			o.MalformedKey = v
		case "unacked_mutex_expire":
			o.UnackedMutexExpire, err = transport.ParseSeconds(v)
		case "unacked_restore_limit":
			if isNone(v) {
				o.UnackedRestoreLimit = 0
			} else {
				o.UnackedRestoreLimit, err = parseNonNegative(v)
			}
		case "ack_emulation":
			on, ok := parseBool(v)
			if !ok {
				return bad(name, v, nil)
			}
			if !on {
				return fmt.Errorf("%w: ack_emulation=false is not supported: kombu-go always keeps Kombu's unacked records", transport.ErrBadURL)
			}
		case "restore_priority":
			switch RestorePriority(strings.ToLower(v)) {
			case RestoreOwn, RestoreBase:
				o.RestorePriority = RestorePriority(strings.ToLower(v))
			default:
				return bad(name, v, fmt.Errorf("want %q or %q", RestoreOwn, RestoreBase))
			}
		case "wait_connections":
			o.WaitConnections, err = parseNonNegative(v)
		case "publish_wait_replicas":
			o.PublishWaitReplicas, err = parseNonNegative(v)
		case "publish_wait_timeout":
			o.PublishWaitTimeout, err = transport.ParseSeconds(v)
		case "health_check_interval":
			o.HealthCheckInterval, err = transport.ParseSeconds(v)
		case "socket_timeout":
			cc.readTimeout, err = parseOptionalSeconds(v)
		case "socket_connect_timeout":
			cc.connectTimeout, err = parseOptionalSeconds(v)
		case "max_connections":
			cc.poolSize, err = parseNonNegative(v)
			if err == nil && cc.poolSize == 0 {
				err = fmt.Errorf("must be at least 1")
			}
		case "master_name":
			cc.masterName = v
		case "ssl_cert_reqs":
			cc.tls = true
			cc.certReqs, err = parseCertReqs(v)
		case "ssl_ca_certs":
			cc.tls = true
			cc.caCerts = v
		case "ssl_certfile":
			cc.tls = true
			cc.certFile = v
		case "ssl_keyfile":
			cc.tls = true
			cc.keyFile = v
		default:
			if slices.Contains(transport.CoreOptionNames, name) {
				continue
			}
			return fmt.Errorf("%w: unknown option %q", transport.ErrBadURL, name)
		}
		if err != nil {
			return bad(name, v, err)
		}
	}
	if err := o.validate(); err != nil {
		return fmt.Errorf("%w: %w", transport.ErrBadURL, err)
	}
	return nil
}

func parseBool(v string) (on, ok bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "on":
		return true, true
	case "false", "0", "no", "off":
		return false, true
	}
	return false, false
}

func isNone(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "none", "null":
		return true
	}
	return false
}

func parseNonNegative(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, fmt.Errorf("not an integer")
	}
	if n < 0 {
		return 0, fmt.Errorf("negative")
	}
	return n, nil
}

func parseOptionalSeconds(v string) (time.Duration, error) {
	if isNone(v) {
		return 0, nil
	}
	return transport.ParseSeconds(v)
}

// parseSteps reads priority_steps written as "0,3,6,9", "[0, 3, 6, 9]" or
// "(0, 3, 6, 9)".
func parseSteps(v string) ([]int, error) {
	s := strings.TrimSpace(v)
	if len(s) >= 2 && (s[0] == '[' && s[len(s)-1] == ']' || s[0] == '(' && s[len(s)-1] == ')') {
		s = s[1 : len(s)-1]
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no steps")
	}
	return out, nil
}

// parseCertReqs accepts Python's ssl constant names and redis-py's short
// forms.
func parseCertReqs(v string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "cert_required", "required", "ssl.cert_required":
		return "required", nil
	case "cert_optional", "optional", "ssl.cert_optional":
		return "optional", nil
	case "cert_none", "none", "ssl.cert_none":
		return "none", nil
	}
	return "", fmt.Errorf("want CERT_REQUIRED, CERT_OPTIONAL or CERT_NONE (or required, optional, none)")
}

// tlsConfig builds the TLS settings: server certificates are verified
// unless ssl_cert_reqs is none (a Python client also verifies with
// CERT_OPTIONAL), against ssl_ca_certs if given, else the system roots;
// ssl_certfile and ssl_keyfile give a client certificate.
func (cc *connConfig) tlsConfig() (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cc.certReqs == "none" {
		conf.InsecureSkipVerify = true
	}
	if cc.caCerts != "" {
		pem, err := os.ReadFile(cc.caCerts)
		if err != nil {
			return nil, fmt.Errorf("%w: ssl_ca_certs: %w", transport.ErrBadURL, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: ssl_ca_certs %q holds no PEM certificate", transport.ErrBadURL, cc.caCerts)
		}
		conf.RootCAs = pool
	}
	if cc.certFile != "" || cc.keyFile != "" {
		if cc.certFile == "" {
			return nil, fmt.Errorf("%w: ssl_keyfile needs ssl_certfile", transport.ErrBadURL)
		}
		key := cc.keyFile
		if key == "" {
			key = cc.certFile // Python's load_cert_chain: the key may be in the cert file
		}
		cert, err := tls.LoadX509KeyPair(cc.certFile, key)
		if err != nil {
			return nil, fmt.Errorf("%w: ssl_certfile/ssl_keyfile: %w", transport.ErrBadURL, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// openOwned makes a backend that owns client (closed on any failure here),
// checks that the server answers and loads the scripts: the end of every
// URL open.
func openOwned(ctx context.Context, client goredis.UniversalClient, o Options, u *transport.URL) (*Backend, error) {
	b, err := newBackend(client, true, o)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	if err := b.Ping(ctx); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("kombu: redis: connect to %s: %w", u.String(), err)
	}
	if err := b.LoadScripts(ctx); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}
