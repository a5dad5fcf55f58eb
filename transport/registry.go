package transport

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a backend available for a URL scheme, as database/sql's
// Register does for drivers. Backends call it from init. It panics if
// opener is nil, scheme is empty, or the scheme is already registered.
func Register(scheme string, opener Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if opener == nil {
		panic("kombu: Register opener is nil")
	}
	if scheme == "" {
		panic("kombu: Register with empty scheme")
	}
	if _, dup := registry[scheme]; dup {
		panic("kombu: Register called twice for scheme " + scheme)
	}
	registry[scheme] = opener
}

// Schemes returns the registered URL schemes, sorted.
func Schemes() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]string, 0, len(registry))
	for s := range registry {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Open opens a backend with the opener registered for u's scheme. It fails
// with ErrUnknownScheme ("forgotten import?") when there is none.
func Open(ctx context.Context, u *URL) (Backend, error) {
	registryMu.RLock()
	opener := registry[u.Scheme]
	registryMu.RUnlock()
	if opener == nil {
		return nil, fmt.Errorf("%w %q (forgotten import?)", ErrUnknownScheme, u.Scheme)
	}
	return opener.Open(ctx, u)
}

// OpenURL parses rawURL and opens a backend for it (see Open).
func OpenURL(ctx context.Context, rawURL string) (Backend, *URL, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	b, err := Open(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	return b, u, nil
}
