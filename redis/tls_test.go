package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/testenv"
	"github.com/kombu-go/kombu/transport"
	"github.com/kombu-go/kombu/transport/transporttest"
)

// pki is a throwaway certificate authority with a server certificate for
// 127.0.0.1 and a client certificate, made with openssl in a temp dir.
type pki struct {
	dir                                              string
	ca, serverCert, serverKey, clientCert, clientKey string
	otherCA                                          string // a second CA that signed nothing here
}

func openssl(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Missing(t, "openssl", "apt-get install openssl")
	}
	dir := t.TempDir()
	p := &pki{dir: dir}
	path := func(n string) string { return filepath.Join(dir, n) }
	for _, ca := range []string{"ca", "other-ca"} {
		openssl(t, dir, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
			"-keyout", ca+".key", "-out", ca+".crt", "-subj", "/CN=kombu-go test "+ca)
	}
	ext := path("san.ext")
	if err := os.WriteFile(ext, []byte("subjectAltName=IP:127.0.0.1,DNS:localhost\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"server", "client"} {
		openssl(t, dir, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", who+".key", "-out", who+".csr",
			"-subj", "/CN="+who)
		openssl(t, dir, "x509", "-req", "-in", who+".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
			"-CAcreateserial", "-days", "1", "-out", who+".crt", "-extfile", "san.ext")
	}
	p.ca, p.otherCA = path("ca.crt"), path("other-ca.crt")
	p.serverCert, p.serverKey = path("server.crt"), path("server.key")
	p.clientCert, p.clientKey = path("client.crt"), path("client.key")
	return p
}

// startTLSRedis starts a redis-server that speaks only TLS, and returns its
// port. authClients is redis's tls-auth-clients (yes, no or optional).
func startTLSRedis(t *testing.T, p *pki, authClients string) int {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server", "apt-get install redis-server")
	}
	port := testenv.FreePort(t)
	cmd := exec.Command("redis-server", "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir(),
		"--tls-cert-file", p.serverCert, "--tls-key-file", p.serverKey, "--tls-ca-cert-file", p.ca,
		"--tls-auth-clients", authClients)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pem, _ := os.ReadFile(p.ca)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
		if err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS redis-server did not come up: %v\n%s", err, out.String())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// TestIntegrationTLS connects with rediss:// and Kombu's ssl_* query
// options to a redis-server that requires client certificates: every
// ssl_cert_reqs form works with the right CA, CERT_NONE works with no CA,
// a wrong CA, a missing client certificate and a plain redis:// URL fail
// with clear errors.
func TestIntegrationTLS(t *testing.T) {
	integrationURL(t)
	p := newPKI(t)
	port := startTLSRedis(t, p, "yes")
	base := fmt.Sprintf("rediss://127.0.0.1:%d/0?ssl_certfile=%s&ssl_keyfile=%s", port, p.clientCert, p.clientKey)
	for _, reqs := range []string{"required", "CERT_REQUIRED", "optional", "CERT_OPTIONAL", "ssl.CERT_REQUIRED"} {
		t.Run(reqs, func(t *testing.T) {
			b, err := Open(bg, base+"&ssl_ca_certs="+p.ca+"&ssl_cert_reqs="+reqs)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.Put(bg, "tq", 0, []byte(kombuEnvelope)); err != nil {
				t.Fatal(err)
			}
			d, err := transporttest.FetchOne(bg, b, []string{"tq"}, true, 5*time.Second)
			if err != nil || string(d.Envelope) != kombuEnvelope {
				t.Fatalf("round trip over TLS: %v", err)
			}
			if err := b.Ack(bg, kombuTag); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("CERT_NONE without CA", func(t *testing.T) {
		b, err := Open(bg, base+"&ssl_cert_reqs=CERT_NONE")
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
	})
	t.Run("wrong CA", func(t *testing.T) {
		_, err := Open(bg, base+"&ssl_ca_certs="+p.otherCA+"&ssl_cert_reqs=required")
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("want a certificate verification error, got %v", err)
		}
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) {
			t.Logf("note: error does not unwrap to x509.UnknownAuthorityError: %v", err)
		}
		t.Logf("wrong CA: %v", err)
	})
	t.Run("required without CA uses system roots", func(t *testing.T) {
		_, err := Open(bg, base+"&ssl_cert_reqs=required")
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("want a certificate error, got %v", err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		_, err := Open(bg, fmt.Sprintf("rediss://127.0.0.1:%d/0?ssl_ca_certs=%s", port, p.ca))
		if err == nil {
			t.Fatal("a server with tls-auth-clients yes accepted a client without a certificate")
		}
		t.Logf("no client certificate: %v", err)
	})
	t.Run("bad options", func(t *testing.T) {
		for _, u := range []string{
			fmt.Sprintf("redis://127.0.0.1:%d/0?ssl_ca_certs=%s", port, p.ca),
			base + "&ssl_cert_reqs=sometimes",
			base + "&ssl_ca_certs=" + filepath.Join(p.dir, "missing.crt"),
			fmt.Sprintf("rediss://127.0.0.1:%d/0?ssl_keyfile=%s", port, p.clientKey),
		} {
			if _, err := Open(bg, u); !errors.Is(err, transport.ErrBadURL) {
				t.Errorf("%s: want ErrBadURL, got %v", u, err)
			}
		}
	})
	t.Run("optional client certificate", func(t *testing.T) {
		port := startTLSRedis(t, p, "optional")
		b, err := Open(bg, fmt.Sprintf("rediss://127.0.0.1:%d/0?ssl_ca_certs=%s&ssl_cert_reqs=required", port, p.ca))
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
	})
}

// TestIntegrationACL connects as a Redis ACL user: the right password
// works for every command the backend uses; a wrong one fails with an
// error that names the problem and does not show the password.
func TestIntegrationACL(t *testing.T) {
	url := integrationURL(t)
	opt, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	admin := goredis.NewClient(opt)
	defer admin.Close()
	user := "alice" + strings.ReplaceAll(testenv.Prefix(), ":", "")
	const pw = "s3cr3t-Pa55"
	if err := admin.Do(bg, "ACL", "SETUSER", user, "on", ">"+pw, "~*", "&*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.Do(bg, "ACL", "DELUSER", user)
	prefix := testenv.Prefix()
	good := fmt.Sprintf("redis://%s:%s@%s/0?global_keyprefix=%s", user, pw, opt.Addr, prefix)
	b, err := Open(bg, good)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(bg, "aq", 0, []byte(kombuEnvelope)); err != nil {
		t.Fatal(err)
	}
	if _, err := transporttest.FetchOne(bg, b, []string{"aq"}, true, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(bg, kombuTag); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		fmt.Sprintf("redis://%s:wrong-Pa55word@%s/0", user, opt.Addr),
		fmt.Sprintf("redis://nobody-here:wrong-Pa55word@%s/0", opt.Addr),
	} {
		_, err := Open(bg, bad)
		if err == nil {
			t.Fatalf("%s: connected", transport.Redact(bad))
		}
		msg := err.Error()
		if strings.Contains(msg, "wrong-Pa55word") {
			t.Errorf("error shows the password: %v", err)
		}
		if !strings.Contains(msg, "WRONGPASS") && !strings.Contains(msg, "AUTH") {
			t.Errorf("error does not say authentication failed: %v", err)
		}
		if !strings.Contains(msg, ":**@") {
			t.Errorf("error does not name the (redacted) URL: %v", err)
		}
		t.Logf("wrong password: %v", err)
	}
}
