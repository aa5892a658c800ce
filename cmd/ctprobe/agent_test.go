package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A busy metrics address and a rotation directory that cannot be written
// fail at once (exit 1), in one line that names them and the fix; with
// --log-format json that line is a JSON log record.
func TestAgentStartErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := busy.Addr().String()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--metrics", addr}, "--metrics: listen on " + addr + ": bind: address already in use: stop what listens there or choose another address"},
		{[]string{"trace", "-w", filepath.Join(dir, "missing", "c.ctp"), "--rotate-size", "1MiB"}, "-w " + filepath.Join(dir, "missing", "c.ctp") + ": the capture directory: stat " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{[]string{"trace", "-w", filepath.Join(file, "c.ctp"), "--rotate-size", "1MiB"}, "-w " + filepath.Join(file, "c.ctp") + ": the capture directory " + file + " is not a directory"},
	} {
		code, _, stderr := runCLI(c.args...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", c.args, code)
		}
		oneLine(t, stderr)
		if strings.TrimSpace(stderr) != "ctprobe: "+c.want {
			t.Errorf("%v:\n got %q\nwant %q", c.args, stderr, "ctprobe: "+c.want)
		}
		code, _, stderr = runCLI(append(c.args, "--log-format", "json")...)
		var rec map[string]any
		if err := json.Unmarshal([]byte(stderr), &rec); err != nil || code != 1 || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v --log-format json: exit %d, %q: want one JSON record (%v)", c.args, code, stderr, err)
			continue
		}
		if rec["level"] != "ERROR" || rec["msg"] != c.want {
			t.Errorf("%v --log-format json: %v, want level ERROR and msg %q", c.args, rec, c.want)
		}
	}
}
