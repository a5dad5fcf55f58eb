package transport

import (
	"errors"
	"strings"
	"testing"
)

// TestRedactTypos: passwords are masked even in URLs that do not parse
// (a scheme typo, a ";" or "/" inside the password), and ParseURL's
// errors never show them.
func TestRedactTypos(t *testing.T) {
	for raw, want := range map[string]string{
		"redis://u:secret@h:6379/0":                     "redis://u:**@h:6379/0",
		"redis:/u:secret@h":                             "redis:**@h",
		"redis//u:secret@h":                             "redis//u:**@h",
		"redis://u:sec;ret@h":                           "redis://u:**@h",
		"redis://u:sec/ret@h/0":                         "redis://u:**@h/0",
		"sentinel://a:pw1@h1;sentinel://b:pw2@h2/0?x=1": "sentinel://a:**@h1;sentinel://b:**@h2/0?x=1",
		"redis://alice@h":                               "redis://alice@h",
		"redis://h:6379/0":                              "redis://h:6379/0",
		"redis://:secret@h":                             "redis://:**@h",
		"redis://u:p@ss@h":                              "redis://u:**@h",
	} {
		if got := Redact(raw); got != want {
			t.Errorf("Redact(%q) = %q, want %q", raw, got, want)
		}
	}
	for _, raw := range []string{"redis:/u:secret@h", "u:secret@h:6379", "redis://u:secret@h:port/0", "redis://u:secret@h/0?%zz"} {
		_, err := ParseURL(raw)
		if !errors.Is(err, ErrBadURL) {
			t.Fatalf("ParseURL(%q): %v", raw, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error shows the password: %v", raw, err)
		}
	}
}
