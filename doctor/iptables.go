package doctor

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ctprobe/ctprobe/internal/ipt"
)

// ParseIptablesSave reads the output of iptables-save (legacy or nft, IPv4
// or IPv6): "*table", ":CHAIN POLICY [p:b]", "-A CHAIN args...", "COMMIT".
// Only rules are kept; options it does not know are skipped, so a rule is
// never misread as matching less than it does, only, at worst, as matching
// more. tool names the program, family is "ip" or "ip6".
func ParseIptablesSave(out, tool, family string) ([]Rule, error) {
	var rules []Rule
	table := ""
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "", line[0] == '#', line[0] == ':', line == "COMMIT":
			continue
		case line[0] == '*':
			table = line[1:]
			continue
		case !strings.HasPrefix(line, "-A "):
			return nil, fmt.Errorf("%s line %d: %q is not a rule", tool, n+1, truncate(line))
		}
		args, err := ipt.Split(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", tool, n+1, err)
		}
		if len(args) < 2 {
			return nil, fmt.Errorf("%s line %d: -A without a chain", tool, n+1)
		}
		r := Rule{Tool: tool, Family: family, Table: table, Chain: args[1], Text: line, Base: builtinChains[args[1]]}
		parseIptablesArgs(&r, args[2:])
		rules = append(rules, r)
	}
	return rules, nil
}

// builtinChains are the chains iptables hooks; others run only when jumped to.
var builtinChains = map[string]bool{"PREROUTING": true, "INPUT": true, "FORWARD": true, "OUTPUT": true, "POSTROUTING": true}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// parseIptablesArgs reads the options of one rule after "-A CHAIN".
func parseIptablesArgs(r *Rule, args []string) {
	neg := false
	value := func(i int) string {
		if i+1 < len(args) {
			return args[i+1]
		}
		return ""
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "!" {
			neg = true
			continue
		}
		v := value(i)
		switch a {
		case "-p", "--protocol":
			if !neg {
				r.Proto = strings.ToLower(v)
			}
			i++
		case "-d", "--destination":
			r.Dst, r.DstNeg = v, neg
			i++
		case "-s", "--source":
			r.Src, r.SrcNeg = v, neg
			i++
		case "--dport", "--destination-port":
			if !neg {
				r.DstPort = v
			}
			i++
		case "--mark":
			r.Mark = parseMarkMatch(v, neg)
			i++
		case "-j", "--jump", "-g", "--goto":
			parseTarget(r, v)
			i++
		case "--to-destination", "--to-source":
			if r.NAT != nil {
				r.NAT.To = append(r.NAT.To, v)
				if a == "--to-source" {
					_, port := splitHostPort(v)
					r.NAT.PortMin, r.NAT.PortMax, _ = parsePortRange(port)
				}
			}
			i++
		case "--to-ports":
			if r.NAT != nil {
				r.NAT.PortMin, r.NAT.PortMax, _ = parsePortRange(v)
			}
			i++
		case "--random":
			if r.NAT != nil {
				r.NAT.Random = true
			}
		case "--random-fully":
			if r.NAT != nil {
				r.NAT.RandomFully = true
			}
		case "--set-xmark", "--set-mark", "--or-mark", "--xor-mark", "--and-mark":
			r.SetMark = parseMarkOp(a, v)
			i++
		}
		neg = false
	}
}

func parseTarget(r *Rule, target string) {
	switch target {
	case "DNAT":
		r.NAT = &NAT{Kind: "dnat"}
	case "SNAT":
		r.NAT = &NAT{Kind: "snat"}
	case "MASQUERADE":
		r.NAT = &NAT{Kind: "masquerade"}
	case "RETURN":
		r.Return = true
	case "MARK", "ACCEPT", "DROP", "REJECT", "LOG", "CONNMARK", "NOTRACK", "CT", "":
	default:
		r.Jumps = append(r.Jumps, target)
	}
}

// parseMarkMatch reads "0x4000/0x4000" or "0x1".
func parseMarkMatch(s string, neg bool) *MarkMatch {
	v, m, ok := parseValueMask(s)
	if !ok {
		return nil
	}
	return &MarkMatch{Value: v, Mask: m, Negated: neg}
}

// parseMarkOp reads the MARK target's options as iptables-save prints them
// (--set-xmark V/M; older versions print --set-mark, --or-mark, ...).
func parseMarkOp(opt, s string) *MarkOp {
	v, m, ok := parseValueMask(s)
	if !ok {
		return nil
	}
	switch opt {
	case "--set-xmark":
		// mark = (mark & ^M) ^ V: with V within M it sets the bits of V
		// and clears the rest of M; with V outside M it toggles (xor).
		if m == 0 {
			return &MarkOp{Op: "xor", Value: v}
		}
		if v&^m == 0 {
			return &MarkOp{Op: "set", Value: v, Mask: m}
		}
		return &MarkOp{Op: "xor", Value: v}
	case "--set-mark":
		return &MarkOp{Op: "set", Value: v, Mask: m}
	case "--or-mark":
		return &MarkOp{Op: "or", Value: v}
	case "--xor-mark":
		return &MarkOp{Op: "xor", Value: v}
	}
	return &MarkOp{Op: "and", Value: v}
}

func parseValueMask(s string) (v, m uint32, ok bool) {
	a, b, hasMask := strings.Cut(s, "/")
	x, err := strconv.ParseUint(a, 0, 32)
	if err != nil {
		return 0, 0, false
	}
	y := uint64(0xffffffff)
	if hasMask {
		if y, err = strconv.ParseUint(b, 0, 32); err != nil {
			return 0, 0, false
		}
	}
	return uint32(x), uint32(y), true
}
