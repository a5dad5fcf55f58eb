package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// runJSON writes a go test -json stream in which test ran Python set set
// (it logs the marker) and ended with action.
func runJSON(t *testing.T, set, test, action string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run.json")
	var out []byte
	for _, e := range []event{
		{Action: "output", Package: "example/pkg", Test: test, Output: "    x_test.go:1: " + marker + set + "\n"},
		{Action: action, Package: "example/pkg", Test: test},
		{Action: "pass", Package: "example/pkg"},
	} {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(append(out, b...), '\n')
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInteropPerFile proves that the summary of two runs read together
// (make test's "both runs" line: the whole suite with one Python set, the
// Python tests again with the other) counts every set: the same test
// run with the second set used to overwrite its first result, so the
// summary showed only the second set's line.
func TestInteropPerFile(t *testing.T) {
	r := &report{pkgs: map[string]*pkgState{}}
	for _, f := range []string{
		runJSON(t, "bookworm kombu=5.2.4", "TestInterop", "pass"),
		runJSON(t, "trixie kombu=5.5.3", "TestInterop", "fail"),
	} {
		if err := r.read(f); err != nil {
			t.Fatal(err)
		}
	}
	if len(r.setOrder) != 2 {
		t.Fatalf("sets %v, want both", r.setOrder)
	}
	if c := r.sets["bookworm kombu=5.2.4"]; c == nil || c.pass != 1 || c.fail != 0 {
		t.Errorf("bookworm counts %+v, want 1 passed", c)
	}
	if c := r.sets["trixie kombu=5.5.3"]; c == nil || c.pass != 0 || c.fail != 1 {
		t.Errorf("trixie counts %+v, want 1 failed", c)
	}
	if !r.pkgs["example/pkg"].pyRan["TestInterop"] {
		t.Errorf("TestInterop not listed as a test that ran Python")
	}
}
