package tracer

import (
	"maps"
	"net/netip"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	f, err := ParseFilter("udp", "::ffff:10.96.0.10", "53", "4026531840", "4242")
	if err != nil {
		t.Fatal(err)
	}
	want := Filter{Proto: 17, Host: netip.MustParseAddr("10.96.0.10"), Port: 53, Netns: 4026531840, PID: 4242}
	if f != want {
		t.Errorf("got %+v want %+v", f, want)
	}
	wantStrings := map[string]string{"proto": "udp", "host": "10.96.0.10", "port": "53", "netns": "4026531840", "pid": "4242"}
	if got := f.Strings(); !maps.Equal(got, wantStrings) {
		t.Errorf("strings %v, want %v", got, wantStrings)
	}
	if f, err := ParseFilter("132", "", "", "", ""); err != nil || f.Proto != 132 {
		t.Errorf("numeric proto: %+v %v", f, err)
	}
	if f, _ := ParseFilter("", "", "", "", ""); f != (Filter{}) || len(f.Strings()) != 0 {
		t.Errorf("empty filter: %+v", f)
	}
}

// Errors name the field first (the command line turns it into its flag).
func TestParseFilterErrors(t *testing.T) {
	for _, c := range []struct{ proto, host, port, netns, pid, want string }{
		{proto: "udpp", want: "proto "},
		{proto: "0", want: "proto "},
		{host: "10.96.0", want: "host "},
		{port: "70000", want: "port "},
		{port: "0", want: "port "},
		{netns: "net:[4026531840]", want: "netns "},
		{pid: "-1", want: "pid "},
	} {
		_, err := ParseFilter(c.proto, c.host, c.port, c.netns, c.pid)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%+v: got %v", c, err)
		}
	}
}

func TestParseSkip(t *testing.T) {
	got, err := ParseSkip("clash,origin")
	if err != nil || len(got) != 2 || got[0] != "clash" || got[1] != "origin" {
		t.Errorf("got %v %v", got, err)
	}
	for _, bad := range []string{"confirm", "ct_in", "clash,", "nope"} {
		if _, err := ParseSkip(bad); err == nil || !strings.HasPrefix(err.Error(), "probe point ") {
			t.Errorf("%q: %v (required points cannot be skipped)", bad, err)
		}
	}
}
