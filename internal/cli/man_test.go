package cli

import "testing"

// Text from usage strings cannot start a roff request or escape, and its
// dashes stay dashes (a bare "-" may render as a hyphen).
func TestRoff(t *testing.T) {
	for in, want := range map[string]string{
		"--all":          `\-\-all`,
		".ctp files":     `\&.ctp files`,
		"'quoted' start": `\&'quoted' start`,
		`a\b`:            `a\eb`,
		"two\nlines":     "two lines",
		"mid . and ' ok": "mid . and ' ok",
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}

// Flags are spelled as the docs spell them: one dash for a letter, two for
// a word.
func TestSpelling(t *testing.T) {
	for name, want := range map[string]string{"o": "-o", "all": "--all", "no-color": "--no-color"} {
		if got := Spelling(name); got != want {
			t.Errorf("Spelling(%q) = %q, want %q", name, got, want)
		}
	}
}
