package archtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/xenblk/xenblk"

// row is one line of the layer table; rows are numbered from the top
// (commands) down, so a package may import only rows with a number at
// least its own.
type row struct {
	n        int
	name     string
	packages []string
}

var backticked = regexp.MustCompile("`([^`]+)`")

// parseLayers reads the first table of r whose header is
// "| layer | packages | ...": the packages are the backticked words of
// the second column, as paths inside the module.
func parseLayers(r io.Reader) ([]row, error) {
	var rows []row
	in := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		cells := strings.Split(strings.Trim(line, "|"), "|")
		switch {
		case !in && strings.HasPrefix(line, "|") && len(cells) >= 2 &&
			strings.TrimSpace(cells[0]) == "layer" && strings.TrimSpace(cells[1]) == "packages":
			in = true
		case in && strings.HasPrefix(line, "|---"):
		case in && strings.HasPrefix(line, "|") && len(cells) >= 2:
			r := row{n: len(rows), name: strings.TrimSpace(cells[0])}
			for _, m := range backticked.FindAllStringSubmatch(cells[1], -1) {
				r.packages = append(r.packages, m[1])
			}
			if len(r.packages) == 0 {
				return nil, fmt.Errorf("layer %q names no package", r.name)
			}
			rows = append(rows, r)
		case in:
			return rows, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !in {
		return nil, errors.New(`no table with the header "| layer | packages | ..."`)
	}
	return rows, nil
}

// pkg is what go list says of one package. A package's layer is set by
// its code: its tests may reach up to exercise it (xenstore's talk to
// xen/sim's server; Go itself refuses the cycles that would make), except
// in a package that is only tests (internal/stacktest), whose tests are
// its code.
type pkg struct {
	ImportPath  string
	GoFiles     []string
	Imports     []string
	TestImports []string
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func listModule(t *testing.T, root string) []pkg {
	t.Helper()
	cmd := exec.Command(goTool(), "list", "-json=ImportPath,GoFiles,Imports,TestImports", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []pkg
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// checkLayers returns every way the table and the imports disagree.
func checkLayers(rows []row, pkgs []pkg) []string {
	var problems []string
	layer := map[string]row{}
	for _, r := range rows {
		for _, p := range r.packages {
			if prev, ok := layer[p]; ok {
				problems = append(problems, fmt.Sprintf("%s is in two layers: %s and %s", p, prev.name, r.name))
			}
			layer[p] = r
		}
	}
	exists := map[string]bool{}
	for _, p := range pkgs {
		exists[strings.TrimPrefix(p.ImportPath, module+"/")] = true
	}
	for _, r := range rows {
		for _, p := range r.packages {
			if !exists[p] {
				problems = append(problems, fmt.Sprintf("layer %s names %s, which is not a package of the module", r.name, p))
			}
		}
	}
	for _, p := range pkgs {
		name := strings.TrimPrefix(p.ImportPath, module+"/")
		mine, ok := layer[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s is in no layer of the table", name))
			continue
		}
		imports := slices.Clone(p.Imports)
		if len(p.GoFiles) == 0 {
			imports = append(imports, p.TestImports...)
		}
		slices.Sort(imports)
		for _, imp := range slices.Compact(imports) {
			dep, inModule := strings.CutPrefix(imp, module+"/")
			if !inModule || dep == name {
				continue
			}
			theirs, ok := layer[dep]
			if ok && theirs.n < mine.n {
				problems = append(problems, fmt.Sprintf("%s (%s) imports %s of a higher layer (%s)", name, mine.name, dep, theirs.name))
			}
		}
	}
	return problems
}

// TestLayerTableMatchesImports: the table in ARCHITECTURE.md names every
// package once, and every import of a package (of its tests too, for a
// package that is only tests) points to the same layer or one below.
func TestLayerTableMatchesImports(t *testing.T) {
	root := filepath.Join("..", "..")
	f, err := os.Open(filepath.Join(root, "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := parseLayers(f)
	if err != nil {
		t.Fatalf("ARCHITECTURE.md: %v", err)
	}
	for _, p := range checkLayers(rows, listModule(t, root)) {
		t.Error(p)
	}
}

// The checker itself finds each kind of disagreement.
func TestCheckerFindsEachProblem(t *testing.T) {
	table := "intro\n\n| layer | packages | job |\n|---|---|---|\n" +
		"| top | `cmd/x` | wiring |\n" +
		"| middle | `a`, `gone` (notes) | work |\n" +
		"| bottom | `b`, `a` | base |\n\nafter\n| layer | packages |\n| ignored | `z` |\n"
	rows, err := parseLayers(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || !slices.Equal(rows[1].packages, []string{"a", "gone"}) {
		t.Fatalf("rows %+v", rows)
	}
	pkgs := []pkg{
		{ImportPath: module + "/cmd/x", GoFiles: []string{"x.go"}, Imports: []string{"fmt", module + "/a"}},
		{ImportPath: module + "/a", GoFiles: []string{"a.go"}, Imports: []string{module + "/b"}, TestImports: []string{module + "/cmd/x"}},
		{ImportPath: module + "/b", TestImports: []string{module + "/cmd/x"}}, // only tests
		{ImportPath: module + "/c"},
	}
	got := checkLayers(rows, pkgs)
	want := []string{
		"a is in two layers: middle and bottom",
		"layer middle names gone, which is not a package of the module",
		"b (bottom) imports cmd/x of a higher layer (top)",
		"c is in no layer of the table",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := parseLayers(strings.NewReader("no table here\n")); err == nil {
		t.Fatal("a document without the table passed")
	}
}
