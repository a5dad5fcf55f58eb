// Command testreport reads the output of `go test -json` and writes what
// `make test` shows: a line per package, the output of every failed test,
// the output of a package that failed without a failing test (a build
// error, a missing toolchain: the lines that say why), the skipped tests,
// and per Python version set a line
//
//	interop kombu=5.5.3 celery=5.5.2 redis-py=6.1.0: N passed, 0 failed
//
// counting the top-level tests that ran Python (those that logged
// testenv.PySetMarker).
//
// Usage:
//
//	testreport -python-tests FILE run.json    write "package<TAB>^(TestA|TestB)$" lines for the tests that ran Python
//	testreport [-brief] [-totals=false] run.json [more.json]  report; exit 1 if anything failed
//
// Lines of the file that are not JSON (go test's own messages, for example
// "-race requires cgo") count as output of an unknown package and are shown
// when the run failed without a failing test.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

const marker = "testenv: python set "

type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
	Elapsed    float64
}

type pkgState struct {
	name      string
	result    string // pass, fail, skip
	elapsed   float64
	output    []string            // package-level and build output
	tests     map[string][]string // output per test
	failed    []string            // failed tests in order
	skipped   []string
	passed    int
	nfailed   int
	nskipped  int
	pyTests   map[string]string // top-level test -> "set versions", this file (read)
	pyResults map[string]string // top-level test -> pass/fail/skip, this file
	pyRan     map[string]bool   // top-level tests that ran Python, every file
	order     []string
}

type report struct {
	pkgs  map[string]*pkgState
	order []string
	stray []string // non-JSON lines

	sets     map[string]*setCounts // "set versions" -> interop results, every file
	setOrder []string
}

// setCounts are the results of the tests that ran one Python version set.
type setCounts struct{ pass, fail, skip int }

func (r *report) pkg(name string) *pkgState {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgState{name: name, tests: map[string][]string{}, pyTests: map[string]string{}, pyResults: map[string]string{}, pyRan: map[string]bool{}}
		r.pkgs[name] = p
		r.order = append(r.order, name)
	}
	return p
}

func top(test string) string {
	if i := strings.IndexByte(test, '/'); i >= 0 {
		return test[:i]
	}
	return test
}

