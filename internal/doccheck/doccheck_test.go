// Package doccheck holds tests of the repository's own documents: what
// the code cites must exist in the repository.
package doccheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository's top directory.
const root = "../.."

// sources are the files that may cite documents: code, scripts, docs.
func sources(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "out", "bin", "vmlinux", "testdata":
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".c", ".h", ".sh", ".md", "":
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			out[path] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Comments cite docs/kernel-notes.md by section ("docs/kernel-notes.md,
// The race types"): every section cited is a heading there, and nothing
// cites the notes that contributors do not have.
func TestCitedSectionsExist(t *testing.T) {
	notes, err := os.ReadFile(filepath.Join(root, "docs", "kernel-notes.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, line := range strings.Split(string(notes), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			headings[strings.TrimSpace(h)] = true
		}
	}
	cite := regexp.MustCompile(`docs/kernel-notes\.md,\s*(?://\s*|\*\s*)?([A-Z][A-Za-z0-9 ,:'-]*[a-z0-9])`)
	// The notes the project grew from, named in parts so that this file
	// does not cite them itself.
	outside := regexp.MustCompile("kernel" + "-facts|\\.\\./" + "shared/")
	cited := 0
	for path, text := range sources(t) {
		if outside.MatchString(text) {
			t.Errorf("%s cites a document outside the repository (%q)", path, outside.FindString(text))
		}
		// A citation may wrap onto the next comment line.
		flat := regexp.MustCompile(`\n\s*(//|\*|#)\s*`).ReplaceAllString(text, " ")
		for _, m := range cite.FindAllStringSubmatch(flat, -1) {
			cited++
			name := m[1]
			if !headings[name] && !prefixOfHeading(headings, name) {
				t.Errorf("%s cites docs/kernel-notes.md, %q: no such section", path, name)
			}
		}
	}
	if cited == 0 {
		t.Error("no citation of docs/kernel-notes.md found: the pattern is wrong")
	}
}

// prefixOfHeading allows a citation followed by more words in the same
// sentence ("What confirm returns, per era: 4.19 to 5.9").
func prefixOfHeading(headings map[string]bool, cited string) bool {
	for h := range headings {
		if strings.HasPrefix(cited, h) {
			return true
		}
	}
	return false
}
