package doctor

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// testdata holds real output of iptables-legacy-save 1.8.9 and nft 1.0.6
// (Debian 12) for one namespace with kube-proxy-like rules.

func TestParseIptablesSave(t *testing.T) {
	data, err := os.ReadFile("testdata/iptables-legacy-save.txt")
	if err != nil {
		t.Fatal(err)
	}
	rules, err := ParseIptablesSave(string(data), "iptables-legacy", "ip")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 6 {
		t.Fatalf("%d rules, want 6: %+v", len(rules), rules)
	}
	dnat := rules[0]
	if dnat.Chain != "PREROUTING" || !dnat.Base || dnat.Dst != "10.96.0.10/32" || dnat.Proto != "udp" || dnat.DstPort != "53" ||
		dnat.NAT == nil || dnat.NAT.Kind != "dnat" || !slices.Equal(dnat.NAT.To, []string{"10.2.0.1:53"}) {
		t.Errorf("DNAT rule read as %+v (NAT %+v)", dnat, dnat.NAT)
	}
	if tcp := rules[1]; tcp.udp() {
		t.Errorf("a -p tcp rule counts as UDP: %+v", tcp)
	}
	masq := rules[2]
	if masq.Mark == nil || *masq.Mark != (MarkMatch{Value: 0x4000, Mask: 0x4000}) || masq.NAT == nil || !masq.NAT.RandomFully || masq.NAT.Random {
		t.Errorf("masquerade on the mark read as %+v (mark %+v, NAT %+v)", masq, masq.Mark, masq.NAT)
	}
	snat := rules[3]
	if snat.NAT == nil || snat.NAT.Kind != "snat" || snat.NAT.ports() != 1 || snat.NAT.PortMin != 40000 || snat.NAT.randomPorts() {
		t.Errorf("SNAT to one port read as %+v", snat.NAT)
	}
	if q := rules[4]; q.NAT == nil || !q.NAT.Random || q.NAT.RandomFully || q.NAT.ports() != 0 {
		t.Errorf("masquerade --random after a quoted comment read as %+v", q.NAT)
	}
	mark := rules[5]
	if mark.Chain != "KUBE-MARK-MASQ" || mark.Base || mark.SetMark == nil || !mark.SetMark.sets(0x4000) || mark.SetMark.clears(0x4000) {
		t.Errorf("MARK rule read as %+v (op %+v)", mark, mark.SetMark)
	}
}

// The MARK target's forms as iptables-save prints them: --or-mark,
// --xor-mark and --and-mark all come out as --set-xmark V/M.
func TestMarkOps(t *testing.T) {
	cases := []struct {
		opt, val     string
		sets, clears bool
	}{
		{"--set-xmark", "0x4000/0x4000", true, false}, // --or-mark 0x4000
		{"--set-xmark", "0x4000/0x0", false, true},    // --xor-mark 0x4000 (on a marked packet)
		{"--set-xmark", "0x0/0x4000", false, true},    // --and-mark ~0x4000
		{"--set-xmark", "0x0/0xffffbfff", false, false},
		{"--xor-mark", "0x4000", false, true},
		{"--or-mark", "0x4000", true, false},
	}
	for _, c := range cases {
		op := parseMarkOp(c.opt, c.val)
		if op == nil || op.sets(0x4000) != c.sets || op.clears(0x4000) != c.clears {
			t.Errorf("%s %s: %+v, want sets %v clears %v", c.opt, c.val, op, c.sets, c.clears)
		}
	}
}