func (r *report) read(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e event
		if line[0] != '{' || json.Unmarshal(line, &e) != nil {
			r.stray = append(r.stray, string(line))
			continue
		}
		name := e.Package
		if name == "" {
			name = e.ImportPath
		}
		if i := strings.Index(name, " ["); i >= 0 { // "pkg [pkg.test]"
			name = name[:i]
		}
		if name == "" {
			if e.Output != "" {
				r.stray = append(r.stray, strings.TrimRight(e.Output, "\n"))
			}
			continue
		}
		p := r.pkg(name)
		switch e.Action {
		case "build-output":
			p.output = append(p.output, strings.TrimRight(e.Output, "\n"))
		case "build-fail":
			p.result = "fail"
		case "output":
			out := strings.TrimRight(e.Output, "\n")
			if e.Test == "" {
				p.output = append(p.output, out)
				continue
			}
			if _, ok := p.tests[e.Test]; !ok {
				p.order = append(p.order, e.Test)
			}
			p.tests[e.Test] = append(p.tests[e.Test], out)
			if i := strings.Index(out, marker); i >= 0 {
				p.pyTests[top(e.Test)] = strings.TrimSpace(out[i+len(marker):])
				p.pyRan[top(e.Test)] = true
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				if p.result != "fail" {
					p.result = e.Action
				}
				p.elapsed += e.Elapsed
				continue
			}
			switch e.Action {
			case "pass":
				p.passed++
			case "fail":
				p.nfailed++
				p.failed = append(p.failed, e.Test)
			case "skip":
				p.nskipped++
				p.skipped = append(p.skipped, e.Test)
			}
			if !strings.Contains(e.Test, "/") {
				p.pyResults[e.Test] = e.Action
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	r.tallyInterop()
	return nil
}

// tallyInterop adds the Python tests of the file just read to r.sets and
// forgets them, so that the same test run again with another set (a
// second file) counts for that set too.
func (r *report) tallyInterop() {
	if r.sets == nil {
		r.sets = map[string]*setCounts{}
	}
	for _, name := range r.order {
		p := r.pkgs[name]
		for t, set := range p.pyTests {
			c := r.sets[set]
			if c == nil {
				c = &setCounts{}
				r.sets[set] = c
				r.setOrder = append(r.setOrder, set)
			}
			switch p.pyResults[t] {
			case "pass":
				c.pass++
			case "skip":
				c.skip++
			default:
				c.fail++
			}
		}
		clear(p.pyTests)
		clear(p.pyResults)
	}
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		return append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return lines
}

func main() {
	pyList := flag.String("python-tests", "", "write the tests that ran Python, per package, to this file and exit")
	brief := flag.Bool("brief", false, "print only the interop lines and the totals (for several runs read together)")
	totals := flag.Bool("totals", true, "print the closing 'tests: N passed, N failed, N skipped' line")
	flag.Parse()
	r := &report{pkgs: map[string]*pkgState{}}
	for _, f := range flag.Args() {
		if err := r.read(f); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
	}
	if *pyList != "" {
		var b strings.Builder
		for _, name := range r.order {
			p := r.pkgs[name]
			if len(p.pyRan) == 0 {
				continue
			}
			names := make([]string, 0, len(p.pyRan))
			for t := range p.pyRan {
				names = append(names, regexp.QuoteMeta(t))
			}
			sort.Strings(names)
			fmt.Fprintf(&b, "%s\t^(%s)$\n", name, strings.Join(names, "|"))
		}
		if err := os.WriteFile(*pyList, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
		return
	}

	failed, passed, skipped := 0, 0, 0
	anyPkgFail := false
	for _, name := range r.order {
		p := r.pkgs[name]
		passed += p.passed
		failed += p.nfailed
		skipped += p.nskipped
		if p.result == "fail" {
			anyPkgFail = true
		}
		if *brief {
			continue
		}
		switch p.result {
		case "fail":
			fmt.Printf("FAIL\t%s\t%.1fs\n", name, p.elapsed)
		case "pass":
			fmt.Printf("ok  \t%s\t%.1fs\n", name, p.elapsed)
		case "skip":
			fmt.Printf("?   \t%s\t[no test files]\n", name)
		}
	}
	if !*brief && (failed > 0 || anyPkgFail) {
		fmt.Println("== failures")
		for _, name := range r.order {
			p := r.pkgs[name]
			for _, t := range p.failed {
				fmt.Printf("--- FAIL: %s (%s)\n", t, name)
				for _, l := range tail(p.tests[t], 60) {
					fmt.Println("    " + l)
				}
			}
			if p.result == "fail" && p.nfailed == 0 {
				fmt.Printf("--- %s failed without a failing test; its last lines:\n", name)
				for _, l := range tail(append(p.output, p.tests[""]...), 40) {
					fmt.Println("    " + l)
				}
			}
		}
	}
	if !*brief && len(r.stray) > 0 && (anyPkgFail || failed > 0 || len(r.order) == 0) {
		fmt.Println("== go test said")
		for _, l := range tail(r.stray, 40) {
			fmt.Println("    " + l)
		}
	}
	if !*brief && skipped > 0 {
		fmt.Println("== skipped (capabilities a backend does not promise; run go test -v for the reasons)")
		for _, name := range r.order {
			for _, t := range r.pkgs[name].skipped {
				fmt.Printf("  %s (%s)\n", t, name)
			}
		}
	}
	// Interop per version set: top-level tests that ran Python.
	setOrder := append([]string(nil), r.setOrder...)
	sort.Strings(setOrder)
	for _, set := range setOrder {
		c := r.sets[set]
		_, versions, _ := strings.Cut(set, " ")
		line := fmt.Sprintf("interop %s: %d passed, %d failed", versions, c.pass, c.fail)
		if c.skip > 0 {
			line += fmt.Sprintf(", %d skipped", c.skip)
		}
		fmt.Println(line)
	}
	if len(r.order) == 0 {
		fmt.Println("no test ran")
		failed++
	}
	if *totals {
		fmt.Printf("tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	}
	if failed > 0 || anyPkgFail {
		os.Exit(1)
	}
}
