package kombu_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// layer is the rank of each package in the layering the README's
// Architecture section describes; a package may import only packages of a
// lower rank (or its own package tree's helpers under internal/).
func layer(path string) (int, bool) {
	const mod = "github.com/kombu-go/kombu"
	rel := strings.TrimPrefix(strings.TrimPrefix(path, mod), "/")
	switch {
	case strings.HasPrefix(rel, "internal/pyjson"):
		return 0, true
	case rel == "entity":
		return 1, true
	case rel == "serialization":
		return 2, true
	case rel == "envelope":
		return 3, true
	case rel == "transport":
		return 4, true
	case rel == "transport/virtual":
		return 5, true
	case rel == "transport/transporttest":
		return 6, true
	case rel == "redis", rel == "memory":
		return 7, true
	case rel == "":
		return 8, true
	case rel == "celery", rel == "otelkombu", rel == "kombuprom":
		return 9, true
	case rel == "otelcelery", rel == "celeryprom", strings.HasPrefix(rel, "internal/testenv"), strings.HasPrefix(rel, "internal/testreport"):
		return 10, true
	case strings.HasPrefix(rel, "cmd/"), strings.HasPrefix(rel, "examples"), strings.HasPrefix(rel, "bench"),
		strings.HasPrefix(rel, "reliability"), strings.HasPrefix(rel, "interop"):
		return 11, true
	}
	return 0, false
}

// reachesBehind reports the packages that must use the root package's
// public API rather than the transport engine under it.
func reachesBehind(path string) bool {
	rel := strings.TrimPrefix(path, "github.com/kombu-go/kombu/")
	return rel == "celery" || strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "examples/")
}

// Proves the layering: no package imports (outside its tests) a package of
// its own layer or above (commands, examples and test suites, the top
// layer, may import anything); celery, cmd and examples do not import the
// transport engine (only the root package's API); every package of the module has a layer, so
// a new package must be placed. It reads `go list -json ./...`.
func TestLayering(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		mine, ok := layer(p.ImportPath)
		if !ok {
			t.Errorf("package %s has no layer: place it in layers_test.go and the README's Architecture section", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, "github.com/kombu-go/kombu") {
				continue
			}
			if (imp == "github.com/kombu-go/kombu/transport" || imp == "github.com/kombu-go/kombu/transport/virtual") && reachesBehind(p.ImportPath) {
				t.Errorf("%s imports the transport contract or engine: celery, cmd and examples use the root package's public API (add a method there)", p.ImportPath)
			}
			theirs, ok := layer(imp)
			if ok && theirs >= mine && mine < 11 && !(theirs == mine && strings.HasPrefix(imp, p.ImportPath)) {
				t.Errorf("%s (layer %d) imports %s (layer %d): a layer may import only the layers below it", p.ImportPath, mine, imp, theirs)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list found %d packages", n)
	}
}