func TestParseNftJSON(t *testing.T) {
	data, err := os.ReadFile("testdata/nft-ruleset.json")
	if err != nil {
		t.Fatal(err)
	}
	rules, xt, err := ParseNftJSON(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The "ip nat" table is iptables-nft's: its masquerade is an xt
	// target, which nft cannot show.
	if !slices.Equal(xt, []string{"ip nat"}) {
		t.Errorf("iptables-nft tables %v, want [ip nat]", xt)
	}
	var dnat, ret, xor, masq, snat *Rule
	for i := range rules {
		r := &rules[i]
		switch {
		case r.NAT != nil && r.NAT.Kind == "dnat":
			dnat = r
		case r.Return:
			ret = r
		case r.SetMark != nil:
			xor = r
		case r.NAT != nil && r.NAT.Kind == "masquerade" && r.Table == "t":
			masq = r
		case r.NAT != nil && r.NAT.Kind == "snat":
			snat = r
		}
	}
	if dnat == nil || dnat.Dst != "10.96.0.10" || dnat.DstPort != "53" || dnat.Proto != "udp" || !dnat.Base ||
		!slices.Equal(dnat.NAT.endpoints(), []string{"10.2.0.1", "10.2.0.2"}) {
		t.Errorf("numgen DNAT read as %+v", dnat)
	}
	if ret == nil || ret.Mark == nil || *ret.Mark != (MarkMatch{Value: 0x4000, Mask: 0x4000, Negated: true}) {
		t.Errorf("mark gate read as %+v", ret)
	}
	if xor == nil || !xor.SetMark.clears(0x4000) {
		t.Errorf("mark xor read as %+v", xor)
	}
	if masq == nil || !masq.NAT.RandomFully {
		t.Errorf("masquerade fully-random read as %+v", masq)
	}
	if snat == nil || snat.NAT.ports() != 1 || snat.Proto != "udp" || !slices.Equal(snat.NAT.To, []string{"10.244.2.254"}) {
		t.Errorf("snat to one port read as %+v", snat)
	}
	// Tables read with iptables-nft-save are left out.
	rules, _, _ = ParseNftJSON(data, map[string]bool{"ip nat": true})
	for _, r := range rules {
		if r.Table == "nat" {
			t.Errorf("skipped table still read: %+v", r)
		}
	}
}

func TestResolvers(t *testing.T) {
	conf := func(s string) *ResolvConf { rc := ParseResolvConf([]byte(s)); return &rc }
	rc := conf("# comment\nsearch default.svc.cluster.local\nnameserver 10.96.0.10 ; trailing\nnameserver fd00::10\noptions ndots:5\noptions timeout:1\n")
	if !slices.Equal(rc.Nameservers, []string{"10.96.0.10", "fd00::10"}) || !slices.Equal(rc.Options, []string{"ndots:5", "timeout:1"}) {
		t.Errorf("resolv.conf read as %+v", rc)
	}
	cases := []struct {
		libc     Libc
		conf     string
		parallel bool
	}{
		{LibcGlibc, "nameserver 10.96.0.10\n", true},
		{LibcGlibc, "nameserver 10.96.0.10\noptions single-request-reopen\n", false},
		{LibcGlibc, "nameserver 10.96.0.10\noptions single-request\n", false},
		{LibcGlibc, "nameserver 10.96.0.10\noptions ndots:2 use-vc\n", false},
		{LibcMusl, "nameserver 10.96.0.10\noptions use-vc\n", true},
		{LibcGlibc, "search x\n", false},
	}
	for _, c := range cases {
		r := Resolver{Libc: c.libc, ResolvConf: conf(c.conf)}
		r.judge()
		if r.Parallel != c.parallel || r.Why == "" {
			t.Errorf("%s with %q: parallel %v (%s), want %v", c.libc, c.conf, r.Parallel, r.Why, c.parallel)
		}
	}
}

// Fuzzing: every decoder of what tools and the kernel print.

func FuzzParseIptablesSave(f *testing.F) {
	data, _ := os.ReadFile("testdata/iptables-legacy-save.txt")
	f.Add(string(data))
	f.Add("*nat\n-A X ! -s 1.2.3.4 -j SNAT --to-source [fd00::1]:1-2\n")
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseIptablesSave(s, "iptables-legacy", "ip")
		if err != nil {
			return
		}
		for _, r := range rules {
			if !strings.Contains(s, r.Text) {
				t.Fatalf("rule text %q is not a line of the input", r.Text)
			}
			if r.NAT != nil {
				r.NAT.endpoints()
				if r.NAT.PortMin > r.NAT.PortMax {
					t.Fatalf("port range %d-%d", r.NAT.PortMin, r.NAT.PortMax)
				}
			}
		}
	})
}

func FuzzParseNftJSON(f *testing.F) {
	data, _ := os.ReadFile("testdata/nft-ruleset.json")
	f.Add(data)
	f.Add([]byte(`{"nftables":[{"chain":{"family":"ip","table":"t","name":"c","type":"nat"}},{"rule":{"family":"ip","table":"t","chain":"c","expr":[{"vmap":{"key":1,"data":{"set":[[0,{"goto":{"target":"x"}}]]}}}]}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rules, _, err := ParseNftJSON(b, nil)
		if err != nil {
			return
		}
		for _, r := range rules {
			if r.NAT != nil {
				r.NAT.endpoints()
			}
		}
	})
}

func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 10.96.0.10\noptions ndots:5 single-request\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rc := ParseResolvConf(b)
		for _, ns := range rc.Nameservers {
			if ns == "" || !utf8.ValidString(ns) && !bytes.Contains(b, []byte(ns)) {
				t.Fatalf("nameserver %q", ns)
			}
		}
	})
}

func FuzzNetlinkDumps(f *testing.F) {
	f.Add([]byte{20, 0, 0, 0, 0, 10, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseNftTableDump(b)
		parseLinkDump(b)
		for _, a := range netlinkAttrs(b) {
			if len(a.val) > len(b) {
				t.Fatal("attribute longer than its input")
			}
		}
	})
}
